"""One lane: the outbox of a source database, applied to a destination database.

``push`` moves the site's local outbox to the cloud, ``pull`` moves the cloud outbox
rows of this site to the local database. Both run the same steps (see
``schema/sql/r0002_replicator.sql`` for the SQL side):

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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import psycopg
from psycopg import IsolationLevel

from replicator import metrics as m
from replicator.db import connect, first_line, is_data_error, wrap_errors
from replicator.errors import LaneBusy, Unavailable
from replicator.metrics import Metrics
from replicator.settings import Settings
from schema.sql import query

log = logging.getLogger(__name__)
T = TypeVar("T")

LaneName = Literal["push", "pull"]
Side = Literal["local", "cloud"]

# Columns that describe one side's own state of a record; they never cross.
SIDE_ONLY_COLUMNS = frozenset(
    {
        "synced",
        "synced_revision",
        "last_synced_at",
        "in_conflict",
        "lifecycle",
        "blob_state",
        "local_path",
    }
)
_LOCK_KEYS: dict[LaneName, int] = {"push": 73020, "pull": 73021}

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass(frozen=True)
class BatchRow:
    """One coalesced record of a batch, as read at the source."""

    ord: int  # the record's lowest outbox seq in this batch: apply order
    seqs: list[int]
    table_name: str
    row_id: int
    op: str  # 'U' (record present, content in row_data) or 'D' (tombstone)
    revision: int
    base: int | None
    row_data: str | None  # JSON text, passed through to COPY unparsed
    source_commit_at: dt.datetime
    resolution: str | None


def _batch_json(batch: Sequence[BatchRow]) -> str:
    """The batch as the apply takes it: a JSON array, each row's content (already JSON
    text from the source) spliced in unparsed."""
    parts = []
    for r in batch:
        head = json.dumps(
            {
                "ord": r.ord,
                "table_name": r.table_name,
                "row_id": r.row_id,
                "op": r.op,
                "revision": r.revision,
                "base": r.base,
            }
        )
        parts.append(
            f'{head[:-1]}, "row_data": {r.row_data or "null"},'
            f' "resolution": {r.resolution or "null"}}}'
        )
    return "[" + ",".join(parts) + "]"


@dataclass
class BatchResult:
    rows: int = 0
    applied: int = 0
    duplicates: int = 0
    conflicts: int = 0
    parked: int = 0
    batch_id: int | None = None
    outcomes: dict[tuple[str, int], str] = field(default_factory=dict)
    # (ord, table, row_id, outcome, revision, conflict JSON) as the apply returned them
    raw: list[tuple[Any, ...]] = field(default_factory=list)


# Hook for the file lanes: given the file-bearing records of a batch, return those that
# must wait (key -> reason), e.g. because their blob is not uploaded yet. They are
# parked like a failed record and retried after the dead-letter delay; the records
# behind them go on. The default holds nothing back.
BlobGate = Callable[[Sequence[BatchRow]], Awaitable[dict[tuple[str, int], str]]]


_Unacked = tuple[list[BatchRow], BatchResult, dict[tuple[str, int], str]]


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
    ) -> None:
        self.name: LaneName = name
        self.settings = settings
        self.site_id = settings.site_id
        self.metrics = metrics or Metrics()
        self.blob_gate = blob_gate
        if name == "push":
            self.source_url, self.dest_url = settings.local_db_url, settings.cloud_db_url
            self.source_side: Side = "local"
            self.dest_side: Side = "cloud"
        else:
            self.source_url, self.dest_url = settings.cloud_db_url, settings.local_db_url
            self.source_side, self.dest_side = "cloud", "local"
        self._src: Conn | None = None
        self._dst: Conn | None = None
        self._schema: _Schema | None = None
        self._schema_stale = False
        self._forget: list[int] = []
        self.last_metrics_at = 0.0

    # -- connections ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return (
            self._src is not None
            and not self._src.closed
            and self._dst is not None
            and not self._dst.closed
        )

    async def open(self) -> None:
        """Connect both sides, take the lane's lock, acknowledge what a crash left over."""
        await self.close()
        timeout = self.settings.connect_timeout_s
        self._src = await connect(
            self.source_url, timeout, f"scsync-{self.name}-src", autocommit=True
        )
        self._dst = await connect(
            self.dest_url, timeout, f"scsync-{self.name}-dst", autocommit=True
        )
        async with wrap_errors(f"{self.name}: open"):
            cur = await self._src.execute(
                query("replicator_lock"), {"key": _LOCK_KEYS[self.name], "site_id": self.site_id}
            )
            row = await cur.fetchone()
            if row is None or not row[0]:
                raise LaneBusy(f"{self.name} lane of site {self.site_id} runs elsewhere")
        self._schema = None
        await self.recover()
        await self._schema_now()

    async def close(self) -> None:
        for conn in (self._src, self._dst):
            if conn is not None and not conn.closed:
                try:
                    await conn.close()
                except (psycopg.Error, OSError) as exc:  # closing a broken link
                    log.debug("closing %s connection: %s", self.name, exc)
        self._src = self._dst = None

    def _conns(self) -> tuple[Conn, Conn]:
        if self._src is None or self._dst is None:
            raise Unavailable(f"{self.name} lane is not connected")
        return self._src, self._dst

    # -- schema negotiation ----------------------------------------------------------
    async def _load_schema(self) -> _Schema:
        """The columns both sides have, looked up again after schema_refresh_s or an
        apply error. Uses both connections: only called between pipeline stages."""
        now = time.monotonic()
        fresh = self._schema and now - self._schema.loaded_at < self.settings.schema_refresh_s
        if self._schema and fresh and not self._schema_stale:
            return self._schema
        self._schema_stale = False
        src, dst = self._conns()
        columns: dict[str, dict[str, list[str]]] = {}
        revision: str | None = None
        for side, conn in (("src", src), ("dst", dst)):
            async with conn.transaction():
                cur = await conn.execute(query("replicator_columns"))
                per_table: dict[str, list[str]] = {}
                for table, column in await cur.fetchall():
                    per_table.setdefault(str(table), []).append(str(column))
                columns[side] = per_table
                if side == "src":
                    cur = await conn.execute(query("replicator_schema_revision"))
                    rev = await cur.fetchone()
                    revision = None if rev is None else str(rev[0])
        write: dict[str, list[str]] = {}
        exclude: dict[str, list[str]] = {}
        for table, src_cols in columns["src"].items():
            dst_cols = set(columns["dst"].get(table, []))
            common = [c for c in src_cols if c in dst_cols and c not in SIDE_ONLY_COLUMNS]
            write[table] = common
            exclude[table] = [c for c in src_cols if c not in common]
        self._schema = _Schema(write, exclude, revision, now)
        return self._schema

    # -- the steps ---------------------------------------------------------------------
    async def read(self, limit: int | None = None, skip: Sequence[int] = ()) -> list[BatchRow]:
        src, _ = self._conns()
        schema = self._schema or await self._load_schema()
        await src.set_isolation_level(IsolationLevel.REPEATABLE_READ)
        try:
            async with src.transaction():
                cur = await src.execute(
                    query("replicator_read"),
                    {
                        "lane": self.name,
                        "site_id": self.site_id,
                        "limit": limit or self.settings.batch_size,
                        "exclude": json.dumps(schema.exclude),
                        "skip": list(skip),
                    },
                )
                rows = await cur.fetchall()
        finally:
            await src.set_isolation_level(None)
        return [BatchRow(*r) for r in rows]

    async def step(self) -> BatchResult | None:
        """Move one batch, read-apply-ack in sequence; None when there was nothing."""
        async with wrap_errors(f"{self.name}: read"):
            await self._load_schema()
            batch = await self.read()
        if not batch:
            if self._forget:
                await self._forget_now()
            return None
        result, failures = await self._apply_gated(batch)
        await self._ack(batch, result, failures)
        return result

    async def _schema_now(self) -> None:
        async with wrap_errors(f"{self.name}: schema"):
            await self._load_schema()

    async def _read_ahead(self, skip: Sequence[int]) -> list[BatchRow]:
        async with wrap_errors(f"{self.name}: read"):
            return await self.read(skip=skip)

    async def _apply_gated(
        self, batch: list[BatchRow]
    ) -> tuple[BatchResult, dict[tuple[str, int], str]]:
        held: dict[tuple[str, int], str] = {}
        if self.blob_gate is not None:
            held = await self.blob_gate(batch)
        to_apply = [r for r in batch if (r.table_name, r.row_id) not in held]
        result, failures = await self._apply(to_apply)
        failures.update({key: f"waiting: {why}" for key, why in held.items()})
        return result, failures

    async def _apply(self, batch: list[BatchRow]) -> tuple[BatchResult, dict[tuple[str, int], str]]:
        async with wrap_errors(f"{self.name}: apply"):
            try:
                return await self._apply_batch(batch, one_by_one=False), {}
            except psycopg.Error as exc:
                if not is_data_error(exc):
                    raise
                log.warning(
                    "%s: batch of %d failed (%s); applying record by record",
                    self.name,
                    len(batch),
                    first_line(exc),
                )
                self._schema_stale = True  # a schema change is one cause; look again
            failures: dict[tuple[str, int], str] = {}
            result = await self._apply_batch(batch, one_by_one=True, failures=failures)
            return result, failures

    async def _apply_batch(
        self,
        batch: list[BatchRow],
        one_by_one: bool,
        failures: dict[tuple[str, int], str] | None = None,
    ) -> BatchResult:
        _, dst = self._conns()
        schema = self._schema
        assert schema is not None, "schema is loaded before every apply"
        result = BatchResult(rows=len(batch))
        outcome_rows: list[tuple[Any, ...]] = []
        params = {"side": self.dest_side, "columns": json.dumps(schema.write_columns)}
        forgetting = list(self._forget)
        commit_at = max((r.source_commit_at for r in batch), default=None)
        if batch and not one_by_one:
            # The common case: everything in one call.
            async with dst.transaction():
                cur = await dst.execute(
                    query("replicator_apply_batch"),
                    {
                        **params,
                        "lane": self.name,
                        "site_id": self.site_id,
                        "seqs": json.dumps([seq for r in batch for seq in r.seqs]),
                        "forget": forgetting,
                        "source_commit_at": commit_at,
                        "peer_schema_revision": schema.source_revision,
                        "batch": _batch_json(batch),
                    },
                )
                outcome_rows = await cur.fetchall()
            result.batch_id = int(outcome_rows[0][6]) if outcome_rows else None
            return self._applied(result, outcome_rows, forgetting)
        async with dst.transaction():
            await dst.execute(query("replicator_replicating"))
            if forgetting:
                await dst.execute(
                    query("replicator_inbox_forget"),
                    {"lane": self.name, "site_id": self.site_id, "batch_ids": forgetting},
                )
            if one_by_one:
                assert failures is not None
                await dst.execute(query("replicator_constraints_immediate"))
                for r in batch:
                    try:
                        async with dst.transaction():  # a savepoint per record
                            cur = await dst.execute(
                                query("replicator_apply"),
                                {**params, "batch": _batch_json([r]), "only_ord": r.ord},
                            )
                            outcome_rows.extend(await cur.fetchall())
                    except psycopg.Error as exc:
                        if not is_data_error(exc):
                            raise
                        failures[(r.table_name, r.row_id)] = first_line(exc)
            done = {(str(o[1]), int(o[2])) for o in outcome_rows}
            seqs = [s for r in batch if (r.table_name, r.row_id) in done for s in r.seqs]
            cur = await dst.execute(
                query("replicator_inbox_add"),
                {
                    "lane": self.name,
                    "site_id": self.site_id,
                    "seqs": json.dumps(seqs),
                    "rows": len(done),
                },
            )
            row = await cur.fetchone()
            assert row is not None
            result.batch_id = int(row[0])
            await dst.execute(
                query("replicator_cursor_advance"),
                {
                    "lane": self.name,
                    "site_id": self.site_id,
                    "batch_id": result.batch_id,
                    "source_commit_at": commit_at,
                    "rows": len(done),
                    "peer_schema_revision": schema.source_revision,
                },
            )
        return self._applied(result, outcome_rows, forgetting)

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
        batch: list[BatchRow],
        result: BatchResult,
        failures: dict[tuple[str, int], str],
    ) -> None:
        src, _ = self._conns()
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
        ack_params = {"lane": self.name, "seqs": seqs, "rows": json.dumps(ack_rows)}
        if not failures:
            # One statement is one transaction on this autocommit connection.
            async with wrap_errors(f"{self.name}: ack"):
                await src.execute(query("replicator_ack"), ack_params)
        else:
            await self._ack_and_park(batch, ack_params, failures)
        result.parked = len(failures)
        if result.batch_id is not None:
            self._forget.append(result.batch_id)
        self._count(result)

    async def _ack_and_park(
        self,
        batch: list[BatchRow],
        ack_params: dict[str, Any],
        failures: dict[tuple[str, int], str],
    ) -> None:
        src, _ = self._conns()
        async with wrap_errors(f"{self.name}: ack"), src.transaction():
            await src.execute(query("replicator_ack"), ack_params)
            by_key = {(r.table_name, r.row_id): r for r in batch}
            for key, reason in failures.items():
                r = by_key[key]
                await src.execute(
                    query("replicator_park"),
                    {
                        "lane": self.name,
                        "table_name": r.table_name,
                        "row_id": r.row_id,
                        "site_id": self.site_id,
                        "revision": r.revision,
                        "reason": reason,
                        "initial_s": self.settings.dead_letter_initial_s,
                        "max_s": self.settings.dead_letter_max_s,
                    },
                )

    async def _forget_now(self) -> None:
        _, dst = self._conns()
        forgetting = list(self._forget)
        async with wrap_errors(f"{self.name}: forget"), dst.transaction():
            await dst.execute(
                query("replicator_inbox_forget"),
                {"lane": self.name, "site_id": self.site_id, "batch_ids": forgetting},
            )
        self._forget = [i for i in self._forget if i not in forgetting]

    async def recover(self) -> int:
        """Acknowledge at the source every batch the destination applied but the source
        never heard of (a crash between apply and ack). Returns how many."""
        src, dst = self._conns()
        async with wrap_errors(f"{self.name}: recover"):
            async with dst.transaction():
                cur = await dst.execute(
                    query("replicator_inbox_pending"), {"lane": self.name, "site_id": self.site_id}
                )
                pending = await cur.fetchall()
            for batch_id, seqs_text in pending:
                seqs = [int(s) for s in json.loads(seqs_text)]
                async with src.transaction():
                    cur = await src.execute(query("replicator_outbox_keys"), {"seqs": seqs})
                    keys = [{"t": str(t), "id": int(i)} for t, i in await cur.fetchall()]
                if keys:
                    async with dst.transaction():
                        cur = await dst.execute(
                            query("replicator_recover_rows"), {"keys": json.dumps(keys)}
                        )
                        got = await cur.fetchone()
                    rows_text = "[]" if got is None else str(got[0])
                    async with src.transaction():
                        await src.execute(query("replicator_replicating"))
                        await src.execute(
                            query("replicator_ack"),
                            {"lane": self.name, "seqs": seqs, "rows": rows_text},
                        )
                async with dst.transaction():
                    await dst.execute(
                        query("replicator_inbox_forget"),
                        {"lane": self.name, "site_id": self.site_id, "batch_ids": [batch_id]},
                    )
                log.info("%s: acknowledged batch %s left by an interruption", self.name, batch_id)
        return len(pending)

    async def drain(
        self, should_stop: Callable[[], bool] = lambda: False, op_timeout: float | None = None
    ) -> int:
        """Move batches until the source has nothing visible left; rows moved.

        Pipelined: while batch N is applied at the destination, the source acknowledges
        batch N-1 and reads batch N+1 (skipping N's seqs, which stay in the outbox until
        their ack). The destination still applies one batch after another, each acked
        only after its apply committed, so the crash reasoning is unchanged; a crash
        leaves at most two inbox entries for :meth:`recover`.
        """

        async def timed(what: Awaitable[T]) -> T:
            if op_timeout is None:
                return await what
            try:
                return await asyncio.wait_for(what, timeout=op_timeout)
            except TimeoutError as exc:
                raise Unavailable(f"{self.name}: no answer within {op_timeout} s") from exc

        moved = 0
        await timed(self._schema_now())
        batch = await timed(self._read_ahead(()))
        unacked: _Unacked | None = None
        while batch and not should_stop():
            in_flight = [seq for r in batch for seq in r.seqs]
            await timed(self._schema_now())  # nothing else runs on the connections now

            async def source_side(
                previous: _Unacked | None = unacked, in_flight: list[int] = in_flight
            ) -> list[BatchRow]:
                if previous is not None:
                    await timed(self._ack(*previous))
                if should_stop():
                    return []
                return await timed(self._read_ahead(in_flight))

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
        if self._forget and not should_stop():
            await timed(self._forget_now())
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
        src, dst = self._conns()
        local = src if self.source_side == "local" else dst
        async with wrap_errors(f"{self.name}: metrics"):
            async with src.transaction():
                cur = await src.execute(query("replicator_outbox_depth"), {"site_id": self.site_id})
                depth_row = await cur.fetchone()
            async with local.transaction():
                cur = await local.execute(
                    query("replicator_conflicts_open"), {"site_id": self.site_id}
                )
                conflicts_row = await cur.fetchone()
        depth = int(depth_row[0]) if depth_row else 0
        lag = float(depth_row[1]) if depth_row and depth_row[1] is not None else 0.0
        self.metrics.set(m.OUTBOX_DEPTH, depth, lane=self.name)
        self.metrics.set(m.LAG_SECONDS, lag, lane=self.name)
        self.metrics.set(m.CONFLICTS_OPEN, int(conflicts_row[0]) if conflicts_row else 0)
        self.last_metrics_at = time.monotonic()
