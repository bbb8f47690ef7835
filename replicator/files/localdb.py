"""The file lanes' connection to the site's local database, reopened after it broke.

A psycopg connection whose server went away (a database restart, a terminated backend)
stays broken for good. The file lanes live as long as the daemon, so they never keep a
connection object: each operation asks :meth:`LocalDb.conn`, which hands out the open
one or, when it is closed or broken, a new one. The operation that met the failure
fails (its caller retries later); the next one runs on a fresh connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from replicator.files.errors import DatabaseUnreachable
from schema.urls import libpq_url

AsyncConn = psycopg.AsyncConnection[Any]
# application_name of the file lanes' and the backfill's sessions (pg_stat_activity).
APP_NAME = "scsync-files"


async def connect(url: str) -> AsyncConn:
    """An autocommit connection; DatabaseUnreachable (a FilesError) when it cannot be made."""
    try:
        return await psycopg.AsyncConnection.connect(
            libpq_url(url), autocommit=True, connect_timeout=10, application_name=APP_NAME
        )
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise DatabaseUnreachable(f"database unreachable: {first}") from exc


class LocalDb:
    def __init__(self, url: str, conn: AsyncConn | None = None) -> None:
        self.url = url
        self._conn = conn
        self._lock = asyncio.Lock()

    async def conn(self) -> AsyncConn:
        """The open autocommit connection; raises DatabaseUnreachable when none can be made."""
        current = self._conn
        if current is not None and not current.closed and not current.broken:
            return current
        async with self._lock:
            current = self._conn
            if current is not None and not current.closed and not current.broken:
                return current
            if current is not None:
                await current.close()
            self._conn = await connect(self.url)
            return self._conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
