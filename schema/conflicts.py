"""Conflict resolution, shared by the APIs and the CLI.

The apply rule itself has one statement: ``scsync_replicator_apply`` in
``schema/sql/baseline_replicator.sql``, which applies whole batches set-based inside
PostgreSQL (tests/replicator/test_conflicts.py runs the SPEC's table through it).

Conflicts live in ``scsync_conflicts`` on both sides under the same id. They are
listed, shown and resolved here (async, on schema.database) with a connection of
*either* side: a resolution saves the kept version on that side as a new revision whose base is the
revision the other side holds, so replication fast-forwards the other side (no
connection to both databases is needed, and no two-phase commit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.rows import class_row

from schema.database import Conn, Translation, fetch_all, fetch_one, fetch_value, to
from schema.errors import Category, SchemaError

Keep = Literal["local", "cloud"]


class ConflictError(SchemaError):
    """A conflict cannot be shown or resolved (unknown id, already resolved, bad keep)."""

    category = Category.REFUSED


class ConflictNotFound(ConflictError):
    """No conflict with that id on this side."""


@dataclass(frozen=True)
class Conflict:
    id: int
    table_name: str
    row_id: int
    site_id: int
    base_revision: int | None
    local_revision: int | None
    cloud_revision: int | None
    detected_on: str
    detected_at: dt.datetime
    status: str
    resolution: str | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    # Both versions (None for a deletion); only filled by get_conflict.
    local_row: dict[str, Any] | None = None
    cloud_row: dict[str, Any] | None = None


# SC210: no such open conflict here; any other SCxxx of the resolution refuses it.
ERRORS = Translation({"SC210": to(ConflictNotFound), "SC": to(ConflictError)})


async def list_conflicts(
    conn: Conn, site_id: int | None = None, status: str | None = "open"
) -> list[Conflict]:
    """Conflicts of this side, oldest first; ``status=None`` lists resolved ones too."""
    return await fetch_all(
        conn,
        "replicator_conflicts_list",
        {"site_id": site_id, "status": status},
        row=class_row(Conflict),
    )


async def get_conflict(conn: Conn, conflict_id: int) -> Conflict:
    """One conflict with both versions; ConflictNotFound when this side has no such id."""
    found = await fetch_one(
        conn, "replicator_conflicts_get", {"id": conflict_id}, row=class_row(Conflict)
    )
    if found is None:
        raise ConflictNotFound(f"no conflict {conflict_id}")
    return found


async def resolve_conflict(conn: Conn, conflict_id: int, keep: Keep, by: str) -> int | None:
    """Resolve an open conflict on the side ``conn`` belongs to, in one transaction
    (a savepoint when the caller has one open).

    ``keep='local'`` or ``'cloud'`` names the version that wins. It is saved here as a
    new revision (returned; None when the kept version is a deletion on the local side)
    and enters this side's outbox, so the replicator fast-forwards the other side,
    which then closes its copy of the conflict with the same resolution.
    """
    if keep not in ("local", "cloud"):
        raise ConflictError(f"keep must be 'local' or 'cloud', not {keep!r}")
    with ERRORS.errors():
        async with conn.transaction():
            value = await fetch_value(
                conn, "replicator_conflicts_resolve", {"id": conflict_id, "keep": keep, "by": by}
            )
    return None if value is None else int(value)
