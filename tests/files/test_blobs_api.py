"""The blob endpoints against moto over HTTP and a real cloud database."""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
import yarl

from tests.files.conftest import BlobServer
from tests.files.helpers import MiB, add_image, add_patient, fetch, sha256_of
from tests.pg import TestDatabase


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _post(
    s: aiohttp.ClientSession, url: str, token: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with s.post(url, json=body or {}, headers=_auth(token)) as r:
        return r.status, await r.json()


async def _single_upload(s: aiohttp.ClientSession, blobs: BlobServer, data: bytes) -> str:
    sha = sha256_of(data)
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    status, body = await _post(s, base + "/upload", blobs.token(1), {"size": len(data)})
    assert status == 200 and body["status"] == "single"
    async with s.put(body["url"], data=data) as r:
        assert r.status == 200
    status, body = await _post(s, base + "/complete", blobs.token(1), {"size": len(data)})
    assert (status, body["status"]) == (200, "uploaded"), body
    return sha


async def test_single_upload_verify_dedupe_and_download(
    blobs: BlobServer, cloud_db: TestDatabase
) -> None:
    data = os.urandom(300_000)
    async with aiohttp.ClientSession() as s:
        sha = await _single_upload(s, blobs, data)
        base = f"{blobs.base_url}/sites/1/blobs/{sha}"
        # Dedupe: the cloud already has it, no URL is handed out.
        status, body = await _post(s, base + "/upload", blobs.token(1), {"size": len(data)})
        assert (status, body["status"]) == (200, "exists")
        status, body = await _post(s, base + "/download", blobs.token(1))
        assert status == 200 and body["size"] == len(data)
        expires = parse_qs(urlparse(body["url"]).query)["X-Amz-Expires"]
        assert expires == [str(blobs.settings.url_ttl_s)]
        async with s.get(body["url"]) as r:
            assert await r.read() == data
    rows = fetch(cloud_db, "SELECT size, state FROM scsync_blobs WHERE sha256 = :s", s=sha)
    assert [(r.size, r.state) for r in rows] == [(len(data), "uploaded")]


async def test_complete_refuses_bytes_that_do_not_match(
    blobs: BlobServer, cloud_db: TestDatabase
) -> None:
    claimed = os.urandom(1000)
    sha = sha256_of(claimed)
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        _, body = await _post(s, base + "/upload", blobs.token(1), {"size": 1000})
        async with s.put(body["url"], data=os.urandom(1000)) as r:
            assert r.status == 200
        status, body = await _post(s, base + "/complete", blobs.token(1), {"size": 1000})
        assert status == 422 and body["error"] == "verification_failed"
        # Wrong size is refused as well.
        _, body = await _post(s, base + "/upload", blobs.token(1), {"size": 1000})
        async with s.put(body["url"], data=claimed[:999]) as r:
            assert r.status == 200
        status, body = await _post(s, base + "/complete", blobs.token(1), {"size": 1000})
        assert status == 422 and "size" in body["message"]
        status, _ = await _post(s, base + "/download", blobs.token(1))
        assert status == 404
    assert fetch(cloud_db, "SELECT 1 FROM scsync_blobs WHERE sha256 = :s", s=sha) == []
    listed = blobs.s3.client().list_objects_v2(Bucket=blobs.settings.bucket)
    assert listed.get("KeyCount", 0) == 0


async def test_multipart_resume_lists_finished_parts(blobs: BlobServer) -> None:
    data = os.urandom(12 * MiB)  # parts of 5, 5 and 2 MiB
    sha = hashlib.sha256(data).hexdigest()
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        status, first = await _post(s, base + "/upload", blobs.token(1), {"size": len(data)})
        assert status == 200 and first["status"] == "multipart"
        assert first["part_count"] == 3 and len(first["parts"]) == 3
        size = first["part_size"]
        async with s.put(first["parts"][0]["url"], data=data[:size]) as r:
            assert r.status == 200
        # "Crash": ask again; the same upload continues and part 1 is not asked for again.
        _, again = await _post(s, base + "/upload", blobs.token(1), {"size": len(data)})
        assert again["upload_id"] == first["upload_id"]
        assert [p["part_number"] for p in again["uploaded_parts"]] == [1]
        assert [p["part_number"] for p in again["parts"]] == [2, 3]
        status, body = await _post(
            s,
            base + "/complete",
            blobs.token(1),
            {"size": len(data), "upload_id": first["upload_id"]},
        )
        assert status == 409 and body["error"] == "incomplete"
        for p in again["parts"]:
            n = p["part_number"]
            async with s.put(p["url"], data=data[(n - 1) * size : n * size]) as r:
                assert r.status == 200
        status, body = await _post(
            s,
            base + "/complete",
            blobs.token(1),
            {"size": len(data), "upload_id": first["upload_id"]},
        )
        assert (status, body["status"]) == (200, "uploaded"), body
        _, dl = await _post(s, base + "/download", blobs.token(1))
        async with s.get(dl["url"]) as r:
            assert hashlib.sha256(await r.read()).hexdigest() == sha


@pytest.mark.parametrize("action", ["upload", "complete", "download", "request"])
async def test_another_sites_key_is_forbidden(blobs: BlobServer, action: str) -> None:
    sha = "a" * 64
    url = f"{blobs.base_url}/sites/2/blobs/{sha}/{action}"
    async with aiohttp.ClientSession() as s:
        for token in (blobs.token(1), blobs.user_token(1, "admin")):
            status, body = await _post(s, url, token, {"size": 10})
            assert (status, body["error"]) == (403, "forbidden")
        async with s.get(f"{blobs.base_url}/sites/2/requests", headers=_auth(blobs.token(1))) as r:
            assert r.status == 403


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fsites%2F2%2Fblobs%2F" + "a" * 64,
        "..%2F" + "a" * 61,
        "A" * 64,
        "a" * 63,
        "a" * 64 + "%2F..",
        "sites%2F2%2Fblobs%2F" + "a" * 64,
    ],
)
async def test_forged_names_are_refused(blobs: BlobServer, name: str) -> None:
    # encoded=True: the raw path goes on the wire as written, %2F and all.
    url = yarl.URL(f"{blobs.base_url}/sites/1/blobs/{name}/upload", encoded=True)
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, json={"size": 1}, headers=_auth(blobs.token(1))) as r,
    ):
        assert r.status == 400, await r.text()
        assert (await r.json())["error"] == "bad_request"
    listed = blobs.s3.client().list_objects_v2(Bucket=blobs.settings.bucket)
    assert listed.get("KeyCount", 0) == 0


@pytest.mark.parametrize("site", ["2%2F..%2F1", "..%2F2", "-1", "1.0", "%C2%B2"])
async def test_forged_site_ids_are_refused(blobs: BlobServer, site: str) -> None:
    url = yarl.URL(f"{blobs.base_url}/sites/{site}/blobs/{'a' * 64}/download", encoded=True)
    async with (
        aiohttp.ClientSession() as s,
        s.post(url, json={}, headers=_auth(blobs.token(1))) as r,
    ):
        assert r.status == 400, await r.text()


async def test_tokens_and_roles(blobs: BlobServer) -> None:
    sha = "b" * 64
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/upload", json={"size": 1}) as r:
            assert r.status == 401
        async with s.post(
            base + "/upload", json={"size": 1}, headers={"Authorization": "Bearer forged"}
        ) as r:
            assert r.status == 401
        status, _ = await _post(s, base + "/upload", blobs.user_token(1, "viewer"), {"size": 1})
        assert status == 403
        status, _body = await _post(s, base + "/upload", blobs.token(1), {"size": -1})
        assert status == 400
        for bad in ("\u00b2", "1e3", True, -5):
            status, _body = await _post(s, base + "/request", blobs.token(1), {"row_id": bad})
            assert status == 400, bad


async def test_on_demand_request_is_served_by_the_upload(
    blobs: BlobServer, cloud_db: TestDatabase
) -> None:
    data = os.urandom(5000)
    sha = sha256_of(data)
    patient = add_patient(cloud_db, 1)
    image = add_image(cloud_db, 1, patient, sha=sha, size=len(data))
    # The site sent the row as metadata only.
    with cloud_db.engine.begin() as conn:
        from sqlalchemy import text

        conn.execute(text("UPDATE images SET blob_state = 'remote' WHERE id = :i"), {"i": image})
    assert fetch(cloud_db, "SELECT blob_state FROM images")[0].blob_state == "remote"
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        status, body = await _post(
            s, base + "/request", blobs.user_token(1), {"table": "images", "row_id": str(image)}
        )
        assert status == 202 and body["status"] == "requested"
        async with s.get(f"{blobs.base_url}/sites/1/requests", headers=_auth(blobs.token(1))) as r:
            listed = (await r.json())["requests"]
        assert [(q["sha256"], q["row_id"]) for q in listed] == [(sha, str(image))]
        await _single_upload(s, blobs, data)
        async with s.get(f"{blobs.base_url}/sites/1/requests", headers=_auth(blobs.token(1))) as r:
            assert (await r.json())["requests"] == []
    assert fetch(cloud_db, "SELECT blob_state FROM images")[0].blob_state == "uploaded"
    events = fetch(
        cloud_db,
        "SELECT type, row_id FROM scsync_api_events WHERE payload->>'sha256' = :sha ORDER BY id",
        sha=sha,
    )
    assert [(e.type, e.row_id) for e in events] == [
        ("blob.requested", image),
        ("record.sync", image),
    ]
