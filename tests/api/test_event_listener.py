"""The API's event listener while its pool fails: the failure is said once (not at
every wake-up tick), its end is said, and the events written meanwhile still arrive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from api import events
from schema import database
from tests.pg import TestDatabase


class _BreakablePool:
    """A real pool whose ``connection()`` fails while ``broken`` (the listener's own
    LISTEN connection keeps working: the case that logged four lines a second)."""

    def __init__(self, pool: database.Pool) -> None:
        self.pool = pool
        self.broken = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        if self.broken:
            raise psycopg.OperationalError("the pool is gone (test)")
        async with self.pool.connection() as conn:
            yield conn


async def test_a_failing_read_is_said_once_then_its_end(
    local_db: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="scsync.api.events")
    pool = database.make_pool(local_db.libpq_url, name="test-events", max_size=2)
    await pool.open()
    breakable = _BreakablePool(pool)
    got: list[events.Event] = []
    ready = asyncio.Event()
    task = asyncio.create_task(
        events.listen(local_db.libpq_url, breakable, got.append, ready=ready, poll_s=0.05)  # type: ignore[arg-type]
    )
    try:
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.3)  # the listener learnt its resume point
        breakable.broken = True
        with local_db.connect(autocommit=True) as c:
            c.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'while broken')")
        await asyncio.sleep(1.0)  # ~20 ticks of poll_s while the reads fail
        failed = [r for r in caplog.records if "reading the log failed" in r.getMessage()]
        assert len(failed) == 1, [r.getMessage() for r in caplog.records]
        assert got == []
        breakable.broken = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10

        def changed() -> bool:
            return any(e.type == "record.changed" and e.table == "doctors" for e in got)

        while not changed() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        assert changed(), got
        assert any("works again" in r.getMessage() for r in caplog.records)
        failed = [r for r in caplog.records if "reading the log failed" in r.getMessage()]
        assert len(failed) == 1
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
