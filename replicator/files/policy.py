"""The site's sync scope for files, the per-record switch and the old-data option.

Scope decides which blobs go to S3; every enabled row's metadata crosses either way,
and a row whose blob is out of scope arrives on the cloud with ``blob_state = remote``
(a cloud client may request it on demand). The rule itself lives in SQL
(``scsync_blob_in_scope`` over the view ``scsync_file_rows``, baseline_files_local.sql) so
the backfill, the core's push and this module all evaluate the same thing.

What leaves scope follows the policy's old-data option, applied to the cloud copy
(the local database stays the origin of truth and keeps everything):

- ``keep``: nothing changes on the cloud;
- ``delete``: the cloud record is marked ``lifecycle = deleted`` and its blob removed
  from S3 (unless another active record uses the same bytes);
- ``backup``: the cloud record is marked ``lifecycle = backed_up`` and its blob kept;
  ``restore`` makes it active again and pins it in scope by explicit selection.

The cloud copies change through the cloud API with the site's token
(:class:`~replicator.files.cloud.FilesCloud`, api/sync_files.py): the site holds no
login on the cloud database, and the cloud refuses a record of another site.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg import sql
from psycopg.rows import namedtuple_row

from replicator.files.errors import PolicyError, RecordNotFound
from schema import scope_policy
from schema.database import Conn, execute, fetch_all, fetch_one, fetch_value, named
from schema.scope_policy import FILE_TABLES, OldData, ScopePolicy
from schema.tables import SYNCED_TABLES

if TYPE_CHECKING:
    from replicator.files.cloud import FilesCloud


def validate(policy: ScopePolicy) -> ScopePolicy:
    """schema.scope_policy's validation (the API's too), as this package's error."""
    try:
        return scope_policy.validate(policy)
    except scope_policy.PolicyInvalid as exc:
        raise PolicyError(str(exc)) from exc


async def get_policy(conn: Conn) -> ScopePolicy:
    row: Any = await fetch_one(conn, "files_policy_get", row=namedtuple_row)
    if row is None:
        return ScopePolicy()
    return ScopePolicy(
        mode=row.mode,
        tables=tuple(row.tables),
        modalities=tuple(row.modalities),
        since_date=row.since_date,
        last_days=row.last_days,
        old_data=row.old_data,
    )


async def set_policy(conn: Conn, policy: ScopePolicy) -> ScopePolicy:
    """Store the policy; then run :func:`apply_old_data`."""
    validate(policy)
    await execute(
        conn,
        "files_policy_set",
        {
            "mode": policy.mode,
            "tables": json.dumps(list(policy.tables)),
            "modalities": json.dumps(list(policy.modalities)),
            "since_date": policy.since_date,
            "last_days": policy.last_days,
            "old_data": policy.old_data,
        },
    )
    return policy


async def select(conn: Conn, table: str, row_ids: Sequence[int]) -> None:
    """Put records in scope explicitly (the user's selection)."""
    _file_table(table)
    for rid in row_ids:
        await execute(conn, "files_select", {"table_name": table, "row_id": rid})


async def unselect(conn: Conn, table: str, row_ids: Sequence[int]) -> None:
    _file_table(table)
    for rid in row_ids:
        await execute(conn, "files_unselect", {"table_name": table, "row_id": rid})


async def in_scope(conn: Conn, table: str, row_id: int) -> bool:
    """Whether this record's blob belongs in the cloud under the current policy."""
    _file_table(table)
    row = await fetch_one(conn, "files_row_in_scope", {"table_name": table, "row_id": row_id})
    if row is None:
        raise RecordNotFound(f"no {table} record {row_id}")
    return bool(row[0])


def _file_table(table: str) -> None:
    if table not in FILE_TABLES:
        raise PolicyError(f"{table!r} holds no files; use one of {', '.join(FILE_TABLES)}")


def _synced_table(table: str) -> str:
    if table not in SYNCED_TABLES:
        raise PolicyError(f"{table!r} is not a synced table")
    return table


# -- per-record switch --------------------------------------------------------------------


async def set_sync_enabled(conn: Conn, table: str, row_id: int, enabled: bool) -> int:
    """Turn sync on or off for one local record (a content change: it goes out as a
    normal change, and on arrival the cloud marks its copy deleted/active)."""
    name = _synced_table(table)
    stmt = named("files_sync_enabled_set", table=sql.Identifier(name))
    async with conn.transaction():
        site = await fetch_value(conn, stmt, {"row_id": row_id, "enabled": enabled})
        if site is None:
            raise RecordNotFound(f"no {table} record {row_id}")
        # A save of scsync's own: its history row now (queries.sql, history_save).
        await execute(conn, "history_save", {"table": name, "row_id": row_id, "op": "U"})
    return int(site)


async def mark_cloud_copy(cloud: FilesCloud, table: str, row_id: int, enabled: bool) -> bool:
    """Apply the switch to the cloud copy at once (as replicated bookkeeping: no new
    revision, so the later push of the local change fast-forwards). False: no copy."""
    _synced_table(table)
    return await cloud.switch(table, row_id, enabled)


# -- old data -------------------------------------------------------------------------------


@dataclass
class OldDataReport:
    option: OldData
    records: list[tuple[str, int]] = field(default_factory=list)
    blobs_deleted: list[str] = field(default_factory=list)


DeleteBlob = Callable[[str], Awaitable[bool]]


async def out_of_scope_crossed(local: Conn, site_id: int) -> list[Any]:
    """Records that crossed but whose blob is now outside the scope."""
    return await fetch_all(
        local, "files_out_of_scope_crossed", {"site_id": site_id}, row=namedtuple_row
    )


async def apply_old_data(
    local: Conn,
    cloud: FilesCloud,
    site_id: int,
    delete_blob: DeleteBlob | None = None,
    option: OldData | None = None,
) -> OldDataReport:
    """Bring the cloud copies of records that left scope in line with the old-data option.

    ``delete_blob(sha256)`` removes a blob through the cloud's blob API (True when it
    was deleted). Idempotent: only active copies change.
    """
    chosen: OldData = option or (await get_policy(local)).old_data
    report = OldDataReport(chosen)
    if chosen == "keep":
        return report
    lifecycle = "deleted" if chosen == "delete" else "backed_up"
    leaving = await out_of_scope_crossed(local, site_id)
    if not leaving:
        return report
    # One request (one cloud transaction): the lifecycle change is committed, and so
    # visible to the blob API, before any blob is deleted.
    report.records = await cloud.set_lifecycle(
        [(rec.table_name, int(rec.id)) for rec in leaving], lifecycle
    )
    changed = set(report.records)
    shas = {
        rec.blob_sha256
        for rec in leaving
        if (rec.table_name, rec.id) in changed and rec.blob_sha256
    }
    if chosen == "delete" and delete_blob is not None:
        # The blob API refuses while an active record still uses the bytes.
        for sha in sorted(shas):
            if await delete_blob(sha):
                report.blobs_deleted.append(sha)
        if report.records:
            await cloud.blob_remote(report.records)
    return report


async def restore(local: Conn, cloud: FilesCloud, table: str, row_id: int, site_id: int) -> None:
    """Bring a backed-up record back: active on the cloud, pinned in scope locally."""
    _file_table(table)
    if not await cloud.restore(table, row_id):
        raise RecordNotFound(f"no backed-up {table} record {row_id} of site {site_id}")
    await select(local, table, [row_id])
