"""schema/notifications.py: the listeners' one loop (wake-ups, ticks, reconnects)."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg

from schema.notifications import Listener, Wake, wakes
from tests.pg import TestDatabase


async def _next(heard: object, timeout: float = 10.0) -> Wake:
    return await asyncio.wait_for(heard.__anext__(), timeout)  # type: ignore[attr-defined]


async def test_a_fresh_wake_then_notes_then_ticks_and_a_reconnect_after_a_kill(
    local_db: TestDatabase,
) -> None:
    lost: list[BaseException] = []
    listener = Listener(
        local_db.libpq_url,
        ["scsync_test_a", "scsync_test_b"],
        "scsync-test-listen",
        tick_s=0.2,
        retry_initial_s=0.05,
        on_lost=lost.append,
    )
    async with (
        contextlib.aclosing(wakes(listener)) as heard,
        await psycopg.AsyncConnection.connect(local_db.libpq_url, autocommit=True) as other,
    ):
        first = await _next(heard)
        assert first.fresh and first.notes == []
        # A burst on both channels is one wake carrying all of it.
        async with other.transaction():
            await other.execute("SELECT pg_notify('scsync_test_a', '1')")
        await other.execute("SELECT pg_notify('scsync_test_b', '2')")
        got: list[tuple[str, str]] = []
        while len(got) < 2:
            w = await _next(heard)
            assert not w.fresh
            got += [(n.channel, n.payload) for n in w.notes]
        assert got == [("scsync_test_a", "1"), ("scsync_test_b", "2")]
        # Nothing sent: a wake within the tick, without notes (the caller's probe time).
        started = asyncio.get_running_loop().time()
        quiet = await _next(heard)
        assert quiet.notes == [] and not quiet.fresh
        assert asyncio.get_running_loop().time() - started < 2.0
        # The listening session killed: the loss is told, the next wake is a fresh one on
        # a new connection, which hears again.
        cur = await other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'scsync-test-listen'"
        )
        assert (await cur.fetchone()) == (True,)
        w = await _next(heard)
        while not w.fresh:
            w = await _next(heard)
        assert len(lost) == 1
        await other.execute("SELECT pg_notify('scsync_test_a', 'after')")
        w = await _next(heard)
        while not w.notes:
            w = await _next(heard)
        assert [(n.channel, n.payload) for n in w.notes] == [("scsync_test_a", "after")]
    # Closing the iterator closes its connection.
    async with await psycopg.AsyncConnection.connect(local_db.libpq_url) as check:
        for _ in range(50):
            cur = await check.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'scsync-test-listen'"
            )
            if (await cur.fetchone()) == (0,):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the listener's connection outlived the iterator")
