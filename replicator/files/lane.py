"""The file lane's hooks for the replicator core (live push and pull).

The core owns rows, batches and the apply rule; it calls these around file-bearing rows:

- :meth:`FileLane.before_push` before a file-bearing row goes up: uploads its blob when
  it is in scope (deduplicated, resumable) and returns the ``blob_state`` the row should
  carry on the cloud (``uploaded`` or ``remote``). The cloud's trigger holds the same
  rule: a row never says ``uploaded`` for a blob the cloud has not verified.
- :meth:`FileLane.after_pull` after the core applied a cloud row locally (its apply
  writes ``blob_state = 'remote'`` for an arriving file; ``pending`` works too):
  downloads the blob (sha256-verified, atomic) into the file
  store and marks the row ``present`` with its ``local_path``.
- :meth:`FileLane.serve_requests` whenever the core sees a ``blob.requested`` event (or on
  its poll): uploads what cloud clients asked for, ahead of the backfill.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from psycopg import sql
from psycopg.rows import namedtuple_row

from replicator.files.errors import RecordNotFound
from replicator.files.localdb import LocalDb
from replicator.files.ondemand import OnDemand
from replicator.files.transfer import Transfer, store_path
from schema.database import execute, fetch_all, fetch_one, named
from schema.replicating import replicating
from schema.scope_policy import FILE_TABLES

log = logging.getLogger(__name__)


class FileLane:
    def __init__(self, transfer: Transfer, local: LocalDb, store_root: Path) -> None:
        self.transfer = transfer
        self.local = local
        self.store_root = store_root
        self.ondemand = OnDemand(transfer, local)

    async def _row(self, table: str, row_id: int) -> Any:
        if table not in FILE_TABLES:
            raise RecordNotFound(f"{table!r} holds no files")
        async with self.local.connection() as conn:
            row: Any = await fetch_one(
                conn, "files_lane_row", {"table_name": table, "row_id": row_id}, row=namedtuple_row
            )
        if row is None:
            raise RecordNotFound(f"no {table} record {row_id}")
        return row

    async def before_push(self, table: str, row_id: int) -> Literal["uploaded", "remote"] | None:
        """Upload the row's blob if in scope; the blob_state its cloud copy carries.

        None when the row has no blob. Raises the transfer's errors (the core retries
        the row later); a local file that vanished makes the row cross as ``remote``.
        """
        row = await self._row(table, row_id)
        if row.blob_sha256 is None:
            return None
        if not row.in_scope or row.blob_state != "present" or not row.local_path:
            return "remote"
        from replicator.files.errors import BlobMissing

        try:
            await self.transfer.upload(Path(row.local_path), row.blob_sha256, row.blob_size)
        except BlobMissing as exc:
            log.warning("%s %s: %s; it crosses as metadata only", table, row_id, exc)
            return "remote"
        return "uploaded"

    async def after_pull(self, table: str, row_id: int) -> Path | None:
        """Download a pulled row's blob into the store; its local path (None: nothing to do)."""
        row = await self._row(table, row_id)
        if row.blob_sha256 is None or row.blob_state == "present":
            return None
        dest = store_path(self.store_root, row.blob_sha256)
        if not dest.exists():
            await self.transfer.download(row.blob_sha256, dest, row.blob_size)
        async with self.local.connection() as conn, replicating(conn):
            await execute(
                conn,
                named("files_lane_mark_present", table=sql.Identifier(table)),
                {"row_id": row_id, "local_path": str(dest), "sha256": row.blob_sha256},
            )
        return dest

    async def fetch_pending(self, limit: int = 100) -> int:
        """Download every pending blob (e.g. after a restart); how many rows were served."""
        async with self.local.connection() as conn:
            rows: list[Any] = await fetch_all(
                conn, "files_lane_pending", {"limit": limit}, row=namedtuple_row
            )
        for r in rows:
            await self.after_pull(r.table_name, r.id)
        return len(rows)

    async def serve_requests(self) -> int:
        return await self.ondemand.serve_once()
