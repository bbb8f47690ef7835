"""SIGKILL the replicator at random moments during a 20,000-row stream, and at the one
moment that matters most to the WAL capture (the cloud committed a batch, the site has
not acknowledged it, the slot was not told): after a restart both sides hold the same
rows, nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest

from tests.polling import wait_until
from tests.replicator.conftest import Replicators
from tests.world import World

ROWS = 20_000
KILLS = 20
CHUNK = 250


def _writer(world: World, stop: threading.Event, done: threading.Event) -> None:
    rng = random.Random(7)
    with world.site1.local.connect(autocommit=True) as c:
        for start in range(0, ROWS, CHUNK):
            with c.transaction():
                c.execute(
                    "INSERT INTO patients (site_id, patient_code, name) "
                    "SELECT 1, 'p' || g, 'v0' FROM generate_series(%s::int, %s::int) g",
                    (start, start + CHUNK - 1),
                )
                # Some rows change again while earlier versions are on their way.
                c.execute(
                    "UPDATE patients SET name = 'v' || %s WHERE patient_code = ANY(%s)",
                    (start, [f"p{rng.randrange(0, start + CHUNK)}" for _ in range(20)]),
                )
            if stop.wait(0.05):
                break
    done.set()


def _count_applies(world: World) -> None:
    with world.cloud.connect(autocommit=True) as c:
        # Test-only apply counter: every row version the replicator writes on the cloud.
        c.execute("CREATE TABLE test_applies (row_id bigint, revision bigint)")
        c.execute(
            "CREATE FUNCTION test_count_apply() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN INSERT INTO test_applies VALUES (NEW.id, NEW.revision); RETURN NULL; END $$"
        )
        c.execute(
            "CREATE TRIGGER test_count_apply AFTER INSERT OR UPDATE ON patients FOR EACH ROW "
            "WHEN (current_setting('scsync.replicating', true) = 'on') "
            "EXECUTE FUNCTION test_count_apply()"
        )


def test_sigkill_during_a_stream_loses_and_doubles_nothing(
    world: World, replicators: Replicators
) -> None:
    _count_applies(world)
    stop, done = threading.Event(), threading.Event()
    writer = threading.Thread(target=_writer, args=(world, stop, done))
    writer.start()
    rng = random.Random(11)
    try:
        for _ in range(KILLS):
            proc = replicators.start(world.site1, lanes=["push"], batch_size=500)
            time.sleep(rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        writer.join(timeout=120)
        assert done.is_set()
        final = replicators.start(world.site1, lanes=["push"], batch_size=500)

        def drained() -> bool:
            # An empty outbox alone is no proof: with the WAL capture a change is in
            # the outbox only once the replicator has read it from the slot; and the
            # cloud forgets a batch's inbox entry only after the site's ack.
            with world.site1.local.connect() as c, world.cloud.connect() as cc:
                row = c.execute(
                    "SELECT (SELECT count(*) FROM scsync_outbox),"
                    " (SELECT count(*) FROM patients WHERE NOT synced)"
                ).fetchone()
                inbox = cc.execute("SELECT count(*) FROM scsync_inbox").fetchone()
                return row == (0, 0) and inbox == (0,)

        wait_until(drained, 60, "every change to be pushed")
        wait_until(lambda: "running lanes" in replicators.log_of(KILLS), 20, "the daemon")
        final.send_signal(signal.SIGTERM)
        assert final.wait(timeout=10) == 0
    finally:
        stop.set()
        writer.join(timeout=30)

    query = "SELECT id, revision, name FROM patients ORDER BY id"
    with world.site1.local.connect() as lc, world.cloud.connect() as cc:
        local = lc.execute(query).fetchall()
        assert len(local) == ROWS
        assert cc.execute(query).fetchall() == local
        assert lc.execute("SELECT count(*) FROM patients WHERE NOT synced").fetchone() == (0,)
        assert cc.execute(
            "SELECT count(*) FROM (SELECT 1 FROM test_applies GROUP BY row_id, revision "
            "HAVING count(*) > 1) twice"
        ).fetchone() == (0,)
        # Every row's final version was applied exactly once.
        assert cc.execute(
            "SELECT count(*) FROM patients p WHERE (SELECT count(*) FROM test_applies a "
            "WHERE a.row_id = p.id AND a.revision = p.revision) <> 1"
        ).fetchone() == (0,)
        for conn in (lc, cc):
            assert conn.execute("SELECT count(*) FROM scsync_conflicts").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM scsync_dead_letters").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM scsync_inbox").fetchone() == (0,)


def test_sigkill_after_the_clouds_commit_before_the_sites_ack_replays_as_skipped(
    world: World, replicators: Replicators
) -> None:
    """The cloud committed a WAL batch (and its end LSN), then the process dies before
    the site's ack and before the slot hears: the restart reads the batch again, the
    cloud answers it skipped (nothing applied twice), and the site's rows end synced."""
    if os.environ.get("SCSYNC_CAPTURE") == "triggers":
        pytest.skip("the server has no logical WAL: the triggers capture (no slot, no LSN)")
    _count_applies(world)
    local = world.site1.local
    first = replicators.start(world.site1, lanes=["push"])
    wait_until(lambda: "running lanes" in replicators.log_of(0), 20, "the slot and the lane")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=10) == 0
    with local.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) "
            "SELECT 1, 'k' || g, 'v0' FROM generate_series(1, 300) g"
        )
    with local.connect() as blocker, world.cloud.connect(autocommit=True) as cc:
        # The site's ack updates the rows: held back by this lock, after the cloud's commit.
        blocker.execute("LOCK TABLE patients IN SHARE MODE")
        proc = replicators.start(world.site1, lanes=["push"])

        def ack_waits() -> bool:
            with local.connect() as c:
                row = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name LIKE 'scsync-push%' AND wait_event_type = 'Lock'"
                ).fetchone()
                return row is not None and row[0] == 1

        wait_until(ack_waits, 30, "the site's ack to wait behind the lock")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # The server would finish the dead process's waiting statement once the lock
        # goes (it notices a closed client only when it answers): end its sessions first.
        blocker.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'scsync-%'"
        )
        blocker.rollback()
        cloud_lsn = cc.execute(
            "SELECT source_lsn FROM scsync_replication_cursor WHERE lane = 'push'"
        ).fetchone()
        assert cc.execute("SELECT count(*) FROM patients").fetchone() == (300,)
    with local.connect() as c:
        slot = c.execute(
            "SELECT confirmed_flush_lsn < %s::pg_lsn FROM pg_replication_slots"
            " WHERE database = current_database()",
            (str(cloud_lsn[0]) if cloud_lsn else None,),
        ).fetchone()
        assert slot == (True,)  # the cloud is ahead of the slot
        assert c.execute("SELECT count(*) FROM patients WHERE synced").fetchone() == (0,)

    final = replicators.start(world.site1, lanes=["push"])

    def synced() -> bool:
        with local.connect() as c:
            return c.execute("SELECT count(*) FROM patients WHERE NOT synced").fetchone() == (0,)

    wait_until(synced, 30, "the site's ack to be finished")
    wait_until(lambda: "running lanes" in replicators.log_of(2), 20, "the daemon")
    final.send_signal(signal.SIGTERM)
    assert final.wait(timeout=10) == 0
    assert "held already (a replay)" in replicators.log_of(2)
    with world.cloud.connect() as cc:
        # Each of the 300 rows applied once: the replay changed nothing on the cloud.
        assert cc.execute(
            "SELECT count(*), count(DISTINCT row_id) FROM test_applies"
        ).fetchone() == (300, 300)
    with local.connect() as c:
        moved = c.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots"
            " WHERE database = current_database()",
            (str(cloud_lsn[0]) if cloud_lsn else None,),
        ).fetchone()
        assert moved == (True,)  # and the slot caught up with the cloud
