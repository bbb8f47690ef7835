"""A save made by a LOCAL client, on the site's local database, fenced by lockd.

The write happens locally (the replicator pushes it to the cloud afterwards), so it
cannot be in the same transaction as the lease check on the cloud. The sequence:

1. lock the local row (``FOR UPDATE``) and read its revision (the *base*);
2. ``begin_save(lease_id, token, base)`` at lockd: the lease is live and the site's,
   the cloud copy has not moved under the session; the answer says which version bump
   (major/minor) the save makes and how long the lease still runs (``remaining_ms``,
   by the database clock, so this machine's wall clock does not matter);
3. apply the changes locally (same SQL function as the cloud save); commit only if
   this process's monotonic clock says the grant's ``remaining_ms`` minus a margin has
   not run out since step 2 started, else roll back and raise LeaseExpired;
4. ``end_save(lease_id, token, new_revision, changed)``: the lease records the
   session's new revision, so the next ``begin_save`` accepts the cloud copy once the
   replicator has pushed it.

What this does NOT guarantee (docs/lockd.md): a local process frozen between its
check in step 3 and its COMMIT can still commit after the lease is gone. That write
is then an ordinary local change: the replicator's apply rule sees that its base is
no longer the cloud's revision (the new holder saved) and records a conflict; it never
overwrites the newer cloud data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from lockd.db import translate_error
from lockd.errors import LeaseExpired, LockdError, RecordNotFound
from lockd.models import SaveGrant
from lockd.records import Applied, apply_changes, check_changes, check_table
from schema.database import named


class SaveFence(Protocol):
    """What the local save needs of lockd: LockClient (a site) or LeaseManager."""

    async def begin_save(
        self, lease_id: uuid.UUID, token: int, base_revision: int
    ) -> SaveGrant: ...

    async def end_save(
        self, lease_id: uuid.UUID, token: int, new_revision: int, changed: bool
    ) -> None: ...


@dataclass(frozen=True)
class LocalRecord:
    site_id: int
    version_major: int
    version_minor: int
    revision: int


@dataclass(frozen=True)
class LocalSaveResult:
    applied: Applied
    # False when end_save could not reach lockd or the lease ended meanwhile: the write
    # is committed locally and reaches the cloud by the replicator's apply rule.
    recorded: bool


async def local_record(conn: psycopg.AsyncConnection[Any], table: str, row_id: int) -> LocalRecord:
    """The record's identity on this database, row-locked for the caller's transaction."""
    stmt = named("lockd_local_record", table=sql.Identifier(check_table(table)))
    try:
        cur = await conn.execute(stmt, {"row_id": row_id})
        row = await cur.fetchone()
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    if row is None or row[4]:
        raise RecordNotFound(f"record {table}/{row_id} does not exist", field="row_id")
    return LocalRecord(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


async def save_locally(
    conn: psycopg.AsyncConnection[Any],
    fence: SaveFence,
    lease_id: uuid.UUID,
    token: int,
    table: str,
    row_id: int,
    changes: Mapping[str, Any],
    *,
    margin_s: float = 0.5,
    monotonic: Callable[[], float] = time.monotonic,
) -> LocalSaveResult:
    """A fenced local save (see the module doc). ``conn`` is a connection to the local
    DB outside any transaction; the write is committed when this returns."""
    checked = check_changes(check_table(table), changes)
    async with conn.transaction():
        record = await local_record(conn, table, row_id)
        started = monotonic()
        grant = await fence.begin_save(lease_id, token, record.revision)
        applied = await apply_changes(conn, table, row_id, checked, grant.bump)
        if monotonic() - started > grant.remaining_ms / 1000 - margin_s:
            # Raising inside the transaction block rolls the local write back.
            raise LeaseExpired(
                "the lease could run out before the local write commits; nothing was written"
            )
    try:
        await fence.end_save(lease_id, token, applied.revision, applied.changed)
    except LockdError:
        return LocalSaveResult(applied, recorded=False)
    return LocalSaveResult(applied, recorded=True)
