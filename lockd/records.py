"""What an edit session may change in a record, and the one way changes are applied.

Both the cloud save (inside ``scsync_lockd_save``) and a local save (the local API, an
offline session) go through the SQL function ``scsync_lockd_apply``, so the A.B version
rule has one implementation: the first save with real changes in a session makes
(A+1).0, each later one A.(B+1), a save that changes nothing leaves the version alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from lockd.db import translate_error
from lockd.errors import BadRequest, InvalidChange, NotEditable, RecordNotFound
from schema.columns import NOT_EDITABLE_COLUMNS
from schema.database import named
from schema.tables import SYNCED_TABLES, metadata_for

Bump = Literal["major", "minor"]

# Columns no edit may set: identity, versioning and sync bookkeeping, the sync switch,
# file storage (files change through new blobs, never through an edit of these columns),
# credentials and privileges (only the API's account endpoints change them).
NOT_EDITABLE: frozenset[str] = NOT_EDITABLE_COLUMNS

PROTECTED: list[str] = sorted(NOT_EDITABLE)

# Tables whose rows no edit session may change at all (see NOT_EDITABLE).
ACCOUNT_TABLES: frozenset[str] = frozenset({"user_accounts"})


@functools.cache
def editable_columns(table: str) -> frozenset[str]:
    """The columns of a synced table that an edit session may change."""
    if table not in SYNCED_TABLES:
        raise RecordNotFound(f"unknown table {table!r}", field="table")
    if table in ACCOUNT_TABLES:
        raise NotEditable(
            f"{table} records are changed through the account endpoints (/v1/accounts)",
            field="table",
        )
    cols = set(metadata_for("cloud").tables[table].columns.keys())
    cols &= set(metadata_for("local").tables[table].columns.keys())
    return frozenset(cols - NOT_EDITABLE)


def check_table(table: object) -> str:
    if not isinstance(table, str) or not table:
        raise BadRequest("table must be a non-empty string", field="table")
    if table not in SYNCED_TABLES:
        raise RecordNotFound(f"unknown table {table!r}", field="table")
    return table


def check_changes(table: str, changes: object) -> dict[str, Any]:
    """The changes as a dict of editable columns; InvalidChange names the first bad key."""
    if not isinstance(changes, Mapping):
        raise InvalidChange("changes must be a JSON object", field="changes")
    allowed = editable_columns(table)
    for key in changes:
        if key not in allowed:
            raise InvalidChange(
                f"column {key!r} of {table} cannot be edited", field=f"changes.{key}"
            )
    return dict(changes)


def content_of(table: str, row_data: Mapping[str, Any]) -> dict[str, Any]:
    """The editable part of a history row: what a rollback writes back."""
    allowed = editable_columns(table)
    return {k: v for k, v in row_data.items() if k in allowed}


@dataclass(frozen=True)
class Applied:
    changed: bool
    version_major: int
    version_minor: int
    revision: int


async def apply_changes(
    conn: psycopg.AsyncConnection[Any],
    table: str,
    row_id: int,
    changes: Mapping[str, Any],
    bump: Bump,
) -> Applied:
    """Apply ``changes`` to a record in the caller's transaction (local DB or cloud DB).

    Raises InvalidChange for a value the column refuses; the caller's transaction is
    then aborted, so nothing of the save is written.
    """
    checked = check_changes(check_table(table), changes)
    try:
        cur = await conn.execute(
            named("lockd_apply"),
            {
                "table": table,
                "row_id": row_id,
                "changes": Jsonb(checked),
                "bump": bump,
                "protected": PROTECTED,
            },
        )
        row = await cur.fetchone()
        assert row is not None  # the function always returns one row
        if row[0]:
            # The save's own history row (SPEC, "History"): on a WAL site no trigger
            # writes it.
            await conn.execute(named("history_save"), {"table": table, "row_id": row_id, "op": "U"})
    except psycopg.Error as exc:
        raise translate_error(exc) from exc
    return Applied(bool(row[0]), int(row[1]), int(row[2]), int(row[3]))
