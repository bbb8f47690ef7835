"""The database end of a lane: the steps of ``schema/sql/baseline_replicator.sql`` on one
psycopg (async) connection, used for a site's local database by the replicator and for
the cloud database by the cloud API's sync endpoints (api/sync.py), which runs them as
the app's own role for the site of the caller's token.

Every transaction starts with the ``prelude`` (if any): the cloud API sets the acting
site there (the functions' wall) and renews the lane's lease, in the same transaction
as the work it guards. Driver errors pass through unchanged: each caller maps them
at its own boundary (the replicator to retry/park, the API to HTTP answers).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Sequence,
)
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg
from psycopg import errors as pg_errors

from schema.database import named
from schema.errors import first_line
from schema.replicating import mark_replicating

LaneName = Literal["push", "pull"]
Side = Literal["local", "cloud"]
Conn = psycopg.AsyncConnection[tuple[Any, ...]]
Prelude = Callable[[Conn], Awaitable[None]]
Key = tuple[str, int]
# (ord, table, row_id, outcome, revision, conflict as JSON text or None)
Outcome = tuple[int, str, int, str, int, str | None]


# Errors after which the same batch may simply be tried again later.
TRANSIENT = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
)
# Their SQLSTATEs, for the translation tables (schema.database.Translation).
TRANSIENT_CODES: tuple[str, ...] = tuple(c.sqlstate for c in TRANSIENT if c.sqlstate)


def is_data_error(exc: BaseException) -> bool:
    """A database error that is about the data of a batch (retrying it unchanged fails
    the same way), as opposed to the connection, a transient lock/timeout or a wall."""
    return (
        isinstance(exc, psycopg.DatabaseError)
        and not isinstance(exc, (psycopg.OperationalError, *TRANSIENT))
        and not isinstance(exc, pg_errors.InsufficientPrivilege)
    )


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

    def to_json(self) -> list[Any]:
        """The row as one line of the sync protocol (api/sync.py)."""
        return [
            self.ord,
            self.seqs,
            self.table_name,
            self.row_id,
            self.op,
            self.revision,
            self.base,
            self.row_data,
            self.source_commit_at.isoformat(),
            self.resolution,
        ]

    @classmethod
    def from_json(cls, value: Any) -> BatchRow:
        """The inverse of :meth:`to_json`; ValueError naming what is wrong."""
        if not isinstance(value, list) or len(value) != 10:
            raise ValueError("a batch row is a JSON array of 10 values")
        o, seqs, table, row_id, op, revision, base, data, commit_at, resolution = value
        ints = (o, row_id, revision) + (() if base is None else (base,))
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ints):
            raise ValueError("ord, row_id, revision and base must be integers")
        if not isinstance(seqs, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in seqs
        ):
            raise ValueError("seqs must be a list of integers")
        if not isinstance(table, str) or op not in ("U", "D"):
            raise ValueError("table must be a string and op 'U' or 'D'")
        if data is not None and not isinstance(data, str):
            raise ValueError("row_data must be JSON text or null")
        if resolution is not None and not isinstance(resolution, str):
            raise ValueError("resolution must be JSON text or null")
        if not isinstance(commit_at, str):
            raise ValueError("source_commit_at must be an ISO timestamp")
        return cls(
            o,
            [int(s) for s in seqs],
            table,
            row_id,
            op,
            revision,
            base,
            data,
            dt.datetime.fromisoformat(commit_at),
            resolution,
        )


@dataclass
class Applied:
    """What the destination did with a batch."""

    outcomes: list[Outcome] = field(default_factory=list)
    batch_id: int | None = None
    # records that could not be applied (one-by-one mode): key -> first line of the error
    failures: dict[Key, str] = field(default_factory=dict)
    # a WAL batch whose end LSN the destination already held (a replay): nothing applied
    skipped: bool = False


@dataclass(frozen=True)
class Park:
    """A record to park in the dead letters with an acknowledgement."""

    table_name: str
    row_id: int
    revision: int
    reason: str
    initial_s: float
    max_s: float


async def _collect(batch: Iterable[BatchRow] | AsyncIterable[BatchRow]) -> list[BatchRow]:
    if isinstance(batch, AsyncIterable):
        return [r async for r in batch]
    return list(batch)


def batch_json(batch: Sequence[BatchRow]) -> str:
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


class LaneDb:
    """One database's end of the lanes of one site, on one autocommit connection."""

    def __init__(
        self, conn: Conn, site_id: int, side: Side, prelude: Prelude | None = None
    ) -> None:
        self.conn = conn
        self.site_id = site_id
        self.side: Side = side
        self.prelude = prelude

    async def _start(self) -> None:
        if self.prelude is not None:
            await self.prelude(self.conn)

    async def lock(self, key: int) -> bool:
        """A session advisory lock (local database only: it dies with the process)."""
        cur = await self.conn.execute(
            named("replicator_lock"), {"key": key, "site_id": self.site_id}
        )
        row = await cur.fetchone()
        return bool(row and row[0])

    async def columns(self) -> tuple[dict[str, list[str]], str | None]:
        """Per synced table its columns, and this database's schema revision."""
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(named("replicator_columns"))
            per_table: dict[str, list[str]] = {}
            for table, column in await cur.fetchall():
                per_table.setdefault(str(table), []).append(str(column))
            cur = await self.conn.execute(named("replicator_schema_revision"))
            rev = await cur.fetchone()
        return per_table, None if rev is None else str(rev[0])

    async def read_iter(
        self, lane: LaneName, limit: int, exclude: dict[str, list[str]], skip: Sequence[int]
    ) -> AsyncGenerator[BatchRow, None]:
        """The next batch, one consistent snapshot (REPEATABLE READ), streamed."""
        async with self.conn.transaction():
            await self.conn.execute(named("sync_isolation_repeatable_read"))
            await self._start()
            async with self.conn.cursor() as cur:
                async for r in cur.stream(
                    named("replicator_read"),
                    {
                        "lane": lane,
                        "site_id": self.site_id,
                        "limit": limit,
                        "exclude": json.dumps(exclude),
                        "skip": list(skip),
                    },
                ):
                    yield BatchRow(*r)

    async def read(
        self, lane: LaneName, limit: int, exclude: dict[str, list[str]], skip: Sequence[int]
    ) -> list[BatchRow]:
        return [r async for r in self.read_iter(lane, limit, exclude, skip)]

    async def apply(
        self,
        lane: LaneName,
        batch: Iterable[BatchRow] | AsyncIterable[BatchRow],
        columns: dict[str, list[str]],
        forget: Sequence[int],
        source_commit_at: dt.datetime | None,
        peer_schema_revision: str | None,
        one_by_one: bool,
        source_lsn: str | None = None,
    ) -> Applied:
        """Apply the batch, with the inbox entry and the cursor, in one transaction. The
        batch goes to the apply as one JSON argument and is staged inside that call, in a
        temp table the call makes itself (baseline_replicator.sql). ``one_by_one``: a
        savepoint per record, those that fail are returned as failures (to be parked)
        instead of failing the batch. ``source_lsn``: a WAL batch's end LSN, stored in
        this transaction; a batch at or before the stored one is a replay, answered
        ``skipped`` with nothing applied (r0003_wal_direct.sql)."""
        rows = await _collect(batch)
        conn = self.conn
        params = {"side": self.side, "columns": json.dumps(columns)}
        result = Applied()
        async with conn.transaction():
            await self._start()
            if source_lsn is not None and rows:
                cur = await conn.execute(
                    named("replicator_claim_lsn"),
                    {"lane": lane, "site_id": self.site_id, "lsn": source_lsn},
                )
                claimed = await cur.fetchone()
                if not (claimed and claimed[0]):
                    result.skipped = True
                    return result
            if not one_by_one:
                if not rows:
                    # Nothing to apply: only forgetting (no inbox entry for an empty batch).
                    if forget:
                        await conn.execute(
                            named("replicator_inbox_forget"),
                            {"lane": lane, "site_id": self.site_id, "batch_ids": list(forget)},
                        )
                    return result
                cur = await conn.execute(
                    named("replicator_apply_batch"),
                    {
                        **params,
                        "lane": lane,
                        "site_id": self.site_id,
                        "seqs": json.dumps([s for r in rows for s in r.seqs]),
                        "forget": list(forget),
                        "source_commit_at": source_commit_at,
                        "peer_schema_revision": peer_schema_revision,
                        "batch": batch_json(rows),
                    },
                )
                out = await cur.fetchall()
                result.outcomes = [_outcome(r) for r in out]
                result.batch_id = int(out[0][6]) if out else None
                return result
            await mark_replicating(conn)
            if forget:
                await conn.execute(
                    named("replicator_inbox_forget"),
                    {"lane": lane, "site_id": self.site_id, "batch_ids": list(forget)},
                )
            await conn.execute(named("replicator_constraints_immediate"))
            for r in rows:
                try:
                    async with conn.transaction():  # a savepoint per record
                        cur = await conn.execute(
                            named("replicator_apply"),
                            {**params, "batch": batch_json([r]), "only_ord": r.ord},
                        )
                        result.outcomes.extend(_outcome(o) for o in await cur.fetchall())
                except psycopg.Error as exc:
                    if not is_data_error(exc):
                        raise
                    result.failures[(r.table_name, r.row_id)] = first_line(exc)
            done = {(o[1], o[2]) for o in result.outcomes}
            seqs = [s for r in rows if (r.table_name, r.row_id) in done for s in r.seqs]
            cur = await conn.execute(
                named("replicator_inbox_add"),
                {
                    "lane": lane,
                    "site_id": self.site_id,
                    "seqs": json.dumps(seqs),
                    "rows": len(done),
                },
            )
            row = await cur.fetchone()
            assert row is not None
            result.batch_id = int(row[0])
            await conn.execute(named("replicator_wake"))
            await conn.execute(
                named("replicator_cursor_advance"),
                {
                    "lane": lane,
                    "site_id": self.site_id,
                    "batch_id": result.batch_id,
                    "source_commit_at": source_commit_at,
                    "rows": len(done),
                    "peer_schema_revision": peer_schema_revision,
                },
            )
        return result

    async def ack(
        self,
        lane: LaneName,
        seqs: Sequence[int],
        rows: str,
        parks: Sequence[Park] = (),
        requeue: bool = False,
    ) -> None:
        """Acknowledge a batch at its source (``rows``: the JSON scsync_replicator_ack
        takes) and park what could not be applied, in one transaction. ``requeue``: the
        batch came from the WAL, so a parked record also goes to the outbox, where its
        retry finds it (the stream does not come back for it)."""
        params = {"lane": lane, "seqs": list(seqs), "rows": rows}
        if not parks and self.prelude is None:
            # One statement is one transaction on this autocommit connection.
            await self.conn.execute(named("replicator_ack"), params)
            return
        async with self.conn.transaction():
            await self._start()
            await self.conn.execute(named("replicator_ack"), params)
            for p in parks:
                await self.conn.execute(
                    named("replicator_park"),
                    {
                        "lane": lane,
                        "table_name": p.table_name,
                        "row_id": p.row_id,
                        "site_id": self.site_id,
                        "revision": p.revision,
                        "reason": p.reason,
                        "initial_s": p.initial_s,
                        "max_s": p.max_s,
                    },
                )
            if requeue and parks:
                keys = [{"t": p.table_name, "id": p.row_id, "revision": p.revision} for p in parks]
                await self.conn.execute(
                    named("capture_requeue"), {"site_id": self.site_id, "keys": json.dumps(keys)}
                )

    async def outbox_waiting(self) -> bool:
        """Whether this site's outbox holds anything (with the WAL capture: a resync's
        rows, records parked for a retry, rows an earlier version left)."""
        cur = await self.conn.execute(named("capture_outbox_waiting"), {"site_id": self.site_id})
        row = await cur.fetchone()
        return bool(row and row[0])

    async def source_lsn(self, lane: LaneName) -> str | None:
        """The source position this destination holds for ``lane`` of the site."""
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(
                named("replicator_source_lsn"), {"lane": lane, "site_id": self.site_id}
            )
            row = await cur.fetchone()
        return None if row is None or row[0] is None else str(row[0])

    async def forget(self, lane: LaneName, batch_ids: Sequence[int]) -> None:
        async with self.conn.transaction():
            await self._start()
            await self.conn.execute(
                named("replicator_inbox_forget"),
                {"lane": lane, "site_id": self.site_id, "batch_ids": list(batch_ids)},
            )

    async def inbox_pending(self, lane: LaneName) -> list[tuple[int, list[int]]]:
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(
                named("replicator_inbox_pending"), {"lane": lane, "site_id": self.site_id}
            )
            pending = await cur.fetchall()
        return [(int(b), [int(s) for s in json.loads(seqs)]) for b, seqs in pending]

    async def outbox_keys(self, seqs: Sequence[int]) -> list[dict[str, Any]]:
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(named("replicator_outbox_keys"), {"seqs": list(seqs)})
            return [{"t": str(t), "id": int(i)} for t, i in await cur.fetchall()]

    async def recover_rows(self, keys: str) -> str:
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(named("replicator_recover_rows"), {"keys": keys})
            got = await cur.fetchone()
        return "[]" if got is None or got[0] is None else str(got[0])

    async def outbox_depth(self) -> tuple[int, float | None]:
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(
                named("replicator_outbox_depth"), {"site_id": self.site_id}
            )
            row = await cur.fetchone()
        if row is None:
            return 0, None
        return int(row[0]), None if row[1] is None else float(row[1])

    async def conflicts_open(self) -> int:
        async with self.conn.transaction():
            await self._start()
            cur = await self.conn.execute(
                named("replicator_conflicts_open"), {"site_id": self.site_id}
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0


def _outcome(r: Sequence[Any]) -> Outcome:
    conflict = r[5]
    if conflict is not None and not isinstance(conflict, str):
        conflict = json.dumps(conflict)
    return (int(r[0]), str(r[1]), int(r[2]), str(r[3]), int(r[4]), conflict)
