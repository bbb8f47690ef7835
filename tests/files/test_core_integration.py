"""The file lanes with the replicator core's own push/pull lanes (in-process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import aiohttp
from sqlalchemy import text

from replicator.files.lane import FileLane
from replicator.files.localdb import LocalDb
from replicator.files.service import push_gate
from replicator.files.transfer import BlobApi, Transfer
from replicator.lane import Lane
from replicator.settings import load_settings
from replicator.sites import register_site
from tests.files.conftest import BlobServer
from tests.files.helpers import MiB, add_image, add_patient, fetch, sha256_file, urandom_file
from tests.pg import TestDatabase
from tests.world import CloudApi


async def _drain(name: Literal["push", "pull"], settings: Any, gate: Any = None) -> None:
    lane = Lane(name, settings, None, gate)
    await lane.open()
    try:
        await lane.drain()
    finally:
        await lane.close()


async def test_push_waits_for_blob_and_pull_downloads(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    tmp_path: Path,
) -> None:
    await cloud_db.acall(register_site, "clinic-one")
    settings = load_settings(
        None,
        local_db_url=local_db.url,
        cloud_api_url=sync_api.url,
        site_token=blobs.token(1),
        site_id=1,
        dead_letter_initial_s=0.2,
        schema_refresh_s=0.01,
    )
    src = tmp_path / "scan.dcm"
    sha = urandom_file(src, 7 * MiB)  # multipart at the test threshold
    p = add_patient(local_db, 1)
    ct = add_image(local_db, 1, p, sha=sha, size=7 * MiB, path=src, modality="CT")
    other = tmp_path / "pano.png"
    other_sha = urandom_file(other, 1000)
    pano = add_image(local_db, 1, p, sha=other_sha, size=1000, path=other, modality="PANO")
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
            await _drain("push", settings, push_gate(lane))
    finally:
        await local.close()
    states = {r.id: r.blob_state for r in fetch(cloud_db, "SELECT id, blob_state FROM images")}
    assert states == {ct: "uploaded", pano: "remote"}
    assert blobs.put_count() == 2  # two parts of the CT scan, nothing for the PANO

    # A cloud client adds a project file to the same patient; its blob is uploaded first.
    new = tmp_path / "annotations.json"
    new_sha = urandom_file(new, 3000)
    async with aiohttp.ClientSession() as session:
        editor = BlobApi(session, blobs.base_url, blobs.user_token(1, "editor"), 1)
        await Transfer(editor).upload(new, new_sha, 3000)
    with cloud_db.engine.begin() as conn:
        pf = conn.execute(
            text(
                "INSERT INTO project_files (site_id, patient_id, name, blob_sha256, blob_size)"
                " VALUES (1, :p, 'notes', :s, 3000) RETURNING id"
            ),
            {"p": p, "s": new_sha},
        ).scalar_one()
    await _drain("pull", settings)
    row = fetch(local_db, "SELECT blob_state, local_path FROM project_files WHERE id = :i", i=pf)[0]
    assert (row.blob_state, row.local_path) == ("remote", None)
    local = await LocalDb.open(local_db.url)
    try:
        async with aiohttp.ClientSession() as session:
            transfer = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
            assert await FileLane(transfer, local, tmp_path / "store").fetch_pending() == 1
    finally:
        await local.close()
    row = fetch(local_db, "SELECT blob_state, local_path FROM project_files WHERE id = :i", i=pf)[0]
    assert row.blob_state == "present"
    assert sha256_file(Path(row.local_path)) == new_sha
