"""Snowflake ids generated inside PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from schema import db as schema_db
from schema import snowflake
from schema.errors import ClockMovedBackwards, NodeNotConfigured
from tests.pg import ADVISORY_LOCKS_HERE, TestDatabase

pytestmark = pytest.mark.dblevel

IDS_PER_CONNECTION = 50_000
CONNECTIONS = 4


def test_200k_ids_from_4_connections_unique_and_increasing(local_db: TestDatabase) -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(CONNECTIONS)

    def worker(n: int) -> None:
        try:
            with local_db.connect(autocommit=True) as conn:
                start.wait()
                rows = conn.execute(
                    "SELECT scsync_snowflake() FROM generate_series(1, %s)",
                    (IDS_PER_CONNECTION,),
                ).fetchall()
                results[n] = [int(r[0]) for r in rows]  # type: ignore[call-overload]
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    all_ids = [i for ids in results.values() for i in ids]
    assert len(all_ids) == CONNECTIONS * IDS_PER_CONNECTION
    assert len(set(all_ids)) == len(all_ids)
    for ids in results.values():
        assert all(a < b for a, b in itertools.pairwise(ids))
    decoded = [snowflake.decode(i) for i in all_ids[::1000]]
    assert {d.node for d in decoded} == {local_db.node_id}
    now = datetime.now(UTC)
    assert all(
        now - timedelta(minutes=5) < d.timestamp <= now + timedelta(seconds=1) for d in decoded
    )
    with local_db.connect() as conn:
        assert conn.execute(ADVISORY_LOCKS_HERE).fetchone() == (0,)


def test_ids_within_one_millisecond_use_the_sequence_bits(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        conn.execute("SET scsync.clock_offset_ms = '0'")
        rows = conn.execute("SELECT scsync_snowflake() FROM generate_series(1, 3000)")
        ids = [int(str(r[0])) for r in rows]
    parts = [snowflake.decode(i) for i in ids]
    # 3000 ids: at least one millisecond must have carried several of them, and no
    # millisecond ever more than 1024.
    per_ms: dict[int, int] = {}
    for p in parts:
        per_ms[p.ms] = per_ms.get(p.ms, 0) + 1
    assert max(per_ms.values()) <= 1024
    assert any(count > 1 for count in per_ms.values())
    assert len(set(ids)) == len(ids)


async def test_clock_step_back_raises_instead_of_repeating(local_db: TestDatabase) -> None:
    async with local_db.aconnect() as conn:
        before = await schema_db.next_id(conn)
        await conn.execute("SET scsync.clock_offset_ms = '-60000'")
        with pytest.raises(ClockMovedBackwards, match="clock moved backwards"):
            await schema_db.next_id(conn)
        await conn.execute("RESET scsync.clock_offset_ms")
        after = await schema_db.next_id(conn)
        assert after > before
        # The failed attempt left no lock behind.
        locks = await conn.execute(ADVISORY_LOCKS_HERE)
        assert await locks.fetchone() == (0,)


def test_clock_step_back_also_refuses_inserts(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        conn.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Park')")
        conn.commit()
        conn.execute("SET scsync.clock_offset_ms = '-5000'")
        with pytest.raises(psycopg.DatabaseError, match="clock moved backwards") as raised:
            conn.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Lee')")
        assert raised.value.sqlstate == "SC002"
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM doctors").fetchone() == (1,)


def test_rolled_back_ids_are_not_reissued(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        first = conn.execute("SELECT scsync_snowflake()").fetchone()
        conn.rollback()
        second = conn.execute("SELECT scsync_snowflake()").fetchone()
    assert first is not None and second is not None
    assert second[0] > first[0]  # type: ignore[operator]


async def test_unconfigured_node_is_a_clear_error(local_db: TestDatabase) -> None:
    async with local_db.aconnect() as conn, conn.transaction(force_rollback=True):
        await conn.execute("DELETE FROM scsync_node")
        with pytest.raises(NodeNotConfigured, match="scsync db set-node"):
            await schema_db.next_id(conn)


def test_decode_compose_roundtrip() -> None:
    value = snowflake.compose(123_456_789, 4095, 1023)
    assert snowflake.decode(value) == snowflake.Snowflake(123_456_789, 4095, 1023)
    with pytest.raises(ValueError):
        snowflake.compose(1, 4096, 0)
    with pytest.raises(ValueError):
        snowflake.decode(-1)
