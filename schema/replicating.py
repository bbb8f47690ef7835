"""The one spelling of "this transaction writes as the replicator".

The capture (triggers and the WAL spool) writes no outbox row for a change made under
the marker ``scsync.replicating`` (a transaction-local setting): applies of the other
side's rows, bookkeeping of the file lanes and the backfill, the demo's history from
before the installation. Every writer sets it through here (the named query
``replicator_replicating``), so the capture functions and their callers agree on one
name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg

from schema.database import named


async def mark_replicating(conn: psycopg.AsyncConnection[Any]) -> None:
    """Mark the transaction ``conn`` is in (the marker ends with it)."""
    await conn.execute(named("replicator_replicating"))


@asynccontextmanager
async def replicating(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """A transaction whose writes are the replicator's."""
    async with conn.transaction():
        await mark_replicating(conn)
        yield


@contextmanager
def replicating_sync(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """``replicating`` for a blocking connection (the demo's seeding)."""
    with conn.transaction():
        conn.execute(named("replicator_replicating"))
        yield
