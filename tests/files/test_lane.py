"""The core's hooks: upload before push (scope-aware), download after pull."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from sqlalchemy import text

from replicator.files.lane import FileLane
from replicator.files.localdb import LocalDb
from replicator.files.transfer import BlobApi, Transfer
from tests.files.conftest import BlobServer
from tests.files.helpers import MiB, add_image, add_patient, fetch, sha256_file, urandom_file
from tests.pg import TestDatabase


async def test_push_hook_then_pull_hook_byte_identical(
    local_db: TestDatabase, local_db2: TestDatabase, blobs: BlobServer, tmp_path: Path
) -> None:
    src = tmp_path / "vol.raw"
    sha = urandom_file(src, 13 * MiB)
    p = add_patient(local_db, 1)
    image = add_image(local_db, 1, p, sha=sha, size=13 * MiB, path=src, modality="CT")
    pano = add_image(local_db, 1, p, sha="c" * 64, size=5, path=tmp_path / "no", modality="PANO")
    with local_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scsync_file_policy (mode, modalities) VALUES ('selective', '[\"CT\"]')"
            )
        )
    local = await LocalDb.open(local_db.url)
    try:
        async with aiohttp.ClientSession() as session:
            transfer = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
            lane = FileLane(transfer, local, tmp_path / "store")
            assert await lane.before_push("images", image) == "uploaded"
            assert await lane.before_push("images", pano) == "remote"
            assert await lane.before_push("images", image) == "uploaded"  # dedupe
    finally:
        await local.close()
    # Another database of the same site (the pull side): the row arrived as pending.
    q = add_patient(local_db2, 1)
    pulled = add_image(local_db2, 1, q, sha=sha, size=13 * MiB)
    with local_db2.engine.begin() as conn:
        conn.execute(text("UPDATE images SET blob_state = 'remote' WHERE id = :i"), {"i": pulled})
    before = fetch(local_db2, "SELECT revision FROM images WHERE id = :i", i=pulled)[0].revision
    local2 = await LocalDb.open(local_db2.url)
    try:
        async with aiohttp.ClientSession() as session:
            transfer = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
            lane = FileLane(transfer, local2, tmp_path / "store2")
            assert await lane.fetch_pending() == 1
            assert await lane.fetch_pending() == 0
    finally:
        await local2.close()
    row = fetch(
        local_db2, "SELECT blob_state, local_path, revision FROM images WHERE id = :i", i=pulled
    )[0]
    assert row.blob_state == "present" and row.revision == before
    assert sha256_file(Path(row.local_path)) == sha


async def test_a_record_with_sync_off_sends_no_file(
    local_db: TestDatabase, blobs: BlobServer, tmp_path: Path
) -> None:
    """Issue #18: sync off keeps the record's file home too, pushed or asked for."""
    src = tmp_path / "private.raw"
    sha = urandom_file(src, MiB)
    p = add_patient(local_db, 1)
    image = add_image(local_db, 1, p, sha=sha, size=MiB, path=src, modality="CT")
    with local_db.engine.begin() as conn:
        conn.execute(text("UPDATE images SET sync_enabled = false WHERE id = :i"), {"i": image})
    local = await LocalDb.open(local_db.url)
    try:
        async with aiohttp.ClientSession() as session:
            transfer = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
            lane = FileLane(transfer, local, tmp_path / "store")
            assert await lane.before_push("images", image) == "remote"
            async with session.post(
                f"{blobs.base_url}/sites/1/blobs/{sha}/request",
                json={"table": "images", "row_id": str(image)},
                headers={"Authorization": f"Bearer {blobs.user_token(1)}"},
            ) as resp:
                assert resp.status == 202
            assert await lane.serve_requests() == 0
            assert blobs.put_count() == 0
            with local_db.engine.begin() as conn:
                conn.execute(
                    text("UPDATE images SET sync_enabled = true WHERE id = :i"), {"i": image}
                )
            assert await lane.before_push("images", image) == "uploaded"
    finally:
        await local.close()
