"""Scope selectors, the per-record switch, old-data options and restore."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from replicator.files import policy
from replicator.files.backfill import Backfill
from replicator.files.cloud import FilesCloud
from replicator.files.errors import PolicyError
from replicator.files.localdb import make_pool
from replicator.files.transfer import BlobApi, DbJournal, Transfer
from schema.auth import site_token
from schema.scope_policy import ScopePolicy
from tests.files.conftest import SECRET, BlobServer
from tests.files.helpers import add_image, add_patient, fetch, urandom_file
from tests.pg import TestDatabase
from tests.world import CloudApi


def scsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scsync", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def site_env(local_db: TestDatabase, api: CloudApi, site_id: int = 1) -> dict[str, str]:
    """A site's command environment: its local database, the cloud API and its token."""
    return {
        "SCSYNC_LOCAL_DB_URL": local_db.url,
        "SCSYNC_CLOUD_API_URL": api.url,
        "SCSYNC_SITE_ID": str(site_id),
        "SCSYNC_SITE_TOKEN": site_token(SECRET, site_id),
        "SCSYNC_CLOUD_DB_URL": "",
    }


def _scope(tdb: TestDatabase, table: str, rid: int) -> bool:
    return tdb.call(policy.in_scope, table, rid)


def _set(tdb: TestDatabase, **kw: Any) -> None:
    tdb.call(policy.set_policy, ScopePolicy(**kw))


def test_each_selector(local_db: TestDatabase) -> None:
    today = dt.date.today()
    p = add_patient(local_db, 1)
    ct_new = add_image(local_db, 1, p, modality="CT", study_date=today - dt.timedelta(days=10))
    ct_old = add_image(local_db, 1, p, modality="CT", study_date=dt.date(2015, 1, 1))
    pano = add_image(local_db, 1, p, modality="PANO", study_date=today)
    capture = add_image(local_db, 1, p, table="captures")
    project = add_image(local_db, 1, p, table="project_files")
    with local_db.engine.begin() as conn:
        conn.execute(text("UPDATE captures SET image_id = :i"), {"i": ct_old})
    everything = {
        ("images", ct_new),
        ("images", ct_old),
        ("images", pano),
        ("captures", capture),
        ("project_files", project),
    }

    def scoped() -> set[tuple[str, int]]:
        return {(t, i) for t, i in everything if _scope(local_db, t, i)}

    assert scoped() == everything  # no policy row: everything
    _set(local_db, mode="selective")
    assert scoped() == set()  # selective with nothing chosen: nothing
    _set(local_db, mode="selective", tables=("captures", "project_files"))
    assert scoped() == {("captures", capture), ("project_files", project)}
    # A capture takes its modality and date from its image.
    _set(local_db, mode="selective", modalities=("CT",))
    assert scoped() == {("images", ct_new), ("images", ct_old), ("captures", capture)}
    _set(local_db, mode="selective", since_date=dt.date(2020, 1, 1), tables=("images",))
    assert scoped() == {("images", ct_new), ("images", pano)}
    _set(local_db, mode="selective", last_days=30, modalities=("CT",))
    assert scoped() == {("images", ct_new)}
    local_db.call(policy.select, "images", [pano])
    assert scoped() == {("images", ct_new), ("images", pano)}
    _set(local_db, mode="all")
    assert scoped() == everything
    with pytest.raises(PolicyError):
        local_db.call(policy.set_policy, ScopePolicy(mode="selective", tables=("patients",)))


def test_policy_cli_show_and_set(local_db: TestDatabase) -> None:
    env = {"SCSYNC_LOCAL_DB_URL": local_db.url}
    out = scsync(
        "policy",
        "set",
        "--mode",
        "selective",
        "--modalities",
        "CT,CBCT",
        "--last-days",
        "90",
        "--old-data",
        "backup",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    shown = json.loads(scsync("policy", "show", env=env).stdout)
    assert shown == {
        "mode": "selective",
        "tables": [],
        "modalities": ["CT", "CBCT"],
        "since_date": None,
        "last_days": 90,
        "old_data": "backup",
    }
    bad = scsync("policy", "set", "--tables", "patients", env=env)
    assert bad.returncode == 2 and "unknown file table" in bad.stderr


async def _backfill_with_files(
    local_db: TestDatabase, cloud: FilesCloud, blobs: BlobServer, tmp_path: Path
) -> dict[str, int]:
    p = add_patient(local_db, 1)
    ids = {}
    for name, modality in (("ct", "CT"), ("pano", "PANO")):
        path = tmp_path / f"{name}.dcm"
        sha = urandom_file(path, 40_000)
        ids[name] = add_image(local_db, 1, p, sha=sha, size=40_000, path=path, modality=modality)
    pool = make_pool(local_db.url)
    await pool.open()
    try:
        async with aiohttp.ClientSession() as session:
            api = BlobApi(session, blobs.base_url, blobs.token(1), 1)
            await Backfill(local_db.url, cloud, 1, transfer=Transfer(api, DbJournal(pool))).run()
    finally:
        await pool.close()
    return ids


def _cloud(cloud_db: TestDatabase, rid: int) -> tuple[str, str]:
    row = fetch(cloud_db, "SELECT lifecycle, blob_state FROM images WHERE id = :i", i=rid)[0]
    return row.lifecycle, row.blob_state


def _object_exists(blobs: BlobServer, local_db: TestDatabase, rid: int) -> bool:
    sha = fetch(local_db, "SELECT blob_sha256 FROM images WHERE id = :i", i=rid)[0].blob_sha256
    listed = blobs.s3.client().list_objects_v2(
        Bucket=blobs.settings.bucket, Prefix=blobs.key(1, sha)
    )
    return bool(listed.get("KeyCount"))


@pytest.mark.parametrize("option", ["keep", "backup", "delete"])
async def test_old_data_options_and_restore(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    blobs: BlobServer,
    sync_api: CloudApi,
    files_cloud: FilesCloud,
    tmp_path: Path,
    option: str,
) -> None:
    ids = await _backfill_with_files(local_db, files_cloud, blobs, tmp_path)
    assert _cloud(cloud_db, ids["pano"]) == ("active", "uploaded")
    # The cloud through the cloud API with the site's token (one token for the sync
    # and the blob endpoints), no cloud database URL.
    env = {
        "SCSYNC_LOCAL_DB_URL": local_db.url,
        "SCSYNC_CLOUD_API_URL": sync_api.url,
        "SCSYNC_SITE_ID": "1",
        "SCSYNC_BLOBS_URL": blobs.base_url,
        "SCSYNC_SITE_TOKEN": blobs.token(1),
    }
    out = scsync(
        "policy",
        "set",
        "--mode",
        "selective",
        "--modalities",
        "CT",
        "--old-data",
        option,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    # The CT image stays in scope and untouched whatever the option.
    assert _cloud(cloud_db, ids["ct"]) == ("active", "uploaded")
    assert _object_exists(blobs, local_db, ids["ct"])
    pano = ids["pano"]
    if option == "keep":
        assert _cloud(cloud_db, pano) == ("active", "uploaded")
        assert _object_exists(blobs, local_db, pano)
    elif option == "backup":
        assert _cloud(cloud_db, pano) == ("backed_up", "uploaded")
        assert _object_exists(blobs, local_db, pano)
        restored = scsync("restore", "images", str(pano), env=env)
        assert restored.returncode == 0, restored.stderr
        assert _cloud(cloud_db, pano) == ("active", "uploaded")
        assert _scope(local_db, "images", pano)  # pinned: the next apply leaves it alone
        again = scsync("policy", "set", env=env)
        assert again.returncode == 0 and _cloud(cloud_db, pano) == ("active", "uploaded")
        twice = scsync("restore", "images", str(pano), env=env)
        assert twice.returncode != 0 and "no backed-up" in twice.stderr
    else:
        assert _cloud(cloud_db, pano) == ("deleted", "remote")
        assert not _object_exists(blobs, local_db, pano)
    # The local database is the origin of truth: it keeps everything.
    assert fetch(local_db, "SELECT count(*) AS n FROM images")[0].n == 2


async def test_disable_enable_marks_the_cloud_copy(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi, files_cloud: FilesCloud
) -> None:
    p = add_patient(local_db, 1)
    await Backfill(local_db.url, files_cloud, 1).run()
    env = site_env(local_db, sync_api)
    before = fetch(local_db, "SELECT revision FROM patients")[0].revision
    out = scsync("sync", "disable", "patients", str(p), env=env)
    assert out.returncode == 0, out.stderr
    local = fetch(local_db, "SELECT sync_enabled, revision, synced FROM patients")[0]
    # A content change: a new revision goes out through the outbox like any edit.
    assert (local.sync_enabled, local.synced) == (False, False) and local.revision != before
    outbox = fetch(local_db, "SELECT op FROM scsync_outbox WHERE row_id = :i ORDER BY seq", i=p)
    assert [o.op for o in outbox][-1] == "U"
    cloud = fetch(cloud_db, "SELECT lifecycle, sync_enabled FROM patients")[0]
    assert (cloud.lifecycle, cloud.sync_enabled) == ("deleted", False)
    assert scsync("sync", "enable", "patients", str(p), env=env).returncode == 0
    assert fetch(cloud_db, "SELECT lifecycle FROM patients")[0].lifecycle == "active"
    # From the cloud: a cloud client turning sync off marks the copy deleted too.
    with cloud_db.engine.begin() as conn:
        conn.execute(text("UPDATE patients SET sync_enabled = false"))
    assert fetch(cloud_db, "SELECT lifecycle FROM patients")[0].lifecycle == "deleted"
    missing = scsync("sync", "disable", "patients", "12345", env=env)
    assert missing.returncode != 0 and "no patients record" in missing.stderr


def test_cli_reports_an_unreachable_database_in_one_line() -> None:
    from scsync.s3_server import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/nowhere"
    for args in (("backfill", "status"), ("policy", "show"), ("backfill", "pause")):
        out = scsync(*args, env={"SCSYNC_LOCAL_DB_URL": url})
        assert out.returncode == 3, out.stderr
        assert out.stderr.startswith("scsync: error: database unreachable")
        assert "Traceback" not in out.stderr
