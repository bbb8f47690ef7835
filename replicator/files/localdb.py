"""The file lanes' way to the site's local database, on :mod:`schema.database`.

The file lanes and the journal of the daemon share one pool of the local database
(:func:`make_pool`, ``application_name`` ``scsync-files``); the pool hands out a live
connection per operation and drops one whose server went away (a database restart, a
terminated backend), so an operation that met such a failure fails (its caller retries
later) and the next one runs on a fresh connection. A pool opened while the database is
down keeps trying in the background: the file lanes wait, the daemon does not stop.

The backfill holds connections of its own for its whole run (:func:`connect`); the same
translation makes an unreachable database a :class:`DatabaseUnreachable` everywhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg

from replicator.files.errors import DatabaseUnreachable
from schema import database

AsyncConn = psycopg.AsyncConnection[Any]
# application_name of the file lanes' and the backfill's sessions (pg_stat_activity).
APP_NAME = "scsync-files"

# The files package's table: an unreachable local database is a FilesError.
ERRORS = database.Translation(
    unavailable=lambda message: DatabaseUnreachable(f"database unreachable: {message}")
)


async def connect(url: str) -> AsyncConn:
    """An autocommit connection of its own (the backfill's); DatabaseUnreachable (a
    FilesError) when it cannot be made."""
    return await database.open_connection(url, ERRORS, name=APP_NAME)


def make_pool(url: str, max_size: int = 8) -> database.Pool:
    """The file lanes' pool of the local database (not opened)."""
    return database.make_pool(url, name=APP_NAME, min_size=1, max_size=max_size)


class LocalDb:
    """Connections to the local database for the file lanes: from a pool, or always
    the one connection given (the backfill's own)."""

    def __init__(self, source: database.Pool | AsyncConn) -> None:
        self.source = source
        self._owns_pool = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """A live connection for one operation; DatabaseUnreachable when there is none."""
        with ERRORS.errors():
            if isinstance(self.source, psycopg.AsyncConnection):
                yield self.source
            else:
                async with self.source.connection() as conn:
                    yield conn

    @classmethod
    async def open(cls, url: str, max_size: int = 8) -> LocalDb:
        """A LocalDb on a pool of its own (closed by :meth:`close`), opened in the
        background: a database that is down makes its operations wait, then fail."""
        pool = make_pool(url, max_size)
        await pool.open(wait=False)
        db = cls(pool)
        db._owns_pool = True
        return db

    async def close(self) -> None:
        if self._owns_pool and not isinstance(self.source, psycopg.AsyncConnection):
            await self.source.close()

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, url: str, max_size: int = 8) -> AsyncIterator[LocalDb]:
        """:meth:`open` for the block."""
        db = await cls.open(url, max_size)
        try:
            yield db
        finally:
            await db.close()
