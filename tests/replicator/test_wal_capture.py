"""The site's capture from its WAL (``capture = "wal"``, replicator/wal.py): the writer
writes no history or outbox row, the replicator spools them from the slot, exactly once
across an interrupted spool, never its own writes, through a lost slot, and back to the
triggers on request."""

from __future__ import annotations

import asyncio
import os
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
        spooled = await lane.spool()
        assert spooled == 52
        with local.connect() as c:
            # The insert, the update (a new revision) and the tombstone, in commit order.
            ops = c.execute(
                "SELECT op FROM scsync_outbox o JOIN patients p ON p.id = o.row_id"
                " WHERE p.patient_code = 'W7' ORDER BY o.seq"
            ).fetchall()
            assert [o[0] for o in ops] == ["I", "U"]
            assert _count(c, "SELECT count(*) FROM scsync_outbox WHERE op = 'D'") == 1
            assert _count(c, "SELECT count(*) FROM scsync_history") == 51
        assert await lane.spool() == 0  # nothing new: nothing twice
        assert lane.capture is not None and lane._conn is not None
        status = await lane.capture.status(lane._conn)
        assert (status.mode, status.active, status.wal_status) == ("wal", True, "reserved")
        assert status.slot is not None and status.slot.startswith("scsync_")
        assert status.retained_bytes is not None and status.retained_bytes >= 0
        # A change the spool has not read yet shows as WAL not yet read; reading it moves
        # the spooled position past it.
        with local.connect(autocommit=True) as c:
            c.execute("INSERT INTO doctors (name) VALUES ('Dr. Unread')")
        unread = await lane.capture.status(lane._conn)
        assert status.unread_bytes is not None and unread.unread_bytes is not None
        assert unread.unread_bytes > status.unread_bytes
        assert await lane.spool() == 1
        read = await lane.capture.status(lane._conn)
        assert lsn_int(str(read.spooled_lsn)) > lsn_int(str(status.spooled_lsn))
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


async def test_an_interrupted_spool_is_neither_lost_nor_doubled(world: World) -> None:
    local = world.site1.local
    lane = await _open(world)
    await lane.close()
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) SELECT 'Dr. ' || g FROM generate_series(1, 20) g")
    lane = await _open(world)
    capture = lane.capture
    assert capture is not None
    calls = 0
    original = capture._send_status

    async def confirm_fails(flushed: int, reply: bool = False) -> None:
        nonlocal calls
        if not reply:  # the confirmation after the spool's commit: the process dies
            calls += 1
            raise ConnectionError("killed after the spool committed, before the slot heard")
        await original(flushed, reply)

    capture._send_status = confirm_fails  # type: ignore[method-assign]
    with pytest.raises(Exception, match="killed after the spool"):
        await lane.spool()
    assert calls == 1
    await lane.close()
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 20
    # The slot sends them again; the recorded LSN says they are here already.
    lane = await _open(world)
    try:
        assert await lane.spool() == 0
    finally:
        await lane.close()
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 20
        assert _count(c, "SELECT count(DISTINCT row_id) FROM scsync_outbox") == 20


async def test_the_replicators_own_writes_are_not_captured_back(world: World) -> None:
    await sync(world.site1, capture="wal")
    with world.cloud.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'from the cloud')")
    await sync(world.site1, capture="wal")
    assert [r["name"] for r in rows(world.site1.local, "doctors").values()] == ["from the cloud"]
    lane = await _open(world)
    try:
        assert await lane.spool() == 0  # the pull's apply and the acks: not the site's
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


async def test_the_wal_goes_to_the_outbox_while_the_cloud_is_out_of_reach(world: World) -> None:
    local = world.site1.local
    await sync(world.site1, capture="wal")
    with local.connect(autocommit=True) as c:
        c.execute("INSERT INTO doctors (name) SELECT 'Dr. ' || g FROM generate_series(1, 5) g")
    lane = Lane("push", world.site1.settings(capture="wal", cloud_api_url="http://127.0.0.1:9"))
    with pytest.raises(Unavailable):
        await lane.open()
    await lane.close()
    with local.connect() as c:
        assert _count(c, "SELECT count(*) FROM scsync_outbox") == 5
        # ...and the slot was told: it keeps no WAL of them.
        state = c.execute("SELECT spooled_lsn FROM scsync_capture_state").fetchone()
        slot = c.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots"
            " WHERE database = current_database()"
        ).fetchone()
    assert state is not None and slot is not None and state[0] is not None
    assert lsn_int(str(slot[0])) >= lsn_int(str(state[0]))
    await sync(world.site1, capture="wal")
    assert len(rows(world.cloud, "doctors")) == 5
