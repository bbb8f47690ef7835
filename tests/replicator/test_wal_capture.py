"""The site's capture from its WAL (``capture = "wal"``, replicator/wal.py): the writer
writes no history or outbox row, the replicator turns the slot's changes straight into
push batches (no outbox row on the way), exactly once across an interruption between
the cloud's commit and the slot's confirmation, never its own writes, through a lost
slot, and back to the triggers on request."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from replicator.daemon import Daemon
from replicator.errors import SettingsError, Unavailable
from replicator.lane import Lane
from replicator.settings import load_settings
from replicator.wal import check_settings, lsn_int
from schema.urls import libpq_url
from scsync.embedded_pg import EmbeddedPostgres
from tests.world import World, rows, sync


def _count(conn: psycopg.Connection[tuple[object, ...]], query: str, *args: Any) -> int:
    row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(str(row[0]))


async def _open(world: World) -> Lane:
    lane = Lane("push", world.site1.settings(capture="wal"))
    await lane.open()
    return lane


async def test_the_writer_writes_no_outbox_row_and_the_wal_carries_every_change(
    world: World,
) -> None:
    local = world.site1.local
    await (await _open(world)).close()  # the slot exists from here on
    lane = await _open(world)
    try:
        with local.connect(autocommit=True) as c:
            c.execute(
                "INSERT INTO patients (patient_code, name) "
                "SELECT 'W' || g, 'wal ' || g FROM generate_series(1, 50) g"
            )
            c.execute("UPDATE patients SET notes = 'edited' WHERE patient_code = 'W7'")
            c.execute("DELETE FROM patients WHERE patient_code = 'W9'")
            # The writer's own statements wrote events only.
            assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0
            assert _count(c, "SELECT count(*) FROM scsync_history") == 0
            assert _count(c, "SELECT count(*) FROM scsync_api_events") > 0
        assert lane.capture is not None and lane._conn is not None
        status = await lane.capture.status(lane._conn)
        assert (status.mode, status.active, status.wal_status) == ("wal", True, "reserved")
        assert status.slot is not None and status.slot.startswith("scsync_")
        assert status.retained_bytes is not None and status.retained_bytes >= 0
        # Written, not pushed yet: WAL past the confirmed position.
        assert status.unconfirmed_bytes is not None and status.unconfirmed_bytes > 0
        batch = await lane.read()
        # One batch straight from the WAL: no outbox row on the way, each record once
        # (W7's insert and update coalesced), W9 made and deleted before it crossed: a
        # tombstone carrying the revision the site's history holds.
        by_code = {json.loads(r.row_data)["patient_code"]: r for r in batch if r.row_data}
        assert len(batch) == 50 and len(by_code) == 49 and "W9" not in by_code
        assert [r.op for r in batch if r.row_data is None] == ["D"]
        assert all(r.seqs == [] for r in batch)
        with local.connect() as c:
            assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0
            # The site's history: each revision once (W7 twice: insert and update).
            assert _count(c, "SELECT count(*) FROM scsync_history") == 51
        result, failures = await lane._apply(batch)
        await lane._ack(batch, result, failures)
        assert status.confirmed_lsn is not None
        assert lane.capture.confirmed_lsn > lsn_int(status.confirmed_lsn)
        # The slot hears it asynchronously (a standby status update).
        for _ in range(100):
            read = await lane.capture.status(lane._conn)
            assert read.confirmed_lsn is not None
            if lsn_int(read.confirmed_lsn) == lane.capture.confirmed_lsn:
                break
            await asyncio.sleep(0.05)
        assert read.confirmed_lsn is not None
        assert lsn_int(read.confirmed_lsn) == lane.capture.confirmed_lsn
        assert await lane.read() == []  # nothing new: nothing twice
        # A change not pushed yet shows as WAL past the confirmed position.
        with local.connect(autocommit=True) as c:
            c.execute("INSERT INTO doctors (name) VALUES ('Dr. Unread')")
        confirmed = lane.capture.confirmed_lsn
        unread = await lane.capture.status(lane._conn)
        assert unread.unconfirmed_bytes is not None and unread.unconfirmed_bytes > 0
        assert (await lane.read())[0].table_name == "doctors"
        assert lane.capture.confirmed_lsn == confirmed  # not before the cloud has it
        await lane.drain()
        await lane.refresh_metrics()
        assert lane.metrics.snapshot()["scsync_capture_wal_safe"] == [({}, 1.0)]
    finally:
        await lane.close()
    await sync(world.site1, capture="wal")
    cloud = {r["patient_code"]: r for r in rows(world.cloud, "patients").values()}
    # W9 was made and deleted before it ever crossed: the cloud never sees it.
    assert len(cloud) == 49 and "W9" not in cloud
    assert cloud["W7"]["notes"] == "edited"
    site = {r["patient_code"]: r for r in rows(local, "patients").values()}
    assert all(r["synced"] for r in site.values())
    assert {c: r["revision"] for c, r in site.items()} == {
        c: r["revision"] for c, r in cloud.items()
    }


async def test_a_batch_the_cloud_committed_before_the_slot_heard_is_skipped_then_acked(
    world: World,
) -> None:
    local = world.site1.local
    lane = await _open(world)
    await lane.close()
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) SELECT 'Dr. ' || g FROM generate_series(1, 20) g")
    lane = await _open(world)
    try:
        batch = await lane.read()
        assert len(batch) == 20
        result, _ = await lane._apply(batch)  # committed at the cloud, with its end LSN
        assert result.applied == 20 and not result.skipped
    finally:
        await lane.close()  # ... and the process dies: no site ack, the slot not told
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM doctors WHERE synced") == 0
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE doctors SET name = name || ' (cloud)' WHERE name = 'Dr. 1'")
        cloud_before = c.execute("SELECT id, revision FROM doctors ORDER BY id").fetchall()
    lane = await _open(world)
    try:
        replay = await lane.read()  # the slot sends the batch again
        assert sorted(r.row_id for r in replay) == sorted(r.row_id for r in batch)
        result, failures = await lane._apply(replay)
        assert result.skipped and result.applied == 0 and not result.raw
        await lane._ack(replay, result, failures)
        assert await lane.read() == []
    finally:
        await lane.close()
    with world.cloud.connect() as c:
        # Nothing applied twice: the cloud's edit made after the commit is still there.
        assert c.execute("SELECT id, revision FROM doctors ORDER BY id").fetchall() == cloud_before
    with local.connect() as c:
        # The site's ack finished from what the cloud holds: each of its revisions
        # reached the cloud (one was edited there since: the pull brings that).
        assert _count(c, "SELECT count(*) FROM doctors WHERE synced") == 20
    await sync(world.site1, capture="wal")
    names = sorted(r["name"] for r in rows(local, "doctors").values())
    assert "Dr. 1 (cloud)" in names and len(names) == 20


async def test_a_deletion_crosses_by_the_wal(world: World) -> None:
    local = world.site1.local
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) VALUES ('Dr. Stays'), ('Dr. Goes')")
    await sync(world.site1, capture="wal")
    assert len(rows(world.cloud, "doctors")) == 2
    with local.connect(autocommit=True) as c:
        c.execute("DELETE FROM doctors WHERE name = 'Dr. Goes'")
    lane = await _open(world)
    try:
        batch = await lane.read()
        (tomb,) = batch
        with local.connect() as c:
            last = c.execute(
                "SELECT revision FROM scsync_history WHERE row_id = %s ORDER BY seq DESC LIMIT 1",
                (tomb.row_id,),
            ).fetchone()
        # The tombstone: only the id came in the WAL, the revision is history's last.
        assert (tomb.op, tomb.row_data, tomb.seqs) == ("D", None, [])
        assert last is not None and tomb.revision == tomb.base == last[0]
        result, failures = await lane._apply(batch)
        assert result.applied == 1
        await lane._ack(batch, result, failures)
    finally:
        await lane.close()
    # The cloud never hard-deletes: the row stays, marked deleted.
    cloud = {r["name"]: r for r in rows(world.cloud, "doctors").values()}
    assert cloud["Dr. Goes"]["deleted"] and cloud["Dr. Goes"]["lifecycle"] == "deleted"
    assert not cloud["Dr. Stays"]["deleted"]
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0


async def test_a_change_of_a_record_in_flight_waits_for_that_batchs_ack(world: World) -> None:
    """The drain reads batch N+1 while N is applied at the cloud: a later change of a
    record of N goes to the outbox and crosses after N's ack, on N's revision (sent at
    once, it would carry the base from before that ack: a false conflict)."""
    local = world.site1.local
    await (await _open(world)).close()
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) SELECT 'Dr. ' || g FROM generate_series(1, 5) g")
    lane = await _open(world)
    try:
        first = await lane.read()
        assert len(first) == 5
        with local.connect(autocommit=True) as c:
            c.execute("UPDATE doctors SET name = 'Dr. 1 again' WHERE name = 'Dr. 1'")
            c.execute("INSERT INTO doctors (name) VALUES ('Dr. 6')")
        ahead = await lane.read(busy=first)
        assert [json.loads(r.row_data or "{}").get("name") for r in ahead] == ["Dr. 6"]
        with local.connect() as c:
            assert _count(c, "SELECT count(*) FROM scsync_outbox") == 1
        for batch in (first, ahead):
            result, failures = await lane._apply(batch)
            assert result.applied == len(batch)
            await lane._ack(batch, result, failures)
        assert await lane.drain() == 1  # the outbox's row, now on first's revision
    finally:
        await lane.close()
    names = sorted(r["name"] for r in rows(world.cloud, "doctors").values())
    assert names == ["Dr. 1 again", "Dr. 2", "Dr. 3", "Dr. 4", "Dr. 5", "Dr. 6"]
    for db in (local, world.cloud):
        with db.connect() as c:
            assert _count(c, "SELECT count(*) FROM scsync_conflicts") == 0
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM doctors WHERE NOT synced") == 0
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0


def test_the_read_waits_until_a_decoded_transaction_is_visible(world: World) -> None:
    """The walsender may send a transaction before its backend has left the state a new
    snapshot reads: the read waits for it (read at once, the record's content would
    be the version before the change, sent as a duplicate and lost)."""
    wait = "SELECT scsync_capture_wait_visible(%s, %s)"
    with world.site1.local.connect() as open_txn, world.site1.local.connect(autocommit=True) as c:
        xid = _count(open_txn, "SELECT pg_current_xact_id()::text::bigint & 4294967295")
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not visible"):
            c.execute(wait, ([xid], 0.2))
        timer = threading.Timer(0.5, open_txn.commit)
        timer.start()
        started = time.monotonic()
        c.execute(wait, ([xid], 10))
        assert time.monotonic() - started >= 0.4  # it waited for the commit
        timer.join()
        started = time.monotonic()
        c.execute(wait, ([xid], 10))
        assert time.monotonic() - started < 0.2  # visible: no wait


async def test_the_replicators_own_writes_are_not_captured_back(world: World) -> None:
    await sync(world.site1, capture="wal")
    with world.cloud.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'from the cloud')")
    await sync(world.site1, capture="wal")
    assert [r["name"] for r in rows(world.site1.local, "doctors").values()] == ["from the cloud"]
    lane = await _open(world)
    try:
        assert await lane.read() == []  # the pull's apply and the acks: not the site's
    finally:
        await lane.close()
    with world.site1.local.connect() as c:
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0


async def test_a_dropped_slot_resyncs_the_unsynced_rows_with_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    local = world.site1.local
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) VALUES ('Dr. Before'), ('Dr. Gap')")
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("UPDATE doctors SET name = 'Dr. Gap 2' WHERE name = 'Dr. Gap'")
        # An operator (or max_slot_wal_keep_size) takes the slot away.
        c.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = current_database()"
        )
    await sync(world.site1, capture="wal")
    assert "is gone" in caplog.text and "resyncing" in caplog.text
    cloud = sorted(r["name"] for r in rows(world.cloud, "doctors").values())
    assert cloud == ["Dr. Before", "Dr. Gap 2"]


async def test_an_untouched_out_of_line_value_is_kept(world: World) -> None:
    local = world.site1.local
    big = os.urandom(60_000).hex()  # incompressible: stored out of line (TOAST)
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (patient_code, name, notes) VALUES ('T', 'Toast', %s)", (big,)
        )
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'Toast 2'")  # notes: not in the WAL
    await sync(world.site1, capture="wal")
    (cloud,) = rows(world.cloud, "patients").values()
    assert cloud["name"] == "Toast 2" and cloud["notes"] == big
    with local.connect() as c:
        row = c.execute(
            "SELECT row_data ->> 'notes' FROM scsync_history ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert row is not None and row[0] == big


async def test_back_to_the_triggers_drops_the_slot_and_loses_nothing(world: World) -> None:
    local = world.site1.local
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) VALUES ('Dr. Late')")  # in the WAL only
    # capture = "triggers": the slot is spooled out and dropped
    await sync(world.site1, capture="triggers")
    with local.connect(autocommit=True) as c:
        assert (
            _count(
                c, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"
            )
            == 0
        )
        assert c.execute("SELECT capture FROM scsync_node").fetchone() == ("triggers",)
        c.execute("INSERT INTO doctors (name) VALUES ('Dr. Trigger')")
    await sync(world.site1, capture="triggers")
    assert sorted(r["name"] for r in rows(world.cloud, "doctors").values()) == [
        "Dr. Late",
        "Dr. Trigger",
    ]


async def test_a_database_without_logical_wal_is_refused_in_one_line(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "data", settings={"wal_level": "replica"})
    server.start()
    try:
        async with await psycopg.AsyncConnection.connect(libpq_url(server.url)) as conn:
            with pytest.raises(SettingsError) as raised:
                await check_settings(conn)
        # The daemon stops there, before any lane: exit 2.
        settings = load_settings(
            None,
            local_db_url=server.url,
            cloud_api_url="http://127.0.0.1:9",
            site_token="unused",
            site_id=1,
            capture="wal",
        )
        assert await asyncio.wait_for(Daemon(settings).serve(), 30) == 2
    finally:
        server.stop()
    message = str(raised.value)
    assert "wal_level = replica" in message and "set wal_level = logical" in message
    assert "\n" not in message


async def test_the_wal_waits_in_the_slot_while_the_cloud_is_out_of_reach(
    world: World,
) -> None:
    local = world.site1.local
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) SELECT 'Dr. ' || g FROM generate_series(1, 5) g")
        before = c.execute(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots"
            " WHERE database = current_database()"
        ).fetchone()
    lane = Lane("push", world.site1.settings(capture="wal", cloud_api_url="http://127.0.0.1:9"))
    with pytest.raises(Unavailable):
        await lane.open()
    await lane.close()
    with local.connect() as c:
        # No spool: nothing went to the outbox, and the slot was not moved (it keeps the
        # WAL until the cloud has committed it).
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 0
        after = c.execute(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots"
            " WHERE database = current_database()"
        ).fetchone()
    assert before == after
    await sync(world.site1, capture="wal")
    assert len(rows(world.cloud, "doctors")) == 5
