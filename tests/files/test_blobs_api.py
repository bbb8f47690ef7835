"""The blob endpoints against moto over HTTP and a real cloud database."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
import yarl

import api.blobs
import api.blobs.verify
from api.blobs import BlobSettings
from scsync.s3_server import S3Endpoint
from tests.files.conftest import BlobServer, blob_settings, replace, start_blob_server
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
    plan = {"size": len(data), "sends_headers": True}
    status, body = await _post(s, base + "/upload", blobs.token(1), plan)
    assert status == 200 and body["status"] == "single"
    async with s.put(body["url"], data=data, headers=body["headers"]) as r:
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


@pytest.mark.parametrize("server", ["blobs", "read_blobs", "copy_blobs"])
async def test_complete_refuses_bytes_that_do_not_match(
    server: str, request: pytest.FixtureRequest, cloud_db: TestDatabase
) -> None:
    """Wrong bytes, then too few bytes, sent as the plan says (with its headers): never
    recorded. verify_by=checksum (the default): S3 itself refuses them (the URL is
    signed with the blob's SHA256), so complete finds no object; read and copy: S3
    stores them and complete finds them wrong."""
    blobs: BlobServer = request.getfixturevalue(server)
    store_checks = blobs.settings.verify_by == "checksum"
    claimed = os.urandom(1000)
    sha = sha256_of(claimed)
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        for wrong, why in (
            (os.urandom(1000), "sha256 of the uploaded bytes"),
            (claimed[:999], "size"),
        ):
            plan = {"size": 1000, "sends_headers": True}
            _, body = await _post(s, base + "/upload", blobs.token(1), plan)
            assert ("x-amz-checksum-sha256" in body["headers"]) == store_checks
            async with s.put(body["url"], data=wrong, headers=body["headers"]) as r:
                if store_checks:
                    assert r.status == 400 and "<Code>BadDigest</Code>" in await r.text()
                else:
                    assert r.status == 200
            status, body = await _post(s, base + "/complete", blobs.token(1), {"size": 1000})
            assert status == 422 and body["error"] == "verification_failed"
            assert (why if not store_checks else "no object was uploaded") in body["message"]
        status, _ = await _post(s, base + "/download", blobs.token(1))
        assert status == 404
    assert fetch(cloud_db, "SELECT 1 FROM scsync_blobs WHERE sha256 = :s", s=sha) == []
    listed = blobs.s3.client().list_objects_v2(Bucket=blobs.settings.bucket)
    assert listed.get("KeyCount", 0) == 0


async def _put_parts(
    s: aiohttp.ClientSession, parts: list[dict[str, Any]], data: bytes, part_size: int
) -> None:
    """PUT each planned part's slice of ``data`` to its presigned URL."""
    for p in parts:
        n = p["part_number"]
        async with s.put(p["url"], data=data[(n - 1) * part_size : n * part_size]) as r:
            assert r.status == 200


def _requests_for(blobs: BlobServer, sha: str, since: int) -> list[str]:
    """Methods of the requests on the object itself (not on its multipart upload);
    presigned ones carry only the signature's query."""
    key = f"/{blobs.settings.bucket}/{blobs.key(1, sha)}"
    return [
        m
        for m, p in blobs.s3.request_log(include_query=True)[since:]
        if p == key or p.startswith(key + "?X-Amz-")
    ]


async def test_verify_by_checksum_has_the_store_check_single_puts(blobs: BlobServer) -> None:
    """The default: a single PUT carries the SHA256 signed into its URL and complete only
    asks S3 (a HEAD) for the checksum it checked: no bytes come back. A client that does
    not say it sends the plan's headers (a site on an older version) gets a URL without
    it, and its upload is read back, as is a multipart object; wrong bytes sent that way
    are still refused."""
    assert blobs.settings.verify_by == "checksum"
    start = len(blobs.s3.request_log())
    async with aiohttp.ClientSession() as s:
        before = len(blobs.s3.request_log(include_query=True))
        sha = await _single_upload(s, blobs, os.urandom(300_000))
        assert _requests_for(blobs, sha, before) == ["PUT", "HEAD"]
        for data in (os.urandom(200_000), None):
            good = os.urandom(200_000)
            sha = sha256_of(good)
            base = f"{blobs.base_url}/sites/1/blobs/{sha}"
            _, plan = await _post(s, base + "/upload", blobs.token(1), {"size": len(good)})
            assert plan["headers"] == {}
            assert parse_qs(urlparse(plan["url"]).query)["X-Amz-SignedHeaders"] == ["host"]
            before = len(blobs.s3.request_log(include_query=True))
            async with s.put(plan["url"], data=data or good) as r:
                assert r.status == 200
            status, body = await _post(s, base + "/complete", blobs.token(1), {"size": len(good)})
            requests = _requests_for(blobs, sha, before)
            if data is not None:  # read back, found wrong and deleted
                assert requests == ["PUT", "HEAD", "GET", "DELETE"]
                assert (status, body["error"]) == (422, "verification_failed")
                assert "sha256 of the uploaded bytes" in body["message"]
            else:
                assert requests == ["PUT", "HEAD", "GET"]
                assert (status, body["status"]) == (200, "uploaded"), body
        big = os.urandom(11 * MiB)
        sha = sha256_of(big)
        base = f"{blobs.base_url}/sites/1/blobs/{sha}"
        _, plan = await _post(s, base + "/upload", blobs.token(1), {"size": len(big)})
        assert plan["status"] == "multipart"
        before = len(blobs.s3.request_log(include_query=True))
        await _put_parts(s, plan["parts"], big, plan["part_size"])
        done = {"size": len(big), "upload_id": plan["upload_id"]}
        status, body = await _post(s, base + "/complete", blobs.token(1), done)
        assert (status, body["status"]) == (200, "uploaded"), body
        assert _requests_for(blobs, sha, before)[-2:] == ["HEAD", "GET"]
    # The store was probed once, on the first upload: its PUT refused, nothing to delete.
    probes = [m for m, p in blobs.s3.request_log()[start:] if "/scsync-probe/" in p]
    assert probes == ["PUT"]


async def test_verify_by_copy_has_the_store_hash_the_object(copy_blobs: BlobServer) -> None:
    """verify_by=copy: complete asks S3 for a SHA256 of what it holds (an in-place copy),
    single PUT and multipart alike, instead of streaming the object back (wrong bytes:
    test_complete_refuses_bytes_that_do_not_match)."""
    blobs = copy_blobs
    small, big = os.urandom(300_000), os.urandom(11 * MiB)  # big: parts of 5, 5 and 1 MiB
    async with aiohttp.ClientSession() as s:
        before = len(blobs.s3.request_log(include_query=True))
        small_sha = await _single_upload(s, blobs, small)
        big_sha = sha256_of(big)
        base = f"{blobs.base_url}/sites/1/blobs/{big_sha}"
        _, plan = await _post(s, base + "/upload", blobs.token(1), {"size": len(big)})
        assert plan["status"] == "multipart" and plan["part_count"] == 3
        await _put_parts(s, plan["parts"], big, plan["part_size"])
        done = {"size": len(big), "upload_id": plan["upload_id"]}
        status, body = await _post(s, base + "/complete", blobs.token(1), done)
        assert (status, body["status"]) == (200, "uploaded"), body
    client = blobs.s3.client()
    for sha in (small_sha, big_sha):
        requests = _requests_for(blobs, sha, before)
        assert "COPY" in requests and "GET" not in requests, requests
        head = client.head_object(
            Bucket=blobs.settings.bucket, Key=blobs.key(1, sha), ChecksumMode="ENABLED"
        )
        assert base64.b64decode(head["ChecksumSHA256"]).hex() == sha
        assert head["Metadata"] == {"scsync-sha256": sha}


async def test_a_store_that_does_not_check_checksums_gets_uploads_read_back(
    cloud_db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """verify_by=checksum trusts S3's checksum only where the store refuses a wrong
    one: on a store that stores it unchecked (moto as it comes), the blob API finds
    that out on the first upload (a probe object, deleted again), signs no checksum
    into the URLs and reads every upload back; wrong bytes are refused as ever."""
    with S3Endpoint(check_checksums=False) as lax:
        lax.client().create_bucket(Bucket="lax")
        settings = replace(blob_settings(cloud_db, lax, "lax"), verify_by="checksum")
        server, shutdown = start_blob_server(settings, lax)
        try:
            async with aiohttp.ClientSession() as s:
                data = os.urandom(100_000)
                before = len(lax.request_log(include_query=True))
                with caplog.at_level("WARNING", logger="api.blobs"):
                    sha = await _single_upload(s, server, data)  # probes the store first
                assert "verify_by=checksum reads uploads back" in caplog.text
                probes = [m for m, p in lax.request_log() if "scsync-probe/" in p]
                assert probes == ["PUT", "DELETE"]
                listed = lax.client().list_objects_v2(Bucket="lax", Prefix="scsync-probe/")
                assert listed.get("KeyCount", 0) == 0
                assert _requests_for(server, sha, before) == ["PUT", "GET"]  # as verify_by=read
                wrong = os.urandom(1000)
                claimed = sha256_of(os.urandom(1000))
                base = f"{server.base_url}/sites/1/blobs/{claimed}"
                plan = {"size": 1000, "sends_headers": True}
                _, body = await _post(s, base + "/upload", server.token(1), plan)
                assert body["headers"] == {}
                async with s.put(body["url"], data=wrong) as r:
                    assert r.status == 200
                status, body = await _post(s, base + "/complete", server.token(1), {"size": 1000})
                assert (status, body["error"]) == (422, "verification_failed")
        finally:
            shutdown()


async def test_verify_by_read_and_over_the_copy_limit_reads_back(
    read_blobs: BlobServer, copy_blobs: BlobServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify_by=read reads the object back (one GET, no HEAD, no copy); so does copy
    mode for an object over CopyObject's limit."""
    monkeypatch.setattr(api.blobs.verify, "S3_COPY_LIMIT", 100_000)
    async with aiohttp.ClientSession() as s:
        for server in (read_blobs, copy_blobs):
            before = len(server.s3.request_log(include_query=True))
            sha = await _single_upload(s, server, os.urandom(200_000))
            assert _requests_for(server, sha, before) == ["PUT", "GET"]


def test_verify_by_names_a_known_mode() -> None:
    with pytest.raises(ValueError, match="verify_by"):
        BlobSettings(db_url="x", jwt_secret="y", bucket="z", verify_by="trust")
    env = {"SCSYNC_CLOUD_DB_URL": "x", "SCSYNC_JWT_SECRET": "y", "SCSYNC_S3_BUCKET": "z"}
    assert BlobSettings.from_env(env).verify_by == "checksum"
    assert BlobSettings.from_env({**env, "SCSYNC_S3_VERIFY_BY": "copy"}).verify_by == "copy"


async def test_complete_marks_rows_serves_requests_and_publishes(
    blobs: BlobServer, cloud_db: TestDatabase
) -> None:
    """One complete: every row of the site referencing the blob turns uploaded (and one
    record.sync event each), the blob's open request is served; another site's row with
    the same bytes stays remote."""
    data = os.urandom(50_000)
    sha = sha256_of(data)
    patient = add_patient(cloud_db, 1)
    image = add_image(cloud_db, 1, patient, sha=sha, size=len(data))
    capture = add_image(cloud_db, 1, patient, sha=sha, size=len(data), table="captures")
    other = add_image(cloud_db, 2, add_patient(cloud_db, 2), sha=sha, size=len(data))
    base = f"{blobs.base_url}/sites/1/blobs/{sha}"
    async with aiohttp.ClientSession() as s:
        status, req = await _post(
            s, base + "/request", blobs.user_token(1), {"table": "images", "row_id": image}
        )
        assert status == 202, req
        _, plan = await _post(s, base + "/upload", blobs.token(1), {"size": len(data)})
        async with s.put(plan["url"], data=data) as r:
            assert r.status == 200
        last = fetch(cloud_db, "SELECT coalesce(max(id), 0) AS id FROM scsync_api_events")[0].id
        status, body = await _post(s, base + "/complete", blobs.token(1), {"size": len(data)})
    assert (status, body["status"], body["requests_served"]) == (200, "uploaded", 1), body
    states = {
        (r.tbl, r.id): r.blob_state
        for r in fetch(
            cloud_db,
            "SELECT 'images' AS tbl, id, blob_state FROM images"
            " UNION ALL SELECT 'captures', id, blob_state FROM captures",
        )
    }
    assert states == {
        ("images", image): "uploaded",
        ("captures", capture): "uploaded",
        ("images", other): "remote",
    }
    served = fetch(cloud_db, "SELECT state FROM scsync_blob_requests WHERE sha256 = :s", s=sha)
    assert [r.state for r in served] == ["served"]
    events = fetch(
        cloud_db,
        "SELECT site_id, table_name, row_id, payload FROM scsync_api_events"
        " WHERE type = 'record.sync' AND id > :last ORDER BY id",
        last=last,
    )
    assert sorted((e.site_id, e.table_name, e.row_id) for e in events) == sorted(
        [(1, "images", image), (1, "captures", capture)]
    )
    assert all(
        e.payload == {"state": "synced", "blob_state": "uploaded", "sha256": sha} for e in events
    )


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
        await _put_parts(s, again["parts"], data, size)
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
        wrong = {"size": 1, "sends_headers": "yes"}
        status, body = await _post(s, base + "/upload", blobs.token(1), wrong)
        assert (status, body["error"]) == (400, "bad_request") and "sends_headers" in body[
            "message"
        ]
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


async def test_database_unreachable_is_a_503_with_a_json_body(
    s3_endpoint: S3Endpoint, bucket: str, cloud_db: TestDatabase
) -> None:
    """No database behind the pool (nothing listens on its port): each endpoint that
    needs it answers 503 naming the database, within the pool's wait, not a 500."""
    from scsync.s3_server import free_port

    settings = replace(
        blob_settings(cloud_db, s3_endpoint, bucket),
        db_url=f"postgresql://scsync@127.0.0.1:{free_port()}/nowhere",
        db_timeout_s=1.0,
    )
    server, shutdown = start_blob_server(settings, s3_endpoint)
    try:
        base = f"{server.base_url}/sites/1/blobs/{'ab' * 32}"
        async with aiohttp.ClientSession() as s:
            for path, body in (("/upload", {"size": 10}), ("/complete", {"size": 10})):
                status, answer = await _post(s, base + path, server.token(1), body)
                assert status == 503, (path, answer)
                assert answer["error"] == "database_unavailable"
    finally:
        shutdown()


async def test_no_s3_credentials_is_a_config_error_at_start(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    s3_endpoint: S3Endpoint,
    bucket: str,
    cloud_db: TestDatabase,
) -> None:
    """Neither keys in the settings nor any in AWS's own chain: the app refuses to
    start, naming what is missing, instead of failing every upload later."""
    from aiohttp import web

    from api.errors import ConfigError

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = replace(
        blob_settings(cloud_db, s3_endpoint, bucket), s3_access_key=None, s3_secret_key=None
    )
    runner = web.AppRunner(api.blobs.make_blobs_app(settings))
    with pytest.raises(ConfigError, match="no S3 credentials"):
        await runner.setup()
    await runner.cleanup()
