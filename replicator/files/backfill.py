"""Backfill: everything that never crossed (``synced_revision IS NULL``) goes to the cloud.

Order: tables parents first (so a child never arrives before the parent it references),
each table newest first (``ORDER BY id DESC``: Snowflake ids grow with time). A batch of
metadata is streamed with binary COPY out of the local table, through the cloud API
(``POST /v1/sync/backfill/apply`` with the site's token, api/sync_files.py) into a
staging table on the cloud (never a whole batch in memory on either side), applied there
with ``INSERT ... ON CONFLICT (id) DO NOTHING`` (absent at the cloud = null base: a fast
forward; already there with the same revision: a duplicate) after the tenant wall (every
row the token's site's), its revisions recorded in history, and only then marked synced
locally, with the revision the cloud accepted.
Progress is therefore derived from what is recorded as synced: a restart simply finds
fewer rows that never crossed, and a crash between the two commits makes the next run
see duplicates, which it acknowledges.

File-bearing tables go in smaller batches: the blobs of in-scope rows are uploaded first
(concurrently, bounded, deduplicated), and the cloud then gives the rows ``blob_state``
``uploaded`` only for blobs it verified, ``remote`` otherwise (metadata only).

Live changes come first: before every batch the lane awaits ``live_gate`` (the core's
"live lane is idle" signal, see docs/files.md) and serves open on-demand requests.
Throttles: rows/s (between batches) and bytes/s (inside every transfer chunk).
Progress goes to the ``scsync_backfill`` row, to ``sync.progress`` events, to
``on_progress`` (the CLI's progress bar) and, when asked, to a Prometheus text file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row

from replicator.errors import SettingsError
from replicator.files.cloud import FilesCloud
from replicator.files.errors import BlobMissing, FilesError
from replicator.files.localdb import AsyncConn, LocalDb, connect
from replicator.files.ondemand import OnDemand
from replicator.files.transfer import RateLimiter, Transfer
from replicator.wal import origin_session
from schema.columns import SIDE_ONLY_COLUMNS
from schema.database import named
from schema.replicating import mark_replicating
from schema.tables import SYNCED_TABLES, metadata_for

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024
# The request body is sent in pieces of about this size (COPY gives one row at a time).
_CHUNK: Final = 1 << 16


@dataclass(frozen=True)
class BackfillConfig:
    batch_rows: int = 5000
    file_batch_rows: int = 20
    rows_per_s: float | None = None
    bytes_per_s: float | None = None
    requests_poll_s: float = 1.0
    progress_interval_s: float = 0.5
    # Mark rows synced locally with session_replication_role = replica when the role
    # may: no per-row triggers (the cloud API decides the same for its apply).
    bulk: bool = True
    # Batches copied and applied at once, each on its own local connection and request:
    # one batch's apply (a cloud backend) overlaps the next one's COPY and apply
    # (another) and the local marks. Marks still go in batch order, newest first.
    batches_in_flight: int = 2
    metrics_path: Path | None = None
    tables: tuple[str, ...] = tuple(SYNCED_TABLES)


@dataclass
class Progress:
    state: str = "idle"
    rows_total: int = 0
    rows_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    rows_per_s: float = 0.0
    bytes_per_s: float = 0.0
    table: str | None = None
    requests_served: int = 0

    @property
    def eta_s(self) -> float | None:
        left_rows = max(0, self.rows_total - self.rows_done)
        left_bytes = max(0, self.bytes_total - self.bytes_done)
        if left_rows == 0 and left_bytes == 0:
            return 0.0
        etas = []
        if left_rows and self.rows_per_s > 0:
            etas.append(left_rows / self.rows_per_s)
        if left_bytes and self.bytes_per_s > 0:
            etas.append(left_bytes / self.bytes_per_s)
        return max(etas) if etas else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "rows_total": self.rows_total,
            "rows_done": self.rows_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "rows_per_s": round(self.rows_per_s, 1),
            "bytes_per_s": round(self.bytes_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "table": self.table,
        }

    def metrics_text(self) -> str:
        """The same figures in Prometheus' text exposition format."""
        eta = self.eta_s
        figures = {
            "scsync_backfill_rows_total": self.rows_total,
            "scsync_backfill_rows_done": self.rows_done,
            "scsync_backfill_bytes_total": self.bytes_total,
            "scsync_backfill_bytes_done": self.bytes_done,
            "scsync_backfill_rows_per_second": self.rows_per_s,
            "scsync_backfill_bytes_per_second": self.bytes_per_s,
            "scsync_backfill_eta_seconds": -1 if eta is None else eta,
            "scsync_backfill_running": 1 if self.state == "running" else 0,
        }
        lines = []
        for name, value in figures.items():
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {value}")
        return "\n".join(lines) + "\n"


def _bigint_array(values: Iterable[int]) -> str:
    """An array literal of these integers for a ``%(x)s::bigint[]`` parameter. psycopg
    dumps a list element by element (about 2 us each: of a 5,000-row batch's ids, revisions
    and ids again, ~30 ms of the site process's CPU); ints put in a literal are safe."""
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def _copied_columns(table: str) -> list[str]:
    # Never one side's own bookkeeping, the generated flag among it: the cloud sets its
    # own (synced_revision, blob_state, ...) or has no such column (local_path).
    local = metadata_for("local").tables[table]
    return [c.name for c in local.columns if c.name not in SIDE_ONLY_COLUMNS]


async def remaining(local: AsyncConn, site_id: int, tables: Sequence[str]) -> tuple[int, int]:
    """Rows that never crossed and in-scope bytes they carry (the backfill's left-over)."""
    rows = 0
    async with local.cursor() as cur:
        for table in tables:
            await cur.execute(
                named("files_backfill_remaining_rows", table=sql.Identifier(table)),
                {"site_id": site_id},
            )
            rows += int((await cur.fetchone() or (0,))[0])
        await cur.execute(named("files_backfill_remaining_bytes"), {"site_id": site_id})
        nbytes = int((await cur.fetchone() or (0,))[0])
    return rows, nbytes


async def read_progress(local: AsyncConn, site_id: int) -> Progress:
    """What `scsync backfill status` shows: stored totals, done derived from the data."""
    async with local.cursor(row_factory=namedtuple_row) as cur:
        await cur.execute(named("files_backfill_get"))
        row: Any = await cur.fetchone()
    left_rows, left_bytes = await remaining(local, site_id, tuple(SYNCED_TABLES))
    if row is None:
        return Progress(rows_total=left_rows, bytes_total=left_bytes)
    total_rows = max(row.rows_total, left_rows)
    total_bytes = max(row.bytes_total, left_bytes)
    p = Progress(
        state=row.state,
        rows_total=total_rows,
        rows_done=total_rows - left_rows,
        bytes_total=total_bytes,
        bytes_done=total_bytes - left_bytes,
    )
    if row.run_started_at is not None and row.state == "running":
        elapsed = max(1e-6, (row.updated_at - row.run_started_at).total_seconds())
        p.rows_per_s = row.run_rows / elapsed
        p.bytes_per_s = row.run_bytes / elapsed
    return p


async def set_state(local: AsyncConn, state: str) -> None:
    async with local.cursor() as cur:
        await cur.execute(named("files_backfill_set_state"), {"state": state})


async def _tag_marks(conn: AsyncConn) -> None:
    """Give the marking session the backfill's replication origin: the site's WAL
    capture then drops its UPDATEs (pgoutput ``origin none``, the replicator's origin
    filter) instead of decoding and spooling a bookkeeping change per row marked. Without
    the privilege (or with the origin busy in another backfill) the marks go untagged:
    still correct, the capture finds no new revision in them, only slower."""
    for attempt in range(6):
        try:
            await origin_session(conn, "backfill")
            return
        except psycopg.errors.ObjectInUse as exc:
            # The previous run's marking session (a lane started again at once) may hold
            # the origin until its server process has exited: a moment.
            if attempt == 5:
                log.warning("backfill: marks go without a replication origin: %s", exc)
            else:
                await asyncio.sleep(0.1)
        except (SettingsError, psycopg.Error) as exc:
            log.warning("backfill: marks go without a replication origin: %s", exc)
            return


@dataclass
class _Run:
    started: float = field(default_factory=time.monotonic)
    rows: int = 0
    bytes: int = 0
    last_emit: float = 0.0


class Backfill:
    """One site's backfill lane. ``await run()`` returns when done or paused."""

    def __init__(
        self,
        local_url: str,
        cloud: FilesCloud,
        site_id: int,
        transfer: Transfer | None = None,
        config: BackfillConfig | None = None,
        live_gate: Callable[[], Awaitable[None]] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.local_url = local_url
        self.cloud = cloud
        self.site_id = site_id
        self.transfer = transfer
        self.config = config or BackfillConfig()
        self.live_gate = live_gate
        self.on_progress = on_progress
        self.progress = Progress()
        self._rows_limiter = RateLimiter(self.config.rows_per_s)
        if transfer is not None and self.config.bytes_per_s:
            transfer.limiter = RateLimiter(self.config.bytes_per_s, burst=MiB)
        self._run = _Run()
        self._last_poll = 0.0
        self._ondemand: OnDemand | None = None
        self._marker: AsyncConn | None = None
        self._mark_task: asyncio.Task[None] | None = None
        # Local connections, one per batch in flight.
        self._lanes: asyncio.Queue[AsyncConn] = asyncio.Queue()

    async def run(self) -> Progress:
        """Backfill until done or paused; database and cloud API failures surface as
        FilesError (CloudUnavailable, CloudRefused for the API's)."""
        try:
            return await self._run_lane()
        except psycopg.Error as exc:
            raise FilesError(f"backfill stopped: {exc}") from exc

    async def _run_lane(self) -> Progress:
        if self.config.batches_in_flight < 1:
            raise FilesError("batches_in_flight must be at least 1")
        local = await connect(self.local_url)
        self._marker = await connect(self.local_url)
        await _tag_marks(self._marker)
        lanes: list[AsyncConn] = []
        self._lanes = asyncio.Queue()  # this run's connections only
        try:
            for _ in range(self.config.batches_in_flight):
                lanes.append(await connect(self.local_url))
                self._lanes.put_nowait(lanes[-1])
            self._bulk = self.config.bulk and await self._may_bulk(local)
            if self.transfer is not None:
                self._ondemand = OnDemand(self.transfer, LocalDb(local))
            await self._begin(local)
            for table in self.config.tables:
                if not await self._table(local, table):
                    self.progress.state = "paused"
                    await self._emit(local, force=True)
                    return self.progress
            widened = [t for t in self.config.tables if SYNCED_TABLES[t] is not None]
            for table in widened if self.transfer is not None else []:
                if not await self._widened_scope(local, table):
                    self.progress.state = "paused"
                    await self._emit(local, force=True)
                    return self.progress
            self.progress.state = "done"
            self.progress.table = None
            await set_state(local, "done")
            await self._emit(local, force=True)
            return self.progress
        finally:
            if self._mark_task is not None and not self._mark_task.done():
                self._mark_task.cancel()
            await local.close()
            await self._marker.close()
            for conn in lanes:
                await conn.close()

    async def _may_bulk(self, local: AsyncConn) -> bool:
        async with local.cursor() as cur:
            await cur.execute(named("files_backfill_may_bulk"))
            row: Any = await cur.fetchone()
        return bool(row and row[0])

    async def _begin(self, local: AsyncConn) -> None:
        async with local.cursor(row_factory=namedtuple_row) as cur:
            await cur.execute(named("files_backfill_get"))
            row: Any = await cur.fetchone()
        left_rows, left_bytes = await remaining(local, self.site_id, self.config.tables)
        resuming = row is not None and row.state in ("running", "paused")
        total_rows = max(row.rows_total, left_rows) if resuming and row else left_rows
        total_bytes = max(row.bytes_total, left_bytes) if resuming and row else left_bytes
        self.progress = Progress(
            state="running",
            rows_total=total_rows,
            rows_done=total_rows - left_rows,
            bytes_total=total_bytes,
            bytes_done=total_bytes - left_bytes,
        )
        async with local.cursor() as cur:
            await cur.execute(
                named("files_backfill_start"),
                {
                    "rows_per_s": self.config.rows_per_s,
                    "bytes_per_s": self.config.bytes_per_s,
                    "rows_total": total_rows,
                    "bytes_total": total_bytes,
                    "rows_done": self.progress.rows_done,
                    "bytes_done": self.progress.bytes_done,
                },
            )
        self._run = _Run()

    async def _paused(self, local: AsyncConn) -> bool:
        async with local.cursor() as cur:
            await cur.execute(named("files_backfill_get"))
            row: Any = await cur.fetchone()
        return row is not None and row[0] == "paused"

    async def _before_batch(self, local: AsyncConn) -> bool:
        if self.live_gate is not None:
            await self.live_gate()
        if await self._paused(local):
            return False
        if self._ondemand is not None:
            now = time.monotonic()
            if now - self._last_poll >= self.config.requests_poll_s:
                self._last_poll = now
                before = self._ondemand.bytes
                try:
                    served = await self._ondemand.serve_once()
                except FilesError as exc:
                    # On-demand is best effort here: the backfill goes on, the next
                    # poll (or the replicator's file lanes) tries again.
                    log.warning("on-demand requests: %s", exc)
                    served = 0
                self.progress.requests_served += served
                self._run.bytes += self._ondemand.bytes - before
        return True

    async def _table(self, local: AsyncConn, table: str) -> bool:
        """Backfill one table; False when paused. Up to ``batches_in_flight`` batches are
        copied and applied at once; each is marked synced locally after its own cloud
        commit, in the order the batches were taken (newest first)."""
        self.progress.table = table
        file_bearing = SYNCED_TABLES[table] is not None
        before = (1 << 63) - 1
        window: deque[asyncio.Task[list[Any]]] = deque()
        try:
            while True:
                if not await self._before_batch(local):
                    await self._drain(table, window)
                    return False
                if file_bearing:
                    rows = await self._file_rows(local, table, before)
                    ids = [int(r.id) for r in rows]
                    if rows:
                        await self._upload_blobs(rows)
                else:
                    ids = await self._next_ids(local, table, before)
                if not ids:
                    await self._drain(table, window)
                    return True
                before = min(ids)
                if len(window) >= self.config.batches_in_flight:
                    await self._retire(table, window.popleft())
                window.append(asyncio.create_task(self._batch(table, ids)))
                await self._rows_limiter.consume(len(ids))
                await self._emit(local)
        finally:
            for task in window:
                task.cancel()
            for task in window:
                with contextlib.suppress(BaseException):
                    await task

    async def _retire(self, table: str, task: asyncio.Task[list[Any]]) -> None:
        """Wait for a batch's cloud commit, then mark its rows (after the marks of the
        batches before it, while later batches go on)."""
        accepted = await task
        await self._flush_mark()
        self._mark_task = asyncio.create_task(self._mark(table, accepted))

    async def _drain(self, table: str, window: deque[asyncio.Task[list[Any]]]) -> None:
        while window:
            await self._retire(table, window.popleft())
        await self._flush_mark()

    async def _next_ids(self, local: AsyncConn, table: str, before: int) -> list[int]:
        """The next batch: ids of rows that never crossed, newest first, below `before`."""
        async with local.cursor() as cur:
            await cur.execute(
                named("files_backfill_next_ids", table=sql.Identifier(table)),
                {"site_id": self.site_id, "before": before, "limit": self.config.batch_rows},
            )
            return [int(r[0]) for r in await cur.fetchall()]

    async def _file_rows(self, local: AsyncConn, table: str, before: int) -> list[Any]:
        async with local.cursor(row_factory=namedtuple_row) as cur:
            await cur.execute(
                named("files_backfill_file_rows"),
                {
                    "table_name": table,
                    "site_id": self.site_id,
                    "before": before,
                    "limit": self.config.file_batch_rows,
                },
            )
            return list(await cur.fetchall())

    async def _widened_scope(self, local: AsyncConn, table: str) -> bool:
        """Rows that crossed as metadata only and are in scope now (the policy widened):
        upload their blobs; the cloud then marks those rows uploaded. False when paused."""
        self.progress.table = table
        before = (1 << 63) - 1
        while True:
            if not await self._before_batch(local):
                return False
            async with local.cursor(row_factory=namedtuple_row) as cur:
                await cur.execute(
                    named("files_backfill_crossed_in_scope"),
                    {
                        "table_name": table,
                        "site_id": self.site_id,
                        "before": before,
                        "limit": self.config.batch_rows,
                    },
                )
                rows: list[Any] = await cur.fetchall()
            if not rows:
                return True
            before = min(r.id for r in rows)
            present = await self.cloud.has(sorted({r.blob_sha256 for r in rows}))
            missing = [r for r in rows if r.blob_sha256 not in present]
            if missing:
                self.progress.bytes_total += sum(
                    {r.blob_sha256: r.blob_size for r in missing}.values()
                )
                await self._upload_blobs(missing)
                await self._emit(local)

    async def _upload_blobs(self, rows: Sequence[Any]) -> set[str]:
        """Upload the in-scope blobs of a batch; the shas the cloud has verified."""
        if self.transfer is None:
            return set()
        transfer = self.transfer
        wanted: dict[str, Any] = {}
        for r in rows:
            if r.in_scope and r.blob_sha256 and r.local_path and r.blob_state == "present":
                wanted.setdefault(r.blob_sha256, r)

        async def one(r: Any) -> str | None:
            try:
                await transfer.upload(Path(r.local_path), r.blob_sha256, r.blob_size)
            except BlobMissing as exc:
                log.warning("row %s: %s; it crosses as metadata only", r.id, exc)
                return None
            self._run.bytes += r.blob_size
            self.progress.bytes_done += r.blob_size
            return str(r.blob_sha256)

        done = await asyncio.gather(*(one(r) for r in wanted.values()))
        return {sha for sha in done if sha}

    async def _batch(self, table: str, ids: list[int]) -> list[Any]:
        """Stream these rows to the cloud API, which applies them, on a local connection
        of its own; the (id, revision) of the rows the cloud holds as sent."""
        local = await self._lanes.get()
        try:
            return await self._copy_and_apply(local, table, ids)
        finally:
            self._lanes.put_nowait(local)

    async def _copy_and_apply(self, local: AsyncConn, table: str, ids: list[int]) -> list[Any]:
        columns = _copied_columns(table)
        copy_out = named(
            "files_backfill_copy_out_ids",
            columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            table=sql.Identifier(table),
        )

        async def rows() -> AsyncIterator[bytes]:
            # Binary COPY as it comes out of the local table, in pieces of about
            # _CHUNK bytes: the request body streams, the batch is never held whole.
            buf = bytearray()
            async with local.cursor().copy(
                copy_out, {"ids": _bigint_array(ids), "site_id": self.site_id}
            ) as source:
                async for data in source:
                    buf += data
                    if len(buf) >= _CHUNK:
                        yield bytes(buf)
                        buf.clear()
            if buf:
                yield bytes(buf)

        try:
            accepted = await self.cloud.apply(table, columns, rows())
        except psycopg.Error as exc:
            raise FilesError(f"backfill of {table} failed: {exc}") from exc
        if len(accepted) < len(ids):
            # Fewer can also mean rows deleted or changed locally since their ids were
            # read: those are the live lanes' to send.
            log.warning(
                "%s: %d of %d rows differ on the cloud; left for the conflict handling",
                table,
                len(ids) - len(accepted),
                len(ids),
            )
        return accepted

    async def _mark(self, table: str, accepted: list[Any]) -> None:
        assert self._marker is not None
        try:
            async with self._marker.transaction():
                mcur = self._marker.cursor()
                if self._bulk:
                    await mcur.execute("SET LOCAL session_replication_role = replica")
                await mark_replicating(self._marker)
                # Losing this commit in a crash only makes the next run re-send the batch
                # (a duplicate on the cloud), so it need not wait for the WAL flush.
                await mcur.execute("SET LOCAL synchronous_commit = off")
                await mcur.execute(
                    named("files_backfill_mark_synced", table=sql.Identifier(table)),
                    {
                        "ids": _bigint_array(a[0] for a in accepted),
                        "revs": _bigint_array(a[1] for a in accepted),
                    },
                )
        except psycopg.Error as exc:
            raise FilesError(f"backfill of {table}: marking rows synced failed: {exc}") from exc
        self._run.rows += len(accepted)
        self.progress.rows_done += len(accepted)

    async def _flush_mark(self) -> None:
        task, self._mark_task = self._mark_task, None
        if task is not None:
            await task

    async def _emit(self, local: AsyncConn, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._run.last_emit < self.config.progress_interval_s:
            return
        self._run.last_emit = now
        elapsed = max(1e-6, now - self._run.started)
        self.progress.rows_per_s = self._run.rows / elapsed
        self.progress.bytes_per_s = self._run.bytes / elapsed
        payload = self.progress.as_dict()
        async with local.cursor() as cur:
            await cur.execute(
                named("files_backfill_progress"),
                {
                    "rows_done": self.progress.rows_done,
                    "bytes_done": self.progress.bytes_done,
                    "run_rows": self._run.rows,
                    "run_bytes": self._run.bytes,
                },
            )
            await cur.execute(
                named("files_backfill_publish"),
                {"site_id": self.site_id, "payload": json.dumps(payload)},
            )
        if self.config.metrics_path is not None:
            _write_atomic(self.config.metrics_path, self.progress.metrics_text())
        if self.on_progress is not None:
            self.on_progress(self.progress)


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)
