"""Offline edit sessions: explicit, local-only, clearly unfenced.

When the site cannot reach lockd (:class:`~lockd.errors.LockServiceUnreachable`), the
local API offers "lock service unreachable - edit offline?". If the user accepts,
:func:`open_offline` records a session in ``scsync_offline_sessions`` on the LOCAL
database with ``unfenced = true`` (a check constraint keeps it true), the record's
revision and version at that moment, and the reason. Its saves are ordinary local
writes (same A.B rule as a fenced session); the replicator pushes them later with
their base revision, and the apply rule decides: fast-forward when the cloud copy did
not move, otherwise a conflict record with both versions. Nothing is overwritten.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from lockd.db import translate_error
from lockd.errors import BadRequest, Forbidden, OfflineSessionError
from lockd.local import local_record
from lockd.manager import check_holder, check_row_id
from lockd.records import Applied, apply_changes, check_changes, check_table
from schema.database import named


@dataclass(frozen=True)
class OfflineSession:
    session_id: uuid.UUID
    table: str
    row_id: int
    site_id: int
    holder: str
    unfenced: bool
    reason: str
    base_revision: int
    base_version_major: int
    base_version_minor: int
    saves: int
    last_saved_revision: int | None
    status: str
    opened_at: datetime

    @classmethod
    def from_row(cls, r: tuple[Any, ...]) -> OfflineSession:
        return cls(
            session_id=r[0],
            table=r[1],
            row_id=int(r[2]),
            site_id=int(r[3]),
            holder=r[4],
            unfenced=bool(r[5]),
            reason=r[6],
            base_revision=int(r[7]),
            base_version_major=int(r[8]),
            base_version_minor=int(r[9]),
            saves=int(r[10]),
            last_saved_revision=None if r[11] is None else int(r[11]),
            status=r[12],
            opened_at=r[13],
        )


async def open_offline(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    row_id: int,
    holder: str,
    *,
    reason: str = "lock service unreachable",
) -> OfflineSession:
    """Record an unfenced, local-only edit session (the user chose to edit offline)."""
    check_table(table)
    check_row_id(row_id)
    check_holder(holder)
    if not holder.startswith("local:"):
        raise BadRequest("an offline session belongs to a local user", field="holder")
    try:
        async with conn.transaction():
            record = await local_record(conn, table, row_id)
            if not holder.startswith(f"local:{record.site_id}/"):
                raise Forbidden(f"record {table}/{row_id} belongs to site {record.site_id}")
            cur = await conn.execute(
                named("lockd_offline_open"),
                {
                    "table": table,
                    "row_id": row_id,
                    "site_id": record.site_id,
                    "holder": holder,
                    "reason": reason,
                    "revision": record.revision,
                    "version_major": record.version_major,
                    "version_minor": record.version_minor,
                },
            )
            row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    assert row is not None
    return OfflineSession.from_row(row)


async def save_offline(
    conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID, changes: Mapping[str, Any]
) -> Applied:
    """An unfenced local save of an open offline session."""
    try:
        async with conn.transaction():
            session = await _get(conn, session_id)
            checked = check_changes(session.table, changes)
            applied = await apply_changes(
                conn,
                session.table,
                session.row_id,
                checked,
                "major" if session.saves == 0 else "minor",
            )
            if applied.changed:
                await conn.execute(
                    named("lockd_offline_saved"),
                    {"session_id": session_id, "revision": applied.revision},
                )
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    return applied


async def close_offline(conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID) -> None:
    try:
        async with conn.transaction():
            await _get(conn, session_id)
            await conn.execute(named("lockd_offline_close"), {"session_id": session_id})
    except psycopg.Error as exc:
        raise translate_error(exc) from exc


async def get_offline(
    conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID
) -> OfflineSession | None:
    cur = await conn.execute(named("lockd_offline_get"), {"session_id": session_id})
    row = await cur.fetchone()
    return None if row is None else OfflineSession.from_row(row)


async def open_offline_sessions(conn: psycopg.AsyncConnection[Any]) -> list[OfflineSession]:
    cur = await conn.execute(named("lockd_offline_open_sessions"))
    return [OfflineSession.from_row(r) for r in await cur.fetchall()]


async def _get(conn: psycopg.AsyncConnection[Any], session_id: uuid.UUID) -> OfflineSession:
    session = await get_offline(conn, session_id)
    if session is None or session.status != "open":
        raise OfflineSessionError(f"offline session {session_id} is not open")
    return session
