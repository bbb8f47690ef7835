"""The roles of the columns every synced table has (and of the few that some have).

One description: each standard, file or account column with the roles it plays. Every
Python list of such columns is derived from it here (the lanes, backfill, the APIs,
lockd); ``tests/test_columns.py`` checks that the metadata (schema.tables) has exactly
these columns and that the lists hard-coded in the SQL (``scsync_bookkeeping_columns()``,
the apply function's own columns, the capture's sync badge, lockd's account columns)
are the same, so a column added to one and not the other fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from schema.tables_types import SIDES, Side

__all__ = [
    "ACCOUNT_COLUMNS",
    "APPLY_SETS_COLUMNS",
    "BADGE_COLUMNS",
    "BATCH_KEY_COLUMNS",
    "BOOKKEEPING_COLUMNS",
    "COLUMNS",
    "NOT_EDITABLE_COLUMNS",
    "SECRET_COLUMNS",
    "SERVER_COLUMNS",
    "SIDE_ONLY_COLUMNS",
    "ColumnInfo",
    "Role",
    "having",
]


class Role(StrEnum):
    # which record it is and whose (a batch row's key, with the revision)
    IDENTITY = "identity"
    # the A.B version and the revision of the content
    VERSIONING = "versioning"
    # a change to these alone makes no new revision and no outbox row
    # (the SQL's scsync_bookkeeping_columns())
    BOOKKEEPING = "bookkeeping"
    # one side's own state of a record: never crosses, each side sets its own
    SIDE_ONLY = "side_only"
    # written by the lanes' apply function at the destination itself
    SET_BY_APPLY = "set_by_apply"
    # computed by PostgreSQL (GENERATED ALWAYS)
    GENERATED = "generated"
    # set by the database when a row is made or its content changes
    TIMESTAMP = "timestamp"
    # the record's deletion flag (a DELETE, not a write, sets it through the API)
    DELETION = "deletion"
    # the per-record sync switch (its own endpoint)
    SYNC_SWITCH = "sync_switch"
    # a change moves the record's sync badge (the capture's batch.sync events)
    BADGE = "badge"
    # the file of a file-bearing table
    FILE = "file"
    # where the file is and which it is: changed through new blobs, never by an edit
    FILE_STORAGE = "file_storage"
    # never leaves the server
    SECRET = "secret"
    # credentials and privileges: changed only through the account endpoints
    ACCOUNT = "account"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    roles: frozenset[Role]
    sides: tuple[Side, ...] = SIDES
    # only file-bearing tables have it (schema.tables.SYNCED_TABLES names their file)
    file_only: bool = False
    # only these tables have it (None: every synced table, or every file-bearing one)
    tables: frozenset[str] | None = None


def _c(
    name: str,
    *roles: Role,
    sides: tuple[Side, ...] = SIDES,
    file_only: bool = False,
    tables: frozenset[str] | None = None,
) -> ColumnInfo:
    return ColumnInfo(name, frozenset(roles), sides, file_only, tables)


R = Role
# In table order: the standard columns, then (file-bearing tables) the file columns.
COLUMNS: Final[dict[str, ColumnInfo]] = {
    c.name: c
    for c in (
        _c("id", R.IDENTITY),
        _c("site_id", R.IDENTITY),
        _c("version_major", R.VERSIONING),
        _c("version_minor", R.VERSIONING),
        _c("revision", R.VERSIONING, R.BOOKKEEPING),
        _c("synced_revision", R.BOOKKEEPING, R.SIDE_ONLY, R.SET_BY_APPLY),
        _c("synced", R.BOOKKEEPING, R.SIDE_ONLY, R.GENERATED, R.BADGE),
        _c("last_synced_at", R.BOOKKEEPING, R.SIDE_ONLY, R.SET_BY_APPLY),
        _c("deleted", R.DELETION, R.BADGE),
        _c("sync_enabled", R.SYNC_SWITCH, R.BADGE),
        _c("in_conflict", R.BOOKKEEPING, R.SIDE_ONLY, R.SET_BY_APPLY, R.BADGE),
        _c("created_at", R.TIMESTAMP),
        _c("updated_at", R.TIMESTAMP, R.BOOKKEEPING),
        _c("lifecycle", R.BOOKKEEPING, R.SIDE_ONLY, R.SET_BY_APPLY, sides=("cloud",)),
        _c("blob_sha256", R.FILE, R.FILE_STORAGE, file_only=True),
        _c("blob_size", R.FILE, R.FILE_STORAGE, file_only=True),
        _c(
            "blob_state",
            R.FILE,
            R.FILE_STORAGE,
            R.BOOKKEEPING,
            R.SIDE_ONLY,
            R.SET_BY_APPLY,
            R.BADGE,
            file_only=True,
        ),
        _c("file_name", R.FILE, file_only=True),
        _c("content_type", R.FILE, file_only=True),
        _c(
            "local_path",
            R.FILE,
            R.FILE_STORAGE,
            R.BOOKKEEPING,
            R.SIDE_ONLY,
            R.SECRET,
            sides=("local",),
            file_only=True,
        ),
        # Content columns of one table that any list names wherever they appear.
        _c("password_hash", R.SECRET, R.ACCOUNT, tables=frozenset({"user_accounts"})),
        _c("role", R.ACCOUNT, tables=frozenset({"user_accounts"})),
    )
}
del R


def having(*roles: Role) -> frozenset[str]:
    """The columns that have any of ``roles``."""
    return frozenset(c.name for c in COLUMNS.values() if c.roles & set(roles))


def in_order(columns: frozenset[str]) -> tuple[str, ...]:
    """``columns`` in table order (as COLUMNS lists them)."""
    return tuple(n for n in COLUMNS if n in columns)


# Never cross between the sides (the lanes, the sync endpoints, backfill).
SIDE_ONLY_COLUMNS: Final = having(Role.SIDE_ONLY)
# A change to these alone makes no new revision (scsync_bookkeeping_columns()).
BOOKKEEPING_COLUMNS: Final = having(Role.BOOKKEEPING)
# The apply function writes these at the destination (the rest of SIDE_ONLY_COLUMNS is
# generated or kept by the destination's own processes).
APPLY_SETS_COLUMNS: Final = having(Role.SET_BY_APPLY)
# A change to these moves the sync badge (batch.sync).
BADGE_COLUMNS: Final = having(Role.BADGE)
# Every batch row a site sends carries these (backfill): which record, whose, which revision.
BATCH_KEY_COLUMNS: Final = (*in_order(having(Role.IDENTITY)), "revision")
# Written by the server, the replicator or the capture, never by a client's record write.
SERVER_COLUMNS: Final = having(
    Role.IDENTITY,
    Role.VERSIONING,
    Role.SIDE_ONLY,
    Role.TIMESTAMP,
    Role.DELETION,
    Role.SYNC_SWITCH,
)
# Never leaves the server.
SECRET_COLUMNS: Final = having(Role.SECRET)
# Credentials and privileges: only the API's account endpoints change them.
ACCOUNT_COLUMNS: Final = having(Role.ACCOUNT)
# No edit session may set these: identity, versioning and sync bookkeeping, the sync
# switch, file storage (files change through new blobs), credentials and privileges.
NOT_EDITABLE_COLUMNS: Final = having(
    Role.IDENTITY,
    Role.VERSIONING,
    Role.SIDE_ONLY,
    Role.TIMESTAMP,
    Role.SYNC_SWITCH,
    Role.FILE_STORAGE,
    Role.ACCOUNT,
)
