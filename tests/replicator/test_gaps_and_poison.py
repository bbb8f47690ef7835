"""Gap-free reading (out-of-order commits, long transactions, parent/child) and the
dead-letter path (a poisoned record never blocks the records behind it)."""

from __future__ import annotations

import asyncio
import time

import pytest

from replicator.lane import Lane
from tests.world import World, rows, sync


async def _push(world: World, capture: str = "wal") -> None:
    lane = Lane("push", world.site1.settings(capture=capture))
    await lane.open()
    try:
        await lane.drain()
    finally:
        await lane.close()


# Both captures: the triggers' outbox, whose seqs are taken before commit (gap-free
# reading), and the WAL's, read in commit order. The slot is made before the open
# transaction: making one waits for every transaction already open in the cluster.
CAPTURES = pytest.mark.parametrize("capture", ["triggers", "wal"])


@CAPTURES
async def test_lower_seq_committed_later_is_not_skipped(world: World, capture: str) -> None:
    local = world.site1.local
    await _push(world, capture)
    with local.connect() as a, local.connect(autocommit=True) as b:
        a.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'A', 'a')")
        b.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'B', 'b')")
        seqs = b.execute("SELECT seq FROM scsync_outbox ORDER BY seq").fetchall()
        # The triggers: A's lower seq is invisible until it commits. The WAL: the writer
        # writes no outbox row at all.
        assert len(seqs) == (1 if capture == "triggers" else 0)
        await _push(world, capture)
        assert {r["patient_code"] for r in rows(world.cloud, "patients").values()} == {"B"}
        a.commit()
    await _push(world, capture)
    assert {r["patient_code"] for r in rows(world.cloud, "patients").values()} == {"A", "B"}


@CAPTURES
async def test_long_open_transaction_while_others_commit(world: World, capture: str) -> None:
    local = world.site1.local
    # The issue's figure for the triggers' outbox, whose reading waits on open seqs; the
    # WAL is decoded in commit order, a shorter hold shows the same.
    hold_s = 30.0 if capture == "triggers" else 10.0
    await _push(world, capture)
    with local.connect() as slow, local.connect(autocommit=True) as fast:
        slow.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'slow', 'x')")
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < hold_s:
            fast.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'y')",
                (f"fast-{n}",),
            )
            n += 1
            await _push(world, capture)
            await asyncio.sleep(0.2)
        assert len(rows(world.cloud, "patients")) == n
        slow.commit()
    await _push(world, capture)
    codes = {r["patient_code"] for r in rows(world.cloud, "patients").values()}
    assert codes == {"slow"} | {f"fast-{i}" for i in range(n)}


async def test_child_committed_right_after_parent_never_arrives_first(world: World) -> None:
    """A lane drains continuously while parents and children commit in separate
    transactions; the cloud's foreign keys would park any child that came first."""
    local = world.site1.local
    stop = asyncio.Event()

    async def replicate() -> None:
        lane = Lane("push", world.site1.settings(batch_size=7))
        await lane.open()
        try:
            while not stop.is_set():
                await lane.drain()
                await asyncio.sleep(0)
            await lane.drain()
        finally:
            await lane.close()

    task = asyncio.create_task(replicate())
    with local.connect(autocommit=True) as c:
        for i in range(40):
            row = c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'p') "
                "RETURNING id",
                (f"P{i}",),
            ).fetchone()
            assert row is not None
            c.execute(
                "INSERT INTO images (site_id, patient_id, description) VALUES (1, %s, 'i')",
                (row[0],),
            )
            await asyncio.sleep(0.005)
    stop.set()
    await task
    assert len(rows(world.cloud, "images")) == 40
    with local.connect() as c:
        assert c.execute("SELECT count(*) FROM scsync_dead_letters").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM scsync_outbox").fetchone() == (0,)


async def test_poisoned_row_is_parked_and_the_rows_behind_it_flow(world: World) -> None:
    with world.cloud.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients ADD CONSTRAINT ck_test_no_poison CHECK (name <> 'poison')")
    with world.site1.local.connect(autocommit=True) as c:
        bad = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'X', 'poison') "
            "RETURNING id"
        ).fetchone()
        assert bad is not None
        # Its child waits with it; everything else goes.
        c.execute(
            "INSERT INTO images (site_id, patient_id, description) VALUES (1, %s, 'child')",
            (bad[0],),
        )
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) "
            "SELECT 1, 'ok-' || g, 'fine' FROM generate_series(1, 1000) g"
        )
    await sync(world.site1, rounds=1)
    cloud = rows(world.cloud, "patients")
    assert len(cloud) == 1000 and bad[0] not in cloud
    assert rows(world.cloud, "images") == {}
    with world.site1.local.connect() as c:
        parked = c.execute(
            "SELECT table_name, reason FROM scsync_dead_letters ORDER BY table_name"
        ).fetchall()
    assert [t for t, _ in parked] == ["images", "patients"]
    assert "ck_test_no_poison" in str(parked[1][1])
    # Fixed on the cloud and the backoff run out (by the database's clock, which
    # next_retry_at is compared with: moved, not slept), the retry brings both in.
    with world.cloud.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients DROP CONSTRAINT ck_test_no_poison")
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE scsync_dead_letters SET next_retry_at = clock_timestamp()")
    await sync(world.site1, rounds=1)
    assert len(rows(world.cloud, "patients")) == 1001
    assert len(rows(world.cloud, "images")) == 1
    with world.site1.local.connect() as c:
        assert c.execute("SELECT count(*) FROM scsync_dead_letters").fetchone() == (0,)
