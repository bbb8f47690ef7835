"""The site's change capture from its WAL (the replicator's setting ``capture = "wal"``).

SPEC, "Change capture and replication": the site's own changes are not written twice on
the writer's path (``scsync_node.capture = 'wal'``: the statement-level triggers write
only the API events); the push lane reads the site's committed changes from a logical
replication slot (built-in ``pgoutput``, the publication ``scsync_capture`` over the
synced tables) on a streaming replication connection and turns each run of decoded
transactions straight into a push batch (``scsync_capture_read``,
schema/sql/r0003_wal_direct_local.sql: the outbox read's rows and rules over keys taken
from the WAL, the site's history rows of those revisions written set-based): no spool,
no outbox row per change.

Exactly once across crashes: the batch carries the end LSN of its last transaction; the
cloud stores it in the apply's own transaction and answers a batch at or before it
``skipped`` (a replay). The site's acknowledgement follows the cloud's commit, and only
then is the slot told (standby status update), so a crash at any step re-reads from the
slot, the cloud skips what it holds, and the lane finishes the site's acknowledgement
from what the cloud holds (replicator/lane.py). The replicator's own writes on the site
(pull applies, acks) run under a replication origin named ``scsync_*`` and are skipped.

Slot health: startup refuses a database without ``wal_level = logical`` (one line
saying what to set); a slot that is gone or lost (``wal_status = 'lost'``) is made
again and the rows whose ``synced`` is false since capture began go to the outbox from
the tables themselves (the lane reads it before the stream), with a warning: never a
silent gap.

Streaming rather than ``pg_logical_slot_peek_changes``: the SQL functions decode again
from the slot's ``restart_lsn`` on every call (it moves only every ~15 s), so a backlog
read in calls is decoded many times over (notes/capture-findings.md). psycopg speaks
the replication sub-protocol through libpq's COPY BOTH functions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import re
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import pq, sql

from replicator.errors import SettingsError, Unavailable
from replicator.pgoutput import JSON_TYPES, Reader, Transaction
from schema.database import named
from schema.lanes import BatchRow

log = logging.getLogger(__name__)

PUBLICATION = "scsync_capture"
ORIGIN_PREFIX = "scsync_"
_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Changes decoded into one batch at most (whole source transactions are kept together,
# so one may exceed it).
READ_MAX = 5_000

Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def slot_name(dbname: str) -> str:
    """The site database's slot (slots are per cluster, named; one per database)."""
    return ("scsync_" + re.sub(r"[^a-z0-9_]", "_", dbname.lower()))[:63]


def lsn_int(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass(frozen=True)
class CaptureStatus:
    """What ``scsync status`` and the metrics show of the site's capture."""

    mode: str  # "triggers" or "wal"
    slot: str | None
    active: bool
    wal_status: str | None  # reserved, extended, unreserved, lost
    retained_bytes: int | None
    confirmed_lsn: str | None  # the slot's: the cloud committed and the site acked up to it
    unconfirmed_bytes: int | None  # the WAL past it (the whole cluster's)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "slot": self.slot,
            "active": self.active,
            "wal_status": self.wal_status,
            "retained_bytes": self.retained_bytes,
            "confirmed_lsn": self.confirmed_lsn,
            "unconfirmed_bytes": self.unconfirmed_bytes,
        }


def capture_status_of(row: Any) -> CaptureStatus:
    """A ``capture_status`` row (schema/sql/queries_replicator.sql)."""
    if row is None:
        return CaptureStatus("triggers", None, False, None, None, None, None)
    return CaptureStatus(
        str(row[0]),
        None if row[1] is None else str(row[1]),
        bool(row[2]),
        None if row[3] is None else str(row[3]),
        None if row[4] is None else int(str(row[4])),
        None if row[5] is None else str(row[5]),
        None if row[1] is None or row[6] is None else int(str(row[6])),
    )


async def origin_session(conn: Conn, name: str) -> None:
    """Tag every later transaction of ``conn`` with the replication origin
    ``scsync_<name>_<database oid>`` (made when missing): the capture skips it, so the
    replicator's own writes on the site never go back out. Needs superuser or EXECUTE
    on the pg_replication_origin_* functions (docs/operations.md)."""
    origin = ORIGIN_PREFIX + name
    try:
        cur = await conn.execute(named("capture_origin_setup"), {"origin": origin})
        await cur.fetchall()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise SettingsError(
            "the replicator's database role may not use replication origins: make it a "
            "superuser or GRANT EXECUTE ON FUNCTION pg_replication_origin_create(text), "
            "pg_replication_origin_oid(text), pg_replication_origin_session_setup(text) "
            f"to it ({str(exc).strip()})"
        ) from exc


async def check_settings(conn: Conn) -> None:
    """Refuse a database that cannot decode its WAL, in one line saying what to set."""
    cur = await conn.execute(named("capture_settings"))
    row = await cur.fetchone()
    assert row is not None
    wal_level, slots = str(row[0]), int(str(row[1]))
    if wal_level != "logical":
        raise SettingsError(
            f"the site database has wal_level = {wal_level}: set wal_level = logical in "
            "postgresql.conf (and max_replication_slots >= 2, max_wal_senders >= 2) and "
            "restart PostgreSQL; the replicator reads the site's changes from its WAL"
        )
    if slots < 1:
        raise SettingsError("the site database has max_replication_slots = 0: set it to 2 or more")


class WalCapture:
    """The push lane's source of changes: the slot, streamed, read into push batches."""

    def __init__(self, conninfo: str, connect_timeout: int, op_timeout: float) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self.op_timeout = op_timeout
        self.slot = ""
        # The slot's confirmed position: what the cloud committed and the site acked.
        self.confirmed_lsn = 0
        # The cloud's position when it is ahead of the slot (a crash after the cloud's
        # commit): the stream's first batches end exactly there (see read).
        self.replay_until = 0
        # How far the stream has been read into batches: ahead of the confirmed
        # position while batches are in flight (the pipelined drain).
        self.read_lsn = 0
        self._stream: Conn | None = None
        self._reader = Reader()
        self._status_at = 0.0
        self._carry: list[Transaction] = []  # decoded, for the next batch

    # -- the slot -----------------------------------------------------------------
    async def open(self, conn: Conn) -> None:
        """Check the database, make the slot if it is missing (resync what it would
        have missed), start streaming from the slot's confirmed position."""
        await check_settings(conn)
        found = await self._find_slot(conn)
        if found is None or found[0] == "lost":
            known = (await self._state(conn)) is not None
            await self._make_slot(conn, lost=found is not None, known=known)
            found = await self._find_slot(conn)
            assert found is not None
        self.confirmed_lsn = lsn_int(found[1]) if found[1] else 0
        await self._start_stream()

    async def retire(self, conn: Conn) -> None:
        """Back to the triggers (``capture = "triggers"`` after ``"wal"``): the triggers
        write the outbox again from now on, the rows not synced yet go to the outbox
        from the tables (what the slot still holds of them: the resync's path), and the
        slot goes (it would keep the site's WAL for ever)."""
        await conn.execute(named("capture_mode_set"), {"mode": "triggers"})
        found = await self._find_slot(conn)
        if found is not None:
            cur = await conn.execute(
                named("capture_resync"), {"slot": self.slot, "lsn": found[1] or "0/0"}
            )
            await cur.fetchall()
            await self._drop_slot(conn)
        await conn.execute(named("capture_forget"))
        log.info("capture: back to the triggers; slot %s dropped", self.slot)

    async def _drop_slot(self, conn: Conn) -> None:
        """Drop the slot; a stream just closed may keep it active for a moment until
        its walsender has exited: a few tries over two seconds."""
        for attempt in range(20):
            try:
                await conn.execute(named("capture_slot_drop"), {"slot": self.slot})
                return
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1)

    async def _find_slot(self, conn: Conn) -> tuple[str, str | None] | None:
        """This database's slot name (kept), its wal_status and confirmed position;
        None: no slot."""
        cur = await conn.execute("SELECT current_database()")
        row = await cur.fetchone()
        assert row is not None
        self.slot = slot_name(str(row[0]))
        cur = await conn.execute(named("capture_slot"), {"slot": self.slot})
        slot = await cur.fetchone()
        if slot is None:
            return None
        return str(slot[0]), None if slot[1] is None else str(slot[1])

    async def _state(self, conn: Conn) -> str | None:
        """The slot the capture state names (None: capture never began here)."""
        cur = await conn.execute(named("capture_state"))
        row = await cur.fetchone()
        assert row is not None, "scsync_capture_state has no row (baseline)"
        return None if row[0] is None else str(row[0])

    async def _make_slot(self, conn: Conn, *, lost: bool, known: bool) -> None:
        if lost:
            log.warning(
                "capture: slot %s lost the WAL it needed (wal_status = lost: past "
                "max_slot_wal_keep_size); making it again and resyncing the unsynced rows",
                self.slot,
            )
            await conn.execute(named("capture_slot_drop"), {"slot": self.slot})
        elif known:
            log.warning(
                "capture: slot %s is gone (dropped by hand?); making it again and "
                "resyncing the unsynced rows",
                self.slot,
            )
        # The slot first, then the triggers stop writing the outbox, then the resync: a
        # change made in between is in both, and crosses twice (the cloud answers the
        # second as a duplicate).
        cur = await conn.execute(named("capture_slot_create"), {"slot": self.slot})
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(named("capture_begin"))
        await conn.execute(named("capture_mode_set"), {"mode": "wal"})
        cur = await conn.execute(named("capture_resync"), {"slot": self.slot, "lsn": str(row[0])})
        resynced = await cur.fetchone()
        n = int(str(resynced[0])) if resynced is not None else 0
        if n:
            log.warning("capture: %d unsynced rows queued from the tables (resync)", n)

    async def status(self, conn: Conn) -> CaptureStatus:
        cur = await conn.execute(named("capture_status"))
        return capture_status_of(await cur.fetchone())

    # -- the stream ---------------------------------------------------------------
    async def _start_stream(self) -> None:
        await self.close()
        conn = await asyncio.wait_for(
            psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                replication="database",
            ),
            timeout=self.connect_timeout + 5,
        )
        self._stream = conn
        self._reader = Reader()
        self._carry = []
        self.read_lsn = self.confirmed_lsn
        command = (
            f"START_REPLICATION SLOT {sql.Identifier(self.slot).as_string(conn)} LOGICAL "
            f"{lsn_text(self.confirmed_lsn)} (proto_version '1', "
            f"publication_names '{PUBLICATION}')"
        )
        pgconn = conn.pgconn
        pgconn.send_query(command.encode())
        await self._flush()
        while True:
            await self._readable(self.op_timeout)
            pgconn.consume_input()
            if pgconn.is_busy():
                continue
            res = pgconn.get_result()
            if res is None:
                raise Unavailable("capture: the stream ended before it started")
            if res.status == pq.ExecStatus.COPY_BOTH:
                return
            message = (res.error_message or b"").decode(errors="replace").strip()
            raise Unavailable(f"capture: START_REPLICATION failed: {message}")

    async def rewind(self) -> None:
        """Stream again from the confirmed position: a batch was read and will not be
        applied (a stop between the read-ahead and its apply); read on past it, the
        next confirmation would pass over changes that never crossed."""
        await self._start_stream()

    async def close(self) -> None:
        conn, self._stream = self._stream, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except (psycopg.Error, OSError) as exc:
                log.debug("closing the capture stream: %s", exc)

    def _conn(self) -> Conn:
        if self._stream is None or self._stream.closed:
            raise Unavailable("capture: the stream is not connected")
        return self._stream

    async def _readable(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        fd = self._conn().pgconn.socket
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_reader(fd, _settle, ready)
        try:
            await asyncio.wait_for(ready, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    async def _flush(self) -> None:
        pgconn = self._conn().pgconn
        while pgconn.flush() == 1:
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()
            fd = pgconn.socket
            loop.add_writer(fd, _settle, ready)
            try:
                await asyncio.wait_for(ready, self.op_timeout)
            finally:
                loop.remove_writer(fd)

    async def _send_status(self, flushed: int, reply: bool = False) -> None:
        now = int((dt.datetime.now(dt.UTC) - _PG_EPOCH).total_seconds() * 1_000_000)
        body = b"r" + struct.pack("!qqqqb", flushed, flushed, flushed, now, 1 if reply else 0)
        if self._conn().pgconn.put_copy_data(body) != 1:
            raise Unavailable("capture: cannot send a status update")
        await self._flush()
        self._status_at = time.monotonic()

    async def _message(self, timeout: float) -> bytes | None:
        """The next CopyData message, or None when none came within ``timeout``."""
        pgconn = self._conn().pgconn
        deadline = time.monotonic() + timeout
        while True:
            n, data = pgconn.get_copy_data(1)
            if n > 0:
                return bytes(data)
            if n < 0:
                res = pgconn.get_result()
                message = b"" if res is None else (res.error_message or b"")
                raise Unavailable(
                    "capture: the stream ended: "
                    + (message.decode(errors="replace").strip() or "no reason given")
                )
            left = deadline - time.monotonic()
            if left <= 0 or not await self._readable(left):
                return None
            pgconn.consume_input()

    # -- reading -------------------------------------------------------------------
    async def read(
        self,
        conn: Conn,
        lane: str,
        site_id: int,
        exclude: dict[str, list[str]],
        max_changes: int = READ_MAX,
        busy: Collection[tuple[str, int]] = (),
    ) -> tuple[list[BatchRow], int]:
        """The next push batch of what committed before this call (up to
        ``max_changes``, whole transactions), and the LSN it reaches (the end of the
        last transaction read; where the last read ended when there was nothing new).
        ``conn``: the lane's own connection to the site database, tagged with its
        origin. ``busy``: the records of the batch in flight, whose changes here go to
        the outbox instead (``scsync_capture_read``). Nothing is confirmed here:
        :meth:`confirm` does that once the batch is done."""
        cur = await conn.execute(named("capture_wal_position"))
        row = await cur.fetchone()
        assert row is not None
        target = lsn_int(str(row[0]))
        if not row[1]:
            # Decoding sees flushed WAL only: with synchronous_commit = off a commit may
            # wait for the WAL writer (up to wal_writer_delay). One synchronous commit
            # of our own flushes everything before it.
            async with conn.transaction():
                await conn.execute(named("capture_flush"))
        await self._send_status(self.confirmed_lsn, reply=True)
        pending, self._carry = self._carry, []
        changes = sum(len(t.changes) for t in pending)
        start = max(self.confirmed_lsn, self.read_lsn)
        seen = max([start, *(t.end_lsn for t in pending)])
        while changes < max_changes:
            msg = await self._message(self.op_timeout)
            if msg is None:
                raise Unavailable(f"capture: no answer from the slot within {self.op_timeout} s")
            if msg[:1] == b"k":
                wal_end, _ts, reply = struct.unpack_from("!qqb", msg, 1)
                if self._reader_idle() and wal_end >= target:
                    if not pending:
                        # Only other WAL (another database, our own writes): nothing to
                        # send, the slot may move on to it.
                        seen = max(seen, wal_end)
                    break
                # Not there yet: ask again, at most every 10 ms (data comes meanwhile).
                if reply or time.monotonic() - self._status_at > 0.01:
                    await self._send_status(self.confirmed_lsn, reply=True)
                continue
            if msg[:1] != b"w":
                continue
            txn = self._reader.feed(memoryview(msg)[25:])
            if txn is None:
                continue
            if txn.end_lsn <= start:
                continue  # confirmed before a restart
            own = txn.origin is not None and txn.origin.startswith(ORIGIN_PREFIX)
            replaying = self.replay_until > seen
            if replaying and txn.end_lsn > self.replay_until:
                # A replay ends exactly where the cloud's position is: the cloud answers
                # it skipped and the site's ack of it is finished before any later
                # change of its records is read (their base is that ack's revision).
                # Everything before this transaction is read: the replay is over.
                if txn.changes and not own:
                    self._carry.append(txn)
                seen = self.replay_until
                break
            seen = max(seen, txn.end_lsn)
            if own:
                continue  # the replicator's own writes
            if txn.changes:
                pending.append(txn)
                changes += len(txn.changes)
            if replaying and txn.end_lsn >= self.replay_until:
                break
        self.read_lsn = seen
        if not pending:
            return [], seen
        cur = await conn.execute(
            named("capture_read"),
            {
                "lane": lane,
                "site_id": site_id,
                "changes": changes_json(pending),
                "exclude": json.dumps(exclude),
                "busy": json.dumps([{"t": t, "id": i} for t, i in busy]),
                "xids": sorted({t.xid for t in pending}),
            },
        )
        return [BatchRow(*r) for r in await cur.fetchall()], seen

    def _reader_idle(self) -> bool:
        return self._reader.open_transaction is None

    async def confirm(self, lsn: int) -> None:
        """Tell the slot that everything up to ``lsn`` is done with (committed at the
        cloud and acknowledged on the site): it may free that WAL."""
        if lsn > self.confirmed_lsn:
            self.confirmed_lsn = lsn
            await self._send_status(lsn)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def changes_json(txns: list[Transaction]) -> str:
    """The changes as ``scsync_capture_read`` takes them: a JSON array of {"t", "op",
    "id", "at", "row"} in commit order; a row's values are JSON strings (the type's text
    form), raw JSON for json/jsonb columns, absent for an unchanged out-of-line value."""
    parts: list[str] = []
    for txn in txns:
        at = json.dumps(txn.commit_time.isoformat())
        for ch in txn.changes:
            fields = []
            types = {c.name: c.type_oid for c in ch.relation.columns}
            for name, value in ch.values.items():
                if value is None:
                    text = "null"
                elif types.get(name) in JSON_TYPES:
                    text = value
                else:
                    text = json.dumps(value)
                fields.append(f"{json.dumps(name)}: {text}")
            parts.append(
                f'{{"t": {json.dumps(ch.relation.name)}, "op": "{ch.op}",'
                f' "id": {json.dumps(ch.values.get("id"))}, "at": {at},'
                f' "row": {{{", ".join(fields)}}}}}'
            )
    return "[" + ",".join(parts) + "]"
