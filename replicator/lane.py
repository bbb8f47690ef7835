"""One lane: the outbox of a source database, applied to a destination database.

``push`` moves the site's local outbox to the cloud, ``pull`` moves the cloud outbox
rows of this site to the local database. Both run the same steps (see
``schema/sql/baseline_replicator.sql`` for the SQL side):

1. *read* (source, REPEATABLE READ): committed outbox rows, oldest seq first, coalesced
   per record, each with the record's current content (a tombstone when it is gone);
2. *apply* (destination, one transaction): the batch as one JSON argument of one
   set-based apply (which stages it in a temp table of its own), the batch's source seqs
   into ``scsync_inbox``, the cursor;
3. *ack* (source, one transaction): delete exactly those outbox seqs, move
   ``synced_revision`` forward, mirror conflicts, park what could not be applied;
4. *forget* (destination): the inbox entry goes with the next apply.

After a restart, inbox entries still present are acknowledged before anything is read
(:meth:`Lane.recover`), so a crash at any instant neither loses nor doubles a change.

The local end is the site's database (:class:`schema.lanes.LaneDb` on a psycopg
connection); the cloud end is the cloud API (:class:`replicator.cloud_client.CloudEnd`),
which runs the same steps on the cloud database for the site of the token. Exclusivity:
a session advisory lock on the local database (it dies with its process) and, on the
cloud, the lane's lease, renewed by each request and lapsing ttl seconds after the last.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import psycopg

from replicator import metrics as m
from replicator.cloud_client import CloudClient, CloudEnd, default_holder
from replicator.db import connect, first_line, is_data_error, wrap_errors
from replicator.errors import ApplyFailed, LaneBusy, Unavailable
from replicator.metrics import Metrics
from replicator.settings import Settings
from replicator.wal import WalCapture, lsn_int, lsn_text, origin_session
from schema.columns import SIDE_ONLY_COLUMNS
from schema.database import named
from schema.lanes import (
    Applied,
    BatchRow,
    LaneDb,
    LaneName,
    Park,
    Side,
)
from schema.notifications import keepalive_conninfo

__all__ = [
    "SIDE_ONLY_COLUMNS",
    "Batch",
    "BatchResult",
    "BatchRow",
    "BlobGate",
    "Lane",
    "LaneName",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK_KEYS: dict[LaneName, int] = {"push": 73020, "pull": 73021}

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


class End(Protocol):
    """One end of a lane: the local database or the cloud API (same steps, same shapes)."""

    async def columns(self) -> tuple[dict[str, list[str]], str | None]: ...

    async def read(
        self, lane: LaneName, limit: int, exclude: dict[str, list[str]], skip: Sequence[int]
    ) -> list[BatchRow]: ...

    async def apply(
        self,
        lane: LaneName,
        batch: Sequence[BatchRow],
        columns: dict[str, list[str]],
        forget: Sequence[int],
        source_commit_at: dt.datetime | None,
        peer_schema_revision: str | None,
        one_by_one: bool,
        source_lsn: str | None = None,
    ) -> Applied: ...

    async def ack(
        self,
        lane: LaneName,
        seqs: Sequence[int],
        rows: str,
        parks: Sequence[Park] = (),
        requeue: bool = False,
    ) -> None: ...

    async def forget(self, lane: LaneName, batch_ids: Sequence[int]) -> None: ...

    async def inbox_pending(self, lane: LaneName) -> list[tuple[int, list[int]]]: ...

    async def outbox_keys(self, seqs: Sequence[int]) -> list[dict[str, Any]]: ...

    async def recover_rows(self, keys: str) -> str: ...

    async def outbox_depth(self) -> tuple[int, float | None]: ...


@dataclass
class BatchResult:
    rows: int = 0
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    parked: int = 0
    batch_id: int | None = None
    # a WAL batch the cloud held already (a replay after a crash): nothing applied
    skipped: bool = False
    outcomes: dict[tuple[str, int], str] = field(default_factory=dict)
    # (ord, table, row_id, outcome, revision, conflict JSON) as the apply returned them
    raw: list[tuple[Any, ...]] = field(default_factory=list)


# Hook for the file lanes: given the file-bearing records of a batch, return those that
# must wait (key -> reason), e.g. because their blob is not uploaded yet. They are
# parked like a failed record and retried after the dead-letter delay; the records
# behind them go on. The default holds nothing back.
BlobGate = Callable[[Sequence[BatchRow]], Awaitable[dict[tuple[str, int], str]]]


class Batch(list[BatchRow]):
    """A batch's rows in order and, read from the WAL, the position it reaches
    (``wal_end``: the end LSN of its last source transaction; for an empty read, how far
    the stream was read, which the slot may be told once nothing is in flight)."""

    def __init__(self, rows: Iterable[BatchRow] = (), wal_end: int | None = None) -> None:
        super().__init__(rows)
        self.wal_end = wal_end


_Unacked = tuple[Batch, BatchResult, dict[tuple[str, int], str]]


@dataclass(frozen=True)
class _Schema:
    write_columns: dict[str, list[str]]  # per table: columns both sides have
    exclude: dict[str, list[str]]  # per table: source columns not to send
    source_revision: str | None
    loaded_at: float


class Lane:
    """One direction of one site. Not thread-safe; one task drives it."""

    def __init__(
        self,
        name: LaneName,
        settings: Settings,
        metrics: Metrics | None = None,
        blob_gate: BlobGate | None = None,
        client: CloudClient | None = None,
    ) -> None:
        self.name: LaneName = name
        self.settings = settings
        self.site_id = settings.site_id
        self.metrics = metrics or Metrics()
        self.blob_gate = blob_gate
        self._own_client = client is None
        self.client = client or CloudClient(settings)
        self.holder = settings.lane_holder or default_holder(settings)
        self.cloud = CloudEnd(self.client, name, self.holder)
        self.source_side: Side = "local" if name == "push" else "cloud"
        self.dest_side: Side = "cloud" if name == "push" else "local"
        self._conn: Conn | None = None
        self._local: LaneDb | None = None
        self._schema: _Schema | None = None
        self._schema_stale = False
        self._forget: list[int] = []
        self.last_metrics_at = 0.0
        # The push lane's source with capture = "wal": the site's WAL, read into batches.
        self.capture: WalCapture | None = None

    # -- connections ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def open(self) -> None:
        """Connect the local database, take the lane's lock there and its lease on the
        cloud, acknowledge what a crash left over."""
        await self.close()
        self._conn = await connect(
            self.settings.local_db_url,
            self.settings.connect_timeout_s,
            f"scsync-{self.name}-{'src' if self.source_side == 'local' else 'dst'}",
            autocommit=True,
        )
        self._local = LaneDb(self._conn, self.site_id, "local")
        async with wrap_errors(f"{self.name}: open"):
            if not await self._take_lock(self._local):
                raise LaneBusy(
                    f"the {self.name} lane of site {self.site_id} is run by another "
                    "replicator process on this site's database (its session holds the "
                    "lane's advisory lock there; it ends with that process)"
                )
            await self._open_capture(self._conn)
        await self.cloud.lease()
        if self.capture is not None:
            await self._resume()
        self._schema = None
        await self.recover()
        await self._schema_now()

    async def _take_lock(self, local: LaneDb) -> bool:
        """The lane's advisory lock on the site database. A session of this lane that was
        just closed (a reconnect) may still hold it for a moment, until its server
        process has exited: a few tries over half a second before calling it busy."""
        for attempt in range(6):
            if await local.lock(_LOCK_KEYS[self.name]):
                return True
            if attempt < 5:
                await asyncio.sleep(0.1)
        return False

    async def _open_capture(self, conn: Conn) -> None:
        """Capture from the WAL (``capture = "wal"``): this lane's writes on the site
        carry its replication origin (not decoded back), and the push lane streams the
        site's slot. Back to ``"triggers"`` after ``"wal"``: the slot is retired."""
        if self.settings.capture == "wal":
            await origin_session(conn, self.name)
            if self.name == "push":
                self.capture = self._wal_capture()
                await self.capture.open(conn)
            return
        if self.name == "push":
            cur = await conn.execute(named("capture_mode"))
            row = await cur.fetchone()
            if row is not None and row[0] == "wal":
                await origin_session(conn, self.name)
                await self._wal_capture().retire(conn)

    def _wal_capture(self) -> WalCapture:
        return WalCapture(
            keepalive_conninfo(
                self.settings.local_db_url, self.settings.connect_timeout_s, "scsync-capture"
            ),
            self.settings.connect_timeout_s,
            self.settings.op_timeout_s,
        )

    async def close(self, release: bool = False) -> None:
        """Close the local connection; ``release``: give the lease back too (a clean
        stop: another host may take the lane at once rather than after the TTL)."""
        if release:
            try:
                await asyncio.wait_for(self.cloud.release(), timeout=2)
            except Exception as exc:  # the lease lapses on its own
                log.debug("releasing the %s lease: %s", self.name, exc)
        capture, self.capture = self.capture, None
        if capture is not None:
            await capture.close()
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except (psycopg.Error, OSError) as exc:  # closing a broken link
                log.debug("closing %s connection: %s", self.name, exc)
        self._conn = None
        self._local = None
        if self._own_client:
            await self.client.close()

    def _ends(self) -> tuple[End, End]:
        """(source, destination)."""
        if self._local is None:
            raise Unavailable(f"{self.name} lane is not connected")
        if self.name == "push":
            return self._local, self.cloud
        return self.cloud, self._local

    def _local_end(self) -> LaneDb:
        if self._local is None:
            raise Unavailable(f"{self.name} lane is not connected")
        return self._local

    # -- schema negotiation ----------------------------------------------------------
    async def _load_schema(self) -> _Schema:
        """The columns both sides have, looked up again after schema_refresh_s or an
        apply error. Uses both ends: only called between pipeline stages."""
        now = time.monotonic()
        fresh = self._schema and now - self._schema.loaded_at < self.settings.schema_refresh_s
        if self._schema and fresh and not self._schema_stale:
            return self._schema
        self._schema_stale = False
        src, dst = self._ends()
        src_columns, revision = await src.columns()
        dst_columns, _ = await dst.columns()
        write: dict[str, list[str]] = {}
        exclude: dict[str, list[str]] = {}
        for table, src_cols in src_columns.items():
            dst_cols = set(dst_columns.get(table, []))
            common = [c for c in src_cols if c in dst_cols and c not in SIDE_ONLY_COLUMNS]
            write[table] = common
            exclude[table] = [c for c in src_cols if c not in common]
        self._schema = _Schema(write, exclude, revision, now)
        return self._schema

    async def _resume(self) -> None:
        """Ask the cloud where it stands: ahead of the slot after a crash between the
        cloud's commit and the slot's confirmation. The stream still starts at the
        slot's position, not the cloud's: the replay, read as one batch ending at the
        cloud's position (answered ``skipped``, see :meth:`_ack`), is what finishes the
        site's acknowledgement of those records before any later change of theirs is
        read; started at the cloud's position, the server would skip it."""
        assert self.capture is not None
        cloud = await self.cloud.position()
        self.capture.replay_until = 0 if cloud is None else lsn_int(cloud)
        if cloud is not None and lsn_int(cloud) > self.capture.confirmed_lsn:
            log.info(
                "%s: the cloud holds the site's WAL up to %s, the slot up to %s: "
                "replaying the difference (skipped there) to finish the site's ack",
                self.name,
                cloud,
                lsn_text(self.capture.confirmed_lsn),
            )

    # -- the steps ---------------------------------------------------------------------
    async def read(self, limit: int | None = None, busy: Sequence[BatchRow] = ()) -> Batch:
        """The next batch at the source, without the records of ``busy`` (the batch in
        flight: a later change of theirs needs that batch's ack first, or it would carry
        a stale base and make a false conflict). Push lane with capture = "wal": what
        the outbox holds first (a resync's rows, records parked for a retry or held back
        as busy), then the WAL decoded straight into a batch."""
        src, _ = self._ends()
        schema = self._schema or await self._load_schema()
        limit = limit or self.settings.batch_size
        skip = [seq for r in busy for seq in r.seqs]
        if self.capture is None or self._local is None or self._conn is None:
            return Batch(await src.read(self.name, limit, schema.exclude, skip))
        busy_keys = {(r.table_name, r.row_id) for r in busy}
        if await self._local.outbox_waiting():
            rows = await src.read(self.name, limit, schema.exclude, skip)
            # A record of a WAL batch has no outbox seq to be skipped by: its outbox
            # row stays for a read after that batch's ack.
            free = [r for r in rows if (r.table_name, r.row_id) not in busy_keys]
            if free or rows:
                return Batch(free)
        async with wrap_errors(f"{self.name}: capture"):
            rows, end = await self.capture.read(
                self._conn, self.name, self.site_id, schema.exclude, limit, busy_keys
            )
        return Batch(rows, end)

    async def _confirm_read(self, batch: Batch) -> None:
        """An empty WAL read, once nothing is in flight: the slot moves past what it
        decoded (bookkeeping, held by the sync switch, deferred to the outbox, other
        databases' WAL)."""
        if not batch and batch.wal_end is not None and self.capture is not None:
            async with wrap_errors(f"{self.name}: capture"):
                await self.capture.confirm(batch.wal_end)

    async def step(self) -> BatchResult | None:
        """Move one batch, read-apply-ack in sequence; None when there was nothing."""
        async with wrap_errors(f"{self.name}: read"):
            await self._load_schema()
            batch = await self.read()
        if not batch:
            await self._confirm_read(batch)
            if self._forget:
                await self._forget_now()
            return None
        result, failures = await self._apply_gated(batch)
        await self._ack(batch, result, failures)
        return result

    async def _schema_now(self) -> None:
        async with wrap_errors(f"{self.name}: schema"):
            await self._load_schema()

    async def _read_ahead(self, busy: Sequence[BatchRow]) -> Batch:
        async with wrap_errors(f"{self.name}: read"):
            return await self.read(busy=busy)

    async def _apply_gated(self, batch: Batch) -> tuple[BatchResult, dict[tuple[str, int], str]]:
        held: dict[tuple[str, int], str] = {}
        if self.blob_gate is not None:
            held = await self.blob_gate(batch)
        to_apply = Batch((r for r in batch if (r.table_name, r.row_id) not in held), batch.wal_end)
        result, failures = await self._apply(to_apply)
        failures.update({key: f"waiting: {why}" for key, why in held.items()})
        return result, failures

    async def _apply(self, batch: Batch) -> tuple[BatchResult, dict[tuple[str, int], str]]:
        async with wrap_errors(f"{self.name}: apply"):
            try:
                return await self._apply_batch(batch, one_by_one=False)
            except (psycopg.Error, ApplyFailed) as exc:
                if isinstance(exc, psycopg.Error) and not is_data_error(exc):
                    raise
                log.warning(
                    "%s: batch of %d failed (%s); applying record by record",
                    self.name,
                    len(batch),
                    first_line(exc),
                )
                self._schema_stale = True  # a schema change is one cause; look again
            return await self._apply_batch(batch, one_by_one=True)

    async def _apply_batch(
        self, batch: Batch, one_by_one: bool
    ) -> tuple[BatchResult, dict[tuple[str, int], str]]:
        _, dst = self._ends()
        schema = self._schema
        assert schema is not None, "schema is loaded before every apply"
        forgetting = list(self._forget)
        commit_at = max((r.source_commit_at for r in batch), default=None)
        applied = await dst.apply(
            self.name,
            batch,
            schema.write_columns,
            forgetting,
            commit_at,
            schema.source_revision,
            one_by_one,
            None if batch.wal_end is None else lsn_text(batch.wal_end),
        )
        result = BatchResult(rows=len(batch), batch_id=applied.batch_id, skipped=applied.skipped)
        return self._applied(result, list(applied.outcomes), forgetting), dict(applied.failures)

    def _applied(
        self, result: BatchResult, outcome_rows: list[tuple[Any, ...]], forgetting: list[int]
    ) -> BatchResult:
        # An ack running beside this apply may have added ids meanwhile: keep those.
        self._forget = [i for i in self._forget if i not in forgetting]
        result.raw = outcome_rows
        for o in outcome_rows:
            outcome = str(o[3])
            result.outcomes[(str(o[1]), int(o[2]))] = outcome
            if outcome == "apply":
                result.applied += 1
            elif outcome == "duplicate":
                result.duplicates += 1
            else:
                result.conflicts += 1
        return result

    async def _ack(
        self,
        batch: Batch,
        result: BatchResult,
        failures: dict[tuple[str, int], str],
    ) -> None:
        src, _ = self._ends()
        ack_rows: list[dict[str, Any]] = []
        for o in result.raw:
            table, row_id, outcome, revision, conflict = (
                str(o[1]),
                int(o[2]),
                str(o[3]),
                int(o[4]),
                o[5],
            )
            ack_rows.append(
                {
                    "t": table,
                    "id": row_id,
                    "revs": [] if outcome == "conflict" else [revision],
                    "conflict": json.loads(conflict) if conflict else None,
                }
            )
        seqs = [s for r in batch if (r.table_name, r.row_id) in result.outcomes for s in r.seqs]
        by_key = {(r.table_name, r.row_id): r for r in batch}
        parks = [
            Park(
                table_name=key[0],
                row_id=key[1],
                revision=by_key[key].revision,
                reason=reason,
                initial_s=self.settings.dead_letter_initial_s,
                max_s=self.settings.dead_letter_max_s,
            )
            for key, reason in failures.items()
        ]
        wal_end = batch.wal_end
        async with wrap_errors(f"{self.name}: ack"):
            if result.skipped:
                # A replay: the cloud committed this batch before a crash and the site
                # never heard. What the cloud holds of its records now finishes the
                # site's acknowledgement (nothing was applied twice).
                keys = json.dumps([{"t": r.table_name, "id": r.row_id} for r in batch])
                ack_text = await self._ends()[1].recover_rows(keys)
                await src.ack(self.name, seqs, ack_text)
                log.info(
                    "%s: %d records the cloud held already (a replay): acknowledged",
                    self.name,
                    len(batch),
                )
            else:
                await src.ack(
                    self.name, seqs, json.dumps(ack_rows), parks, requeue=wal_end is not None
                )
            if wal_end is not None and self.capture is not None:
                # Last: the slot moves only once the cloud committed and the site
                # acknowledged; a crash before re-reads, and the cloud skips it.
                await self.capture.confirm(wal_end)
        result.parked = len(failures)
        if result.batch_id is not None:
            self._forget.append(result.batch_id)
        self._count(result)

    async def _forget_now(self) -> None:
        _, dst = self._ends()
        forgetting = list(self._forget)
        async with wrap_errors(f"{self.name}: forget"):
            await dst.forget(self.name, forgetting)
        self._forget = [i for i in self._forget if i not in forgetting]

    async def recover(self) -> int:
        """Acknowledge at the source every batch the destination applied but the source
        never heard of (a crash between apply and ack). Returns how many."""
        src, dst = self._ends()
        async with wrap_errors(f"{self.name}: recover"):
            pending = await dst.inbox_pending(self.name)
            for batch_id, seqs in pending:
                keys = await src.outbox_keys(seqs)
                if keys:
                    rows_text = await dst.recover_rows(json.dumps(keys))
                    await src.ack(self.name, seqs, rows_text)
                await dst.forget(self.name, [batch_id])
                log.info("%s: acknowledged batch %s left by an interruption", self.name, batch_id)
        return len(pending)

    async def drain(
        self, should_stop: Callable[[], bool] = lambda: False, op_timeout: float | None = None
    ) -> int:
        """Move batches until the source has nothing visible left; rows moved.

        Pipelined: while batch N is applied at the destination, the source acknowledges
        batch N-1 and reads batch N+1 without N's records (an outbox read skips their
        seqs, a WAL read sends their changes to the outbox, where a read after N's ack
        finds them). The destination still applies one batch after another, each acked
        only after its apply committed, and the slot is told only after the ack, so the
        crash reasoning is unchanged; a crash leaves at most two inbox entries for
        :meth:`recover` (or, from the WAL, two batches the cloud answers skipped).
        A round ends at an empty read; another runs while the last one moved anything
        (what it held back as busy is read then).
        """

        async def timed(what: Awaitable[T]) -> T:
            if op_timeout is None:
                return await what
            try:
                return await asyncio.wait_for(what, timeout=op_timeout)
            except TimeoutError as exc:
                raise Unavailable(f"{self.name}: no answer within {op_timeout} s") from exc

        moved = 0
        while not should_stop():
            moved_now = await self._drain_round(should_stop, timed)
            moved += moved_now
            if not moved_now:
                break
        if self._forget and not should_stop():
            await timed(self._forget_now())
        return moved

    async def _drain_round(
        self,
        should_stop: Callable[[], bool],
        timed: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> int:
        moved = 0
        await timed(self._schema_now())
        batch: Batch = await timed(self._read_ahead(()))
        unacked: _Unacked | None = None
        while batch and not should_stop():
            await timed(self._schema_now())  # nothing else runs on the ends now

            async def source_side(
                previous: _Unacked | None = unacked, busy: Batch = batch
            ) -> Batch:
                if previous is not None:
                    await timed(self._ack(*previous))
                if should_stop():
                    return Batch()
                result: Batch = await timed(self._read_ahead(busy))
                return result

            apply_task = asyncio.ensure_future(timed(self._apply_gated(batch)))
            source_task = asyncio.ensure_future(source_side())
            try:
                (result, failures), ahead = await asyncio.gather(apply_task, source_task)
            except BaseException:
                for task in (apply_task, source_task):
                    task.cancel()
                await asyncio.gather(apply_task, source_task, return_exceptions=True)
                raise
            unacked = (batch, result, failures)
            moved += len(batch)
            batch = ahead
        if unacked is not None:
            await timed(self._ack(*unacked))
        if batch and batch.wal_end is not None and self.capture is not None:
            # Read from the WAL and not applied (a stop): the stream goes back to the
            # slot's position, or a later confirmation would pass over it.
            async with wrap_errors(f"{self.name}: capture"):
                await timed(self.capture.rewind())
        else:
            await timed(self._confirm_read(batch))
        return moved

    # -- metrics -------------------------------------------------------------------
    def _count(self, result: BatchResult) -> None:
        self.metrics.inc(m.BATCHES, lane=self.name)
        for outcome, n in (
            ("apply", result.applied),
            ("duplicate", result.duplicates),
            ("conflict", result.conflicts),
        ):
            if n:
                self.metrics.inc(m.ROWS, n, lane=self.name, outcome=outcome)
        if result.parked:
            self.metrics.inc(m.DEAD_LETTERS, result.parked, lane=self.name)

    async def refresh_metrics(self) -> None:
        """Outbox depth and lag of this lane's source; open conflicts of the site."""
        src, _ = self._ends()
        async with wrap_errors(f"{self.name}: metrics"):
            depth, lag = await src.outbox_depth()
            conflicts = await self._local_end().conflicts_open()
        self.metrics.set(m.OUTBOX_DEPTH, depth, lane=self.name)
        self.metrics.set(m.LAG_SECONDS, lag or 0.0, lane=self.name)
        self.metrics.set(m.CONFLICTS_OPEN, conflicts)
        if self.capture is not None and self._conn is not None:
            async with wrap_errors(f"{self.name}: metrics"):
                slot = await self.capture.status(self._conn)
            self.metrics.set(m.CAPTURE_RETAINED, float(slot.retained_bytes or 0))
            if slot.confirmed_lsn is not None:
                self.metrics.set(m.CAPTURE_CONFIRMED_LSN, float(lsn_int(slot.confirmed_lsn)))
            self.metrics.set(m.CAPTURE_UNCONFIRMED, float(slot.unconfirmed_bytes or 0))
            self.metrics.set(
                m.CAPTURE_SAFE, 1.0 if slot.wal_status in ("reserved", "extended") else 0.0
            )
        self.last_metrics_at = time.monotonic()
