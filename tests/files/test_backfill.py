"""Backfill lane in-process: newest first, parents first, resumable, files uploaded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from api.sync_files import _BULK
from replicator.files.backfill import (
    Backfill,
    BackfillConfig,
    Progress,
    _bigint_array,
    read_progress,
)
from replicator.files.cloud import FilesCloud
from replicator.files.errors import FilesError
from replicator.files.localdb import connect, make_pool
from replicator.files.transfer import BlobApi, DbJournal, Transfer
from replicator.wal import origin_session
from schema.database import Pool, named
from tests.files.conftest import BlobServer
from tests.files.helpers import add_image, add_patient, fetch, sha256_of, urandom_file
from tests.pg import TestDatabase
from tests.world import CloudApi


def seed_patients(tdb: TestDatabase, n: int) -> list[int]:
    with tdb.engine.begin() as conn:
        ids = conn.execute(
            text(
                "INSERT INTO patients (site_id, patient_code, name)"
                " SELECT :s, 'P' || g, 'Name ' || g FROM generate_series(1, :n) g RETURNING id"
            ),
            {"s": tdb.site_id, "n": n},
        ).scalars()
        return sorted(ids)


@pytest.fixture
async def local_pool(local_db: TestDatabase) -> AsyncIterator[Pool]:
    pool = make_pool(local_db.url)
    await pool.open()
    yield pool
    await pool.close()


def _pause(tdb: TestDatabase) -> None:
    with psycopg.connect(tdb.libpq_url, autocommit=True) as c:
        c.execute(
            "INSERT INTO scsync_backfill (singleton, state) VALUES (true, 'paused')"
            " ON CONFLICT (singleton) DO UPDATE SET state = 'paused'"
        )


@pytest.mark.parametrize("in_flight", [1, 2, 3])
async def test_metadata_newest_first_resumable_and_exactly_once(
    in_flight: int, local_db: TestDatabase, cloud_db: TestDatabase, files_cloud: FilesCloud
) -> None:
    """With one batch at a time or several in flight: the pause lets the batches taken
    finish, and exactly the newest rows are marked, each once."""
    ids = seed_patients(local_db, 250)
    batches = 0

    async def gate() -> None:
        nonlocal batches
        batches += 1
        if batches == 4:  # pause after three batches of 40
            _pause(local_db)

    config = BackfillConfig(batch_rows=40, tables=("patients",), batches_in_flight=in_flight)
    first = await Backfill(local_db.url, files_cloud, 1, config=config, live_gate=gate).run()
    assert first.state == "paused"
    synced = [r.id for r in fetch(local_db, "SELECT id FROM patients WHERE synced ORDER BY id")]
    assert synced == ids[-120:]  # exactly the newest 120
    assert [r.id for r in fetch(cloud_db, "SELECT id FROM patients ORDER BY id")] == synced
    status = await _status(local_db)
    assert (status.state, status.rows_done, status.rows_total) == ("paused", 120, 250)

    # A crash between the cloud commit and the local mark: the next run sees duplicates.
    with local_db.engine.begin() as conn:
        conn.execute(text("SET LOCAL scsync.replicating = 'on'"))
        conn.execute(
            text("UPDATE patients SET synced_revision = NULL WHERE id = ANY(:ids)"),
            {"ids": ids[-10:]},
        )
    second = await Backfill(local_db.url, files_cloud, 1, config=config).run()
    assert second.state == "done"
    assert fetch(local_db, "SELECT count(*) AS n FROM patients WHERE NOT synced")[0].n == 0
    cloud = fetch(cloud_db, "SELECT id, revision, synced_revision, lifecycle FROM patients")
    local = {r.id: r.revision for r in fetch(local_db, "SELECT id, revision FROM patients")}
    assert len(cloud) == 250
    assert all(r.revision == local[r.id] == r.synced_revision for r in cloud)
    assert {r.lifecycle for r in cloud} == {"active"}
    history = fetch(
        cloud_db, "SELECT count(*) AS n FROM scsync_history WHERE table_name = 'patients'"
    )
    assert history[0].n == 250
    status = await _status(local_db)
    assert (status.state, status.rows_done, status.rows_total) == ("done", 250, 250)
    events = fetch(local_db, "SELECT payload FROM scsync_api_events WHERE type = 'sync.progress'")
    assert events and events[-1].payload["state"] == "done"


async def test_the_same_lane_runs_again_with_fresh_connections(
    local_db: TestDatabase, cloud_db: TestDatabase, files_cloud: FilesCloud
) -> None:
    """The replicator's backfill loop starts the same Backfill again after it stopped
    (a failure, a pause): the second run takes its own connections, not the first
    run's closed ones."""
    ids = seed_patients(local_db, 100)
    gates = 0

    async def gate() -> None:
        nonlocal gates
        gates += 1
        if gates == 2:
            _pause(local_db)

    config = BackfillConfig(batch_rows=30, tables=("patients",))
    lane = Backfill(local_db.url, files_cloud, 1, config=config, live_gate=gate)
    assert (await lane.run()).state == "paused"
    assert (await lane.run()).state == "done"
    synced = [r.id for r in fetch(local_db, "SELECT id FROM patients WHERE synced ORDER BY id")]
    assert synced == ids
    assert [r.id for r in fetch(cloud_db, "SELECT id FROM patients ORDER BY id")] == ids


async def test_batches_in_flight_must_be_positive(
    local_db: TestDatabase, cloud_db: TestDatabase, files_cloud: FilesCloud
) -> None:
    seed_patients(local_db, 3)
    config = BackfillConfig(tables=("patients",), batches_in_flight=0)
    with pytest.raises(FilesError, match="batches_in_flight must be at least 1"):
        await Backfill(local_db.url, files_cloud, 1, config=config).run()
    assert fetch(cloud_db, "SELECT id FROM patients") == []


async def _status(tdb: TestDatabase) -> Progress:
    conn = await connect(tdb.url)
    try:
        return await read_progress(conn, 1)
    finally:
        await conn.close()


async def test_disabled_rows_never_cross_and_children_follow_parents(
    local_db: TestDatabase, cloud_db: TestDatabase, files_cloud: FilesCloud
) -> None:
    patient = add_patient(local_db, 1)
    hidden = add_patient(local_db, 1, "P2")
    with local_db.engine.begin() as conn:
        conn.execute(text("UPDATE patients SET sync_enabled = false WHERE id = :i"), {"i": hidden})
    image = add_image(local_db, 1, patient)
    await Backfill(local_db.url, files_cloud, 1, config=BackfillConfig(bulk=False)).run()
    assert [r.id for r in fetch(cloud_db, "SELECT id FROM patients")] == [patient]
    assert [r.id for r in fetch(cloud_db, "SELECT id FROM images")] == [image]


async def test_files_in_scope_uploaded_others_metadata_only(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    blobs: BlobServer,
    files_cloud: FilesCloud,
    local_pool: Pool,
    tmp_path: Path,
) -> None:
    patient = add_patient(local_db, 1)
    files = {}
    for i, modality in enumerate(["CT", "PANO", "CT"]):
        path = tmp_path / f"img{i}.dcm"
        sha = urandom_file(path, 50_000 + i)
        files[
            add_image(local_db, 1, patient, sha=sha, size=50_000 + i, path=path, modality=modality)
        ] = sha
    with local_db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scsync_file_policy (mode, modalities) VALUES ('selective', '[\"CT\"]')"
            )
        )
    async with aiohttp.ClientSession() as session:
        transfer = Transfer(
            BlobApi(session, blobs.base_url, blobs.token(1), 1), DbJournal(local_pool)
        )
        done = await Backfill(local_db.url, files_cloud, 1, transfer=transfer).run()
    assert done.state == "done" and done.bytes_done == done.bytes_total == 100_002
    states = {r.id: r.blob_state for r in fetch(cloud_db, "SELECT id, blob_state FROM images")}
    modalities = {r.id: r.modality for r in fetch(local_db, "SELECT id, modality FROM images")}
    assert states == {i: ("uploaded" if modalities[i] == "CT" else "remote") for i in files}
    s3 = blobs.s3.client()
    for image_id, sha in files.items():
        if modalities[image_id] == "CT":
            body = s3.get_object(Bucket=blobs.settings.bucket, Key=blobs.key(1, sha))["Body"]
            assert sha256_of(body.read()) == sha
    # The scope widens: the next backfill uploads what crossed as metadata only.
    with local_db.engine.begin() as conn:
        conn.execute(text("UPDATE scsync_file_policy SET mode = 'all'"))
    async with aiohttp.ClientSession() as session:
        transfer = Transfer(
            BlobApi(session, blobs.base_url, blobs.token(1), 1), DbJournal(local_pool)
        )
        again = await Backfill(local_db.url, files_cloud, 1, transfer=transfer).run()
    assert again.state == "done" and again.rows_done == again.rows_total
    states = {r.id: r.blob_state for r in fetch(cloud_db, "SELECT id, blob_state FROM images")}
    assert set(states.values()) == {"uploaded"}


def test_marking_a_batch_synced_reads_only_its_rows(local_db: TestDatabase) -> None:
    """The mark finds a batch's rows through the primary key: hashing the whole table
    for every batch made a backfill's marks quadratic in the table's size."""
    ids = seed_patients(local_db, 3000)
    batch = ids[-50:]
    with psycopg.connect(local_db.libpq_url, autocommit=True) as conn:
        conn.execute("ANALYZE patients")
        plan = conn.execute(
            sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) ").format()
            + named("files_backfill_mark_synced", table=sql.Identifier("patients")),
            {"ids": batch, "revs": [7] * len(batch)},
        ).fetchone()
    assert plan is not None
    text_plan = json.dumps(plan[0])
    assert '"Relation Name": "patients"' in text_plan
    assert "Seq Scan" not in text_plan
    marked = fetch(local_db, "SELECT id FROM patients WHERE synced_revision = 7 ORDER BY id")
    assert [r.id for r in marked] == batch


def test_id_arrays_go_as_one_literal_of_integers() -> None:
    """Ids and revisions reach PostgreSQL as one array literal (psycopg's element-by-
    element dump of a list was the site process's largest cost); only integers get in."""
    assert _bigint_array([3, -1, 2**62]) == "{3,-1,4611686018427387904}"
    assert _bigint_array([]) == "{}"
    with pytest.raises(ValueError):
        _bigint_array(["1},{2"])  # type: ignore[list-item]


@pytest.mark.parametrize("busy_s", [0.0, 0.3])
async def test_marks_carry_the_backfill_origin_so_the_wal_capture_drops_them(
    busy_s: float, local_db: TestDatabase, cloud_db: TestDatabase, files_cloud: FilesCloud
) -> None:
    """A site capturing from the WAL decodes every row the backfill marks synced unless
    the marks carry a replication origin: with one, pgoutput's ``origin none`` (what the
    replicator asks for) sends none of them. An origin still held for a moment by an
    earlier session (a lane started again at once) is waited for."""
    seed_patients(local_db, 30)
    slot = f"bf_marks_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(local_db.libpq_url, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    holder = await connect(local_db.url)
    try:
        if busy_s:
            await origin_session(holder, "backfill")
        release = asyncio.get_running_loop().call_later(
            busy_s, lambda: asyncio.ensure_future(holder.close())
        )
        config = BackfillConfig(batch_rows=10, tables=("patients",))
        assert (await Backfill(local_db.url, files_cloud, 1, config=config).run()).state == "done"
        release.cancel()

        with psycopg.connect(local_db.libpq_url, autocommit=True) as conn:
            # Decoding reads flushed WAL only, and the marks commit asynchronously.
            end = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
            for _ in range(100):
                row = conn.execute("SELECT pg_current_wal_flush_lsn() >= %s", end).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.05)

        def updates(origin: str) -> int:
            with psycopg.connect(local_db.libpq_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT data FROM pg_logical_slot_peek_binary_changes(%s, NULL, NULL,"
                    " 'proto_version', '1', 'publication_names', 'scsync_capture',"
                    " 'origin', %s)",
                    (slot, origin),
                ).fetchall()
            return sum(1 for (data,) in rows if bytes(data[:1]) == b"U")

        assert updates("any") == 30  # the marks are in the WAL ...
        assert updates("none") == 0  # ... and the capture's decoding leaves them out
    finally:
        await holder.close()
        with psycopg.connect(local_db.libpq_url, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


async def test_with_the_triggers_on_the_cloud_history_is_the_capture_triggers(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi, files_cloud: FilesCloud
) -> None:
    """A cloud API whose role may not apply without triggers leaves each row's history
    to the capture trigger (the apply writes none of its own): one history row per row,
    the replicated revision, and the trigger's batch event."""
    ids = seed_patients(local_db, 25)
    sync_api.sync_app[_BULK]["bulk"] = False  # as for a role without the privilege
    config = BackfillConfig(batch_rows=10, tables=("patients",))
    assert (await Backfill(local_db.url, files_cloud, 1, config=config).run()).state == "done"
    history = fetch(
        cloud_db,
        "SELECT row_id, revision, origin, row_data->>'name' AS name FROM scsync_history"
        " WHERE table_name = 'patients' ORDER BY row_id",
    )
    local = fetch(local_db, "SELECT id, revision, name FROM patients ORDER BY id")
    assert [(h.row_id, h.revision, h.name) for h in history] == [
        (r.id, r.revision, r.name) for r in local
    ]
    assert {h.origin for h in history} == {"replicated"}
    events = fetch(
        cloud_db,
        "SELECT payload FROM scsync_api_events WHERE type = 'batch.changed'"
        " AND table_name = 'patients'",
    )
    assert sorted(int(i) for e in events for i in e.payload["ids"]) == ids
