"""The backfill and the per-record commands reach the cloud only through the cloud API
(issue #14): end to end with no cloud database URL on the site, and the tenant wall of
the site endpoints (api/sync_files.py): site 1's token naming anything of site 2 is
refused whole, 403 naming it, and nothing of site 2 (nor of the batch) changes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from replicator.files.backfill import _copied_columns
from replicator.files.cloud import FilesCloud
from replicator.files.errors import CloudRefused
from replicator.sites import register_site
from schema.auth import site_token
from schema.tables import SYNCED_TABLES
from tests.files.conftest import SECRET, site_settings
from tests.files.helpers import add_image, add_patient, fetch
from tests.pg import TestDatabase
from tests.world import CloudApi

pytestmark = pytest.mark.timeout(120)


def scsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SCSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "scsync", *args],
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def site_env(local_db: TestDatabase, api: CloudApi, site_id: int = 1) -> dict[str, str]:
    return {
        "SCSYNC_LOCAL_DB_URL": local_db.url,
        "SCSYNC_CLOUD_API_URL": api.url,
        "SCSYNC_SITE_TOKEN": site_token(SECRET, site_id),
        "SCSYNC_SITE_ID": str(site_id),
    }


def cloud_snapshot(cloud_db: TestDatabase) -> dict[str, Any]:
    """Everything of the cloud that a batch or a record change could touch."""
    out: dict[str, Any] = {}
    with psycopg.connect(cloud_db.libpq_url) as conn:
        for table in [*SYNCED_TABLES, "scsync_history", "scsync_outbox"]:
            cur = conn.execute(
                sql.SQL("SELECT to_jsonb(t)::text FROM {} t ORDER BY 1").format(
                    sql.Identifier(table)
                )
            )
            out[table] = [r[0] for r in cur.fetchall()]
    return out


async def _two_sites(cloud_db: TestDatabase) -> None:
    await cloud_db.acall(register_site, "clinic-one")
    await cloud_db.acall(register_site, "clinic-two")


def _insert_raw(tdb: TestDatabase, table: str, values: dict[str, Any]) -> None:
    """A row written as-is (no capture: as a legacy import, or a forged one)."""
    cols = ", ".join(values)
    binds = ", ".join(f":{c}" for c in values)
    with tdb.engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"INSERT INTO {table} ({cols}) VALUES ({binds})"), values)


def _patient(pid: int, site_id: int, name: str = "Pat") -> dict[str, Any]:
    return {
        "id": pid,
        "site_id": site_id,
        "patient_code": f"P{pid}",
        "name": name,
        "revision": pid + 7,
    }


async def _copy_rows(tdb: TestDatabase, table: str, ids: list[int]) -> AsyncIterator[bytes]:
    """Binary COPY rows of the local table, as the site's backfill streams them."""
    columns = _copied_columns(table)
    query = sql.SQL(
        "COPY (SELECT {} FROM {} WHERE id = ANY(%s) ORDER BY id DESC) TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
    conn = await psycopg.AsyncConnection.connect(tdb.libpq_url)
    try:
        async with conn.cursor().copy(query, (ids,)) as copy:
            async for data in copy:
                yield bytes(data)
    finally:
        await conn.close()


async def test_backfill_cli_end_to_end_through_the_api(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi
) -> None:
    """`scsync backfill start` with the site's settings only (the cloud API, its token):
    every row crosses, recorded in history, and is marked synced with the revision the
    cloud holds."""
    await cloud_db.acall(register_site, "clinic-one")
    patient = add_patient(local_db, 1)
    with local_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (site_id, patient_code, name)"
                " SELECT 1, 'P' || g, 'Name ' || g FROM generate_series(1, 700) g"
            )
        )
    image = add_image(local_db, 1, patient, modality="CT")
    out = scsync(
        "backfill",
        "start",
        "--no-progress",
        "--no-yield-to-live",
        "--batch-rows",
        "100",
        env=site_env(local_db, sync_api),
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1])["state"] == "done"
    local = {r.id: r.revision for r in fetch(local_db, "SELECT id, revision FROM patients")}
    cloud = fetch(cloud_db, "SELECT id, revision, synced_revision, site_id FROM patients")
    assert {r.id: r.revision for r in cloud} == local and len(local) == 701
    assert all(r.synced_revision == r.revision and r.site_id == 1 for r in cloud)
    assert fetch(local_db, "SELECT count(*) AS n FROM patients WHERE NOT synced")[0].n == 0
    # A file row without its blob on the cloud crosses as metadata only.
    assert [(r.id, r.blob_state) for r in fetch(cloud_db, "SELECT id, blob_state FROM images")] == [
        (image, "remote")
    ]
    history = fetch(cloud_db, "SELECT count(*) AS n FROM scsync_history")[0].n
    assert history == 702


@pytest.mark.parametrize("case", ["foreign_row", "foreign_id", "foreign_reference"])
async def test_a_backfill_batch_naming_site_2_is_refused_whole(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    case: str,
) -> None:
    """Site 1's token, a batch of its own rows plus one of site 2 (a row of site 2, a
    row under an id the cloud holds for site 2, a row referring to site 2's patient):
    403 naming that row, and neither site 2's data nor any row of the batch lands."""
    await _two_sites(cloud_db)
    theirs = 900_000_001
    _insert_raw(cloud_db, "patients", {**_patient(theirs, 2, "Theirs"), "synced_revision": 1})
    own = [add_patient(local_db, 1, f"OWN{i}") for i in range(3)]
    table = "patients"
    if case == "foreign_row":
        bad = 900_000_002
        _insert_raw(local_db, "patients", _patient(bad, 2, "Forged"))
        named = f"site 1 may not send patients {bad}: it is a row of site 2"
    elif case == "foreign_id":
        bad = theirs
        _insert_raw(local_db, "patients", _patient(bad, 1, "Overwrite"))
        named = f"site 1 may not send patients {bad}: the cloud holds that id for another site"
    else:
        table = "images"
        bad = 900_000_003
        _insert_raw(
            local_db,
            "images",
            {"id": bad, "site_id": 1, "patient_id": theirs, "revision": 5, "modality": "CT"},
        )
        own = [add_image(local_db, 1, own[0], modality="CT")]
        named = f"site 1 may not send images {bad}: its patient_id refers to patients {theirs}"
    before = cloud_snapshot(cloud_db)

    async with FilesCloud(site_settings(local_db, sync_api)) as cloud:
        with pytest.raises(CloudRefused) as refused:
            await cloud.apply(
                table, _copied_columns(table), _copy_rows(local_db, table, [*own, bad])
            )
    assert named in str(refused.value) and "HTTP 403" in str(refused.value), refused.value

    # The same as the bare HTTP answer: 403, the sync endpoints' JSON error body.
    columns = ",".join(_copied_columns(table))
    async with aiohttp.ClientSession() as session:
        resp = await session.post(
            f"{sync_api.url}/v1/sync/backfill/apply",
            params={"table": table, "columns": columns},
            data=_copy_rows(local_db, table, [*own, bad]),
            headers={
                "Authorization": f"Bearer {site_token(SECRET, 1)}",
                "X-Scsync-Holder": "wall-test",
            },
        )
        body = await resp.json()
    assert resp.status == 403 and body["error"] == "forbidden", body
    assert named in body["message"], body
    assert cloud_snapshot(cloud_db) == before


async def test_a_backfill_batch_with_bad_columns_is_a_clear_400(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi
) -> None:
    await _two_sites(cloud_db)
    before = cloud_snapshot(cloud_db)
    headers = {"Authorization": f"Bearer {site_token(SECRET, 1)}", "X-Scsync-Holder": "t"}
    async with aiohttp.ClientSession() as session:
        for params, field, words in (
            ({"table": "scsync_sites", "columns": "id"}, "table", "table must be one of"),
            ({"table": "patients", "columns": "id,site_id"}, "columns", "revision missing"),
            (
                {"table": "patients", "columns": "id,site_id,revision,lifecycle"},
                "columns",
                "lifecycle cannot be sent",
            ),
        ):
            resp = await session.post(
                f"{sync_api.url}/v1/sync/backfill/apply", params=params, data=b"", headers=headers
            )
            body = await resp.json()
            assert resp.status == 400 and body["field"] == field, body
            assert words in body["message"], body
        # Bytes that are not binary COPY rows: refused, nothing written.
        resp = await session.post(
            f"{sync_api.url}/v1/sync/backfill/apply",
            params={"table": "patients", "columns": "id,site_id,revision"},
            data=b"not a copy stream",
            headers=headers,
        )
        assert resp.status == 400 and (await resp.json())["error"] == "bad_batch"
    assert cloud_snapshot(cloud_db) == before


async def test_sync_switch_and_restore_through_the_api_and_site_2_records_refused(
    local_db: TestDatabase, local_db2: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi
) -> None:
    """`scsync sync disable|enable` and `scsync restore` change site 1's cloud copies
    through the API; site 1's token naming a record of site 2 (switch, restore, old-data
    lifecycle, blob state) is refused with 403 naming it, and nothing changes."""
    await _two_sites(cloud_db)
    mine = add_patient(local_db, 1)
    _insert_raw(cloud_db, "patients", {**_patient(mine, 1), "revision": 1, "synced_revision": 1})
    env = site_env(local_db, sync_api)
    out = scsync("sync", "disable", "patients", str(mine), env=env)
    assert out.returncode == 0 and "cloud copy marked deleted" in out.stdout, out.stderr
    row = fetch(cloud_db, "SELECT sync_enabled, lifecycle FROM patients WHERE id = :i", i=mine)
    assert (row[0].sync_enabled, row[0].lifecycle) == (False, "deleted")
    out = scsync("sync", "enable", "patients", str(mine), env=env)
    assert out.returncode == 0 and "cloud copy marked active" in out.stdout, out.stderr
    row = fetch(cloud_db, "SELECT sync_enabled, lifecycle FROM patients WHERE id = :i", i=mine)
    assert (row[0].sync_enabled, row[0].lifecycle) == (True, "active")

    # A backed-up image of site 1, restored through the API.
    image = add_image(local_db, 1, mine, modality="PANO")
    _insert_raw(
        cloud_db,
        "images",
        {"id": image, "site_id": 1, "patient_id": mine, "revision": 3, "lifecycle": "backed_up"},
    )
    out = scsync("restore", "images", str(image), env=env)
    assert out.returncode == 0, out.stderr
    assert fetch(cloud_db, "SELECT lifecycle FROM images WHERE id = :i", i=image)[0].lifecycle == (
        "active"
    )

    # Site 2's records on the cloud, one backed up; site 1's token names them.
    theirs = add_patient(local_db2, 2)
    _insert_raw(cloud_db, "patients", {**_patient(theirs, 2), "revision": 1})
    their_image = 900_000_010
    _insert_raw(
        cloud_db,
        "images",
        {
            "id": their_image,
            "site_id": 2,
            "patient_id": theirs,
            "revision": 4,
            "lifecycle": "backed_up",
            "blob_state": "uploaded",
        },
    )
    before = cloud_snapshot(cloud_db)
    async with FilesCloud(site_settings(local_db, sync_api)) as cloud:
        attempts: list[tuple[str, Any]] = [
            (f"patients {theirs}", cloud.switch("patients", theirs, False)),
            (f"images {their_image}", cloud.restore("images", their_image)),
            (
                f"images {their_image}",
                cloud.set_lifecycle([("images", image), ("images", their_image)], "deleted"),
            ),
            (f"images {their_image}", cloud.blob_remote([("images", their_image)])),
        ]
        for name, attempt in attempts:
            with pytest.raises(CloudRefused) as refused:
                await attempt
            message = str(refused.value)
            assert f"site 1 may not name {name}: it belongs to site 2" in message, message
            assert "HTTP 403" in message, message
    assert cloud_snapshot(cloud_db) == before
    # Through the CLI too: the local step of site 1 has no such record, the cloud none
    # of site 1's: refused, nothing changed.
    out = scsync("restore", "images", str(their_image), env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"site 1 may not name images {their_image}: it belongs to site 2" in out.stderr
    assert cloud_snapshot(cloud_db) == before


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_a_leftover_cloud_db_url_names_its_replacement(
    local_db: TestDatabase, tmp_path: Path, how: str
) -> None:
    env = {"SCSYNC_LOCAL_DB_URL": local_db.url}
    args: list[str] = []
    if how == "flag":
        args = ["--cloud-url", "postgresql://site:hunter2@cloud/db"]
    elif how == "env":
        env["SCSYNC_CLOUD_DB_URL"] = "postgresql://site:hunter2@cloud/db"
    else:
        config = tmp_path / "local.toml"
        config.write_text('[backfill]\ncloud_db_url = "postgresql://site:hunter2@cloud/db"\n')
        args = ["--config", str(config)]
    for command in (
        ["backfill", "start", "--no-progress"],
        ["sync", "disable", "patients", "1"],
        ["restore", "images", "1"],
        ["policy", "set", "--mode", "all"],
    ):
        out = scsync(*command, *args, env=env)
        assert out.returncode == 2, (command, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert "cloud_api_url" in lines[0] and "site_token" in lines[0], lines[0]
        assert "hunter2" not in out.stderr
    # Nothing changed locally either.
    assert fetch(local_db, "SELECT count(*) AS n FROM scsync_file_policy")[0].n == 0


def test_cloud_settings_are_checked_before_anything_changes_locally(
    local_db: TestDatabase, sync_api: CloudApi
) -> None:
    """`policy set` and `sync disable` with the cloud API named but no site token: a
    one-line error naming site_token, and the local database is left as it was."""
    patient = add_patient(local_db, 1)
    env = {
        "SCSYNC_LOCAL_DB_URL": local_db.url,
        "SCSYNC_CLOUD_API_URL": sync_api.url,
        "SCSYNC_SITE_ID": "1",
    }
    for command in (
        ["policy", "set", "--mode", "selective"],
        ["sync", "disable", "patients", str(patient)],
    ):
        out = scsync(*command, env=env)
        assert out.returncode == 2 and "site_token" in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fetch(local_db, "SELECT count(*) AS n FROM scsync_file_policy")[0].n == 0
    assert fetch(local_db, "SELECT sync_enabled FROM patients")[0].sync_enabled is True


async def test_the_apply_answers_inserted_rows_and_duplicates_not_differing_ones(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi
) -> None:
    """One statement applies a batch and answers what the cloud holds as sent: the rows
    it inserted and the duplicates (same id and revision already there), never a row the
    cloud holds at another revision (a conflict, left to the core)."""
    await _two_sites(cloud_db)
    for pid in (101, 102, 103, 104):
        _insert_raw(local_db, "patients", _patient(pid, 1))
    _insert_raw(cloud_db, "patients", _patient(102, 1))  # a duplicate
    _insert_raw(cloud_db, "patients", {**_patient(103, 1), "revision": 999})  # differs
    async with FilesCloud(site_settings(local_db, sync_api)) as cloud:
        batch = _copy_rows(local_db, "patients", [101, 102, 103, 104])
        accepted = await cloud.apply("patients", _copied_columns("patients"), batch)
    assert sorted(accepted) == [(101, 108), (102, 109), (104, 111)]
    rows = {r.id: r.revision for r in fetch(cloud_db, "SELECT id, revision FROM patients")}
    assert rows == {101: 108, 102: 109, 103: 999, 104: 111}
    history = fetch(cloud_db, "SELECT row_id FROM scsync_history ORDER BY row_id")
    assert [h.row_id for h in history] == [101, 104]
