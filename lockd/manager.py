"""Every lease operation, over psycopg 3 async (procrastinate's "manager").

Each operation is one call of a function of ``baseline_lockd_cloud.sql``: one statement,
one transaction, one round trip, timed only by the database's ``clock_timestamp()``.
This process's clock is used for nothing but its own waiting (``monotonic``, which
tests replace), so a client whose clock is off by an hour gets the same grants and
expiries as one whose clock is right.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from lockd.db import Pool, translate_error
from lockd.errors import BadRequest, LeaseBusy, LockdError, RecordNotFound
from lockd.models import Lease, LeaseEvent, LeaseState, SaveGrant, SaveResult
from lockd.records import PROTECTED, check_changes, check_table, content_of
from schema.database import named
from schema.events import ENDING_LEASE_EVENTS
from schema.notifications import Listener, wakes

log = logging.getLogger(__name__)

# Lease events after which the record may be free.
_ENDING = ENDING_LEASE_EVENTS

# A holder names its site: usernames are unique only within one clinic, so
# "cloud:alice" of two clinics would be one owner (site 0: the vendor's staff).
HOLDER_RE = re.compile(r"^(local|cloud):[0-9]{1,10}/\S{1,120}$")


@dataclass(frozen=True)
class LockdConfig:
    """Lease policy. Every duration is configurable so that tests run in seconds."""

    ttl_s: float = 30.0
    # Idle policy: no user activity (touch/save) for idle_warn_s -> lease.idle_warning;
    # idle_close_s after that warning -> the lease ends with lease.idle_closed.
    idle_warn_s: float | None = 600.0
    idle_close_s: float | None = 300.0
    sweep_interval_s: float = 1.0
    event_retention_s: float = 86400.0
    # A waiting acquire is woken at once by a release through this manager (FIFO, one
    # waiter at a time); releases through other processes are seen by polling at this
    # interval, expiries exactly when the holder's TTL runs out.
    wait_poll_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0.1 <= self.ttl_s <= 86400:
            raise ValueError("ttl_s must be between 0.1 and 86400 seconds")


@dataclass(frozen=True)
class Owner:
    """Who may act on a lease by its id: one holder, or (site tokens) every
    ``local:<site>/...`` holder of one site. ``None`` in the library means "trusted
    caller": the lease id + token alone decide."""

    name: str
    prefix: bool = False

    @classmethod
    def holder(cls, holder: str) -> Owner:
        return cls(holder, False)

    @classmethod
    def site(cls, site_id: int) -> Owner:
        return cls(f"local:{site_id}/", True)


def check_holder(holder: object) -> str:
    if not isinstance(holder, str) or not HOLDER_RE.match(holder):
        raise BadRequest(
            "holder must be 'local:<site>/<user>' or 'cloud:<site>/<user>'", field="holder"
        )
    return holder


def check_row_id(row_id: object) -> int:
    if isinstance(row_id, bool) or not isinstance(row_id, int) or not 0 < row_id < 2**63:
        raise BadRequest("row_id must be a positive 64-bit integer", field="row_id")
    return row_id


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)


class LeaseManager:
    """The lease library. Construct with an open autocommit pool (``lockd.db.make_pool``).

    ``scope_site`` limits an operation to records of one site (403 otherwise); ``None``
    lets a trusted caller (the cloud API acting for a vendor admin) reach every site.
    """

    def __init__(
        self,
        pool: Pool,
        config: LockdConfig | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.config = config or LockdConfig()
        self._monotonic = monotonic
        self._waiters: dict[tuple[str, int], deque[asyncio.Future[None]]] = {}
        # Tokens of leases this manager ended itself (and handed off already), so that
        # their notifications do not wake a second waiter.
        self._handed_off: deque[int] = deque(maxlen=1024)

    async def _call(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(named(name), params)
                row = await cur.fetchone()
        except psycopg.Error as exc:  # PoolTimeout is one too
            raise translate_error(exc) from exc
        assert row is not None and isinstance(row[0], dict)
        return row[0]

    # --- acquire / renew / touch / release / break / get ----------------------------

    async def try_acquire(
        self,
        table: str,
        row_id: int,
        holder: str,
        *,
        scope_site: int | None = None,
        ttl_s: float | None = None,
    ) -> Lease | LeaseState:
        """One attempt: the new Lease, or the LeaseState of the live lease in the way."""
        d = await self._call(
            "lockd_acquire",
            {
                "table": check_table(table),
                "row_id": check_row_id(row_id),
                "scope_site": scope_site,
                "holder": check_holder(holder),
                "ttl_ms": _ms(ttl_s if ttl_s is not None else self.config.ttl_s),
            },
        )
        if d["status"] == "acquired":
            return Lease.from_json(d)
        return LeaseState.from_json({**d, "status": "held"})

    async def acquire(
        self,
        table: str,
        row_id: int,
        holder: str,
        *,
        scope_site: int | None = None,
        ttl_s: float | None = None,
        wait_s: float = 0.0,
    ) -> Lease:
        """Acquire, or wait up to ``wait_s`` seconds for the record to become free.
        Raises LeaseBusy (naming the holder) when it stays taken."""
        deadline = self._monotonic() + max(0.0, wait_s)
        while True:
            got = await self.try_acquire(table, row_id, holder, scope_site=scope_site, ttl_s=ttl_s)
            if isinstance(got, Lease):
                return got
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise LeaseBusy(
                    f"{table}/{row_id} is being edited by {got.holder}",
                    holder=got.holder,
                    expires_in_ms=got.expires_in_ms,
                    editing_by=got.editing_by,
                )
            # Wait for a hand-off from a release in this process, the holder's expiry,
            # or the poll interval (releases elsewhere); jitter keeps pollers apart.
            pause = self.config.wait_poll_s * random.uniform(0.5, 1.5)
            if got.expires_in_ms is not None:
                pause = min(pause, got.expires_in_ms / 1000 + 0.005)
            await self._wait_turn((table, row_id), max(0.001, min(pause, remaining)))

    async def _wait_turn(self, key: tuple[str, int], timeout: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(key, deque())
        queue.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(fut)
            if not queue:
                self._waiters.pop(key, None)

    def queued(self, table: str, row_id: int) -> int:
        """How many acquires of this process wait for the record (in arrival order)."""
        return len(self._waiters.get((table, row_id), ()))

    def _hand_off(self, table: object, row_id: object) -> None:
        """Wake the longest-waiting acquire of this record (one, not all of them)."""
        queue = self._waiters.get((str(table), int(str(row_id))))
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def renew(
        self,
        lease_id: uuid.UUID,
        token: int,
        *,
        owner: Owner | None = None,
        ttl_s: float | None = None,
    ) -> Lease:
        """Heartbeat: extend the lease by its TTL. Not user activity (see ``touch``)."""
        return await self._renew(lease_id, token, owner, ttl_s, activity=False)

    async def touch(self, lease_id: uuid.UUID, token: int, *, owner: Owner | None = None) -> Lease:
        """User activity: clears the idle clock and extends the lease like ``renew``."""
        return await self._renew(lease_id, token, owner, None, activity=True)

    async def _renew(
        self,
        lease_id: uuid.UUID,
        token: int,
        owner: Owner | None,
        ttl_s: float | None,
        *,
        activity: bool,
    ) -> Lease:
        d = await self._call(
            "lockd_renew",
            {
                **_hold_params(lease_id, token, owner),
                "ttl_ms": _ms(ttl_s),
                "activity": activity,
            },
        )
        return Lease.from_json(d)

    async def release(self, lease_id: uuid.UUID, token: int, *, owner: Owner | None = None) -> None:
        """Owner-checked release: a late or replayed release never frees a lease that
        is no longer this one (LeaseNotHeld / LeaseExpired instead)."""
        d = await self._call("lockd_release", _hold_params(lease_id, token, owner))
        self._handed_off.append(int(d["event_seq"]))
        self._hand_off(d["table"], d["row_id"])

    async def force_break(
        self,
        table: str,
        row_id: int,
        *,
        by: str,
        reason: str = "",
        scope_site: int | None = None,
    ) -> dict[str, Any]:
        """Admin: end the record's lease whoever holds it; the token is bumped."""
        d = await self._call(
            "lockd_break",
            {
                "table": check_table(table),
                "row_id": check_row_id(row_id),
                "scope_site": scope_site,
                "by": by,
                "reason": reason,
            },
        )
        self._handed_off.append(int(d["event_seq"]))
        self._hand_off(table, row_id)
        return d

    async def get(self, table: str, row_id: int, *, scope_site: int | None = None) -> LeaseState:
        d = await self._call(
            "lockd_get",
            {"table": check_table(table), "row_id": check_row_id(row_id), "scope_site": scope_site},
        )
        return LeaseState.from_json(d)

    # --- wake-ups from other processes -----------------------------------------------

    async def listen_for_releases(
        self, conninfo: str, stop: asyncio.Event, ready: asyncio.Event | None = None
    ) -> None:
        """Hand records that another process released (or that expired, were broken or
        idle-closed) to this manager's waiting acquires, so that waiting does not depend
        on polling. Reconnects after a lost connection.

        It LISTENs on ``scsync_lease`` only while acquires are waiting here (and 5 s
        after): a listening backend is woken for every lease event of the database,
        which costs both sides CPU that nobody needs when nobody waits. When it starts
        listening it wakes every waiter once, to re-check what was released before."""
        listener = Listener(
            conninfo,
            channels=(),  # LISTEN only while acquires wait: _follow
            name="scsync-lockd-listen",
            tick_s=0.2,  # a first waiter is seen within 0.2 s
            retry_max_s=10.0,
            probe_after_s=30.0,
        )
        follow = asyncio.ensure_future(self._follow(listener, ready))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({follow, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (follow, stopped):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _follow(self, listener: Listener, ready: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        listening = False
        idle_since: float | None = None
        async for w in wakes(listener):
            if w.fresh:
                listening, idle_since = False, None
                if ready is not None:
                    ready.set()
            for note in w.notes:
                self._on_notify(note.payload)
            # A failed (UN)LISTEN is the connection's: the next wake reconnects.
            with contextlib.suppress(psycopg.Error, OSError):
                if self._waiters:
                    idle_since = None
                    if not listening:
                        await w.conn.execute(named("lockd_listen"))
                        listening = True
                        self._wake_all()
                elif listening:
                    idle_since = idle_since or loop.time()
                    if loop.time() - idle_since > 5.0:
                        await w.conn.execute(named("lockd_unlisten"))
                        listening = False

    def _wake_all(self) -> None:
        for queue in list(self._waiters.values()):
            for fut in queue:
                if not fut.done():
                    fut.set_result(None)

    def _on_notify(self, payload: str) -> None:
        try:
            event = json.loads(payload)
            # The notification names the event only (no token, no lease id): what this
            # process released or broke itself it has handed off already, by seq.
            if event.get("event") not in _ENDING or event.get("seq") in self._handed_off:
                return
            self._hand_off(event["table"], event["row_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable lease notification: %.200s", payload)

    # --- sweeper ----------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """Expire leases past TTL, apply the idle policy, prune old events."""
        d = await self._call(
            "lockd_sweep",
            {
                "idle_warn_ms": _ms(self.config.idle_warn_s),
                "idle_close_ms": _ms(self.config.idle_close_s),
                "retention_ms": _ms(self.config.event_retention_s),
            },
        )
        return {k: int(v) for k, v in d.items()}

    async def run_sweeper(self, stop: asyncio.Event) -> None:
        """Sweep every ``sweep_interval_s`` until ``stop`` is set; survives DB outages."""
        while not stop.is_set():
            try:
                await self.sweep()
            except LockdError as exc:
                log.warning("lease sweep failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.sweep_interval_s)

    # --- saves ------------------------------------------------------------------------

    async def save(
        self,
        lease_id: uuid.UUID,
        token: int,
        changes: Mapping[str, Any],
        *,
        table: str | None = None,
        expected_revision: int | None = None,
        save_id: uuid.UUID | None = None,
        owner: Owner | None = None,
    ) -> SaveResult:
        """A fenced save on the cloud DB (one transaction; see scsync_lockd_save).

        ``table`` (when given) validates the change keys before the database is asked;
        the function checks them again, and ownership, liveness and the revision.
        """
        if table is not None:
            changes = check_changes(check_table(table), changes)
        elif not isinstance(changes, Mapping):
            raise BadRequest("changes must be a JSON object", field="changes")
        d = await self._call(
            "lockd_save",
            {
                **_hold_params(lease_id, token, owner),
                "expected_revision": expected_revision,
                "changes": Jsonb(dict(changes)),
                "save_id": save_id,
                "protected": PROTECTED,
            },
        )
        return SaveResult.from_json(d)

    async def rollback(
        self,
        lease_id: uuid.UUID,
        token: int,
        to_revision: int,
        *,
        expected_revision: int | None = None,
        save_id: uuid.UUID | None = None,
        owner: Owner | None = None,
    ) -> SaveResult:
        """Restore the record's content of an older revision, as a new save."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(named("lockd_lease_of"), {"lease_id": lease_id})
                lease_row = await cur.fetchone()
                if lease_row is None:
                    # Let the save function name the reason (not held / expired).
                    changes: dict[str, Any] = {}
                else:
                    table, row_id = str(lease_row[0]), int(lease_row[1])
                    cur = await conn.execute(
                        named("lockd_history_row"),
                        {"table": table, "row_id": row_id, "revision": to_revision},
                    )
                    hist = await cur.fetchone()
                    if hist is None:
                        raise RecordNotFound(
                            f"{table}/{row_id} has no revision {to_revision}", field="revision"
                        )
                    changes = content_of(table, hist[0])
                cur = await conn.execute(
                    named("lockd_save"),
                    {
                        **_hold_params(lease_id, token, owner),
                        "expected_revision": expected_revision,
                        "changes": Jsonb(changes),
                        "save_id": save_id,
                        "protected": PROTECTED,
                    },
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        assert row is not None
        return SaveResult.from_json(row[0])

    async def begin_save(
        self,
        lease_id: uuid.UUID,
        token: int,
        base_revision: int,
        *,
        owner: Owner | None = None,
    ) -> SaveGrant:
        """Fence a save that a site makes on its LOCAL database (docs/lockd.md)."""
        d = await self._call(
            "lockd_begin_save",
            {**_hold_params(lease_id, token, owner), "base_revision": base_revision},
        )
        return SaveGrant.from_json(d)

    async def end_save(
        self,
        lease_id: uuid.UUID,
        token: int,
        new_revision: int,
        changed: bool,
        *,
        owner: Owner | None = None,
    ) -> None:
        """Record the outcome of a local save on the lease (revision, A.B progress)."""
        await self._call(
            "lockd_end_save",
            {
                **_hold_params(lease_id, token, owner),
                "new_revision": new_revision,
                "changed": changed,
            },
        )

    # --- events -----------------------------------------------------------------------

    async def events_since(
        self, after_seq: int, *, site_id: int | None = None, limit: int = 1000
    ) -> list[LeaseEvent]:
        """Logged events after ``after_seq`` (a relay that missed notifications)."""
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    named("lockd_events_since"),
                    {"after_seq": after_seq, "site_id": site_id, "limit": limit},
                )
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            raise translate_error(exc) from exc
        return [
            LeaseEvent(
                seq=int(r[0]),
                event=str(r[2]),
                table=str(r[3]),
                row_id=int(r[4]),
                site_id=int(r[5]),
                holder=str(r[6]),
                token=int(r[7]),
                lease_id=str(r[8]),
                detail={"at": r[1].isoformat(), **(r[9] or {})},
            )
            for r in rows
        ]


def _hold_params(lease_id: uuid.UUID, token: int, owner: Owner | None) -> dict[str, Any]:
    if not isinstance(lease_id, uuid.UUID):
        raise BadRequest("lease_id must be a UUID", field="lease_id")
    if isinstance(token, bool) or not isinstance(token, int):
        raise BadRequest("token must be an integer", field="token")
    return {
        "lease_id": lease_id,
        "token": token,
        "owner": owner.name if owner else None,
        "owner_prefix": owner.prefix if owner else False,
    }
