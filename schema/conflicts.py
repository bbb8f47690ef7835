"""The apply rule and conflict resolution, shared by the replicator, the APIs and the CLI.

The replicator applies whole batches set-based inside PostgreSQL
(``scsync_replicator_apply`` in ``schema/sql/baseline_replicator.sql``); :func:`decide`
is the same rule for one record, in Python, for callers that reason about a single
record (and for tests that pin the rule down).

Conflicts live in ``scsync_conflicts`` on both sides under the same id. They are
listed, shown and resolved here (async, on schema.database) with a connection of
*either* side: a
resolution saves the kept version on that side as a new revision whose base is the
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

Outcome = Literal["apply", "duplicate", "conflict"]
Keep = Literal["local", "cloud"]


class ConflictError(SchemaError):
    """A conflict cannot be shown or resolved (unknown id, already resolved, bad keep)."""

    category = Category.REFUSED


class ConflictNotFound(ConflictError):
    """No conflict with that id on this side."""


def decide(
    *,
    op: Literal["I", "U", "D"],
    revision: int,
    base: int | None,
    dest_revision: int | None,
    dest_deleted: bool = False,
    dest_side: Literal["local", "cloud"] = "cloud",
    in_dest_history: bool = False,
    deletion_resolved: bool = False,
) -> Outcome:
    """The SPEC's apply rule for one incoming record.

    ``revision``/``base``: the incoming revision and the sender's synced_revision;
    ``dest_revision``: the destination's revision (None when the record is absent);
    ``in_dest_history``: ``revision`` is already in the destination's history (a
    resolution puts the other side's version it decided on there too);
    ``deletion_resolved``: (tombstones) a resolved conflict at the destination already
    decided on this deletion (same base, or the sender's revision in it).
    """
    if op == "D":
        if dest_revision is None or (dest_side == "cloud" and dest_deleted):
            return "duplicate"  # already gone here
        if dest_revision in (base, revision):
            return "apply"
        return "duplicate" if deletion_resolved else "conflict"
    if dest_revision is None:
        if base is None:
            return "apply"
        # The destination held the record and deleted it; an old change arriving
        # again is a duplicate, a newer one conflicts with the deletion.
        return "duplicate" if in_dest_history else "conflict"
    if dest_revision == revision:
        return "duplicate"
    if dest_revision == base:
        return "apply"
    if in_dest_history:
        return "duplicate"
    return "conflict"


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
