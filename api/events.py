"""Live events: a hub per API instance fed by the database (LISTEN/NOTIFY on
``scsync_api_events``) or, on the cloud, by a RabbitMQ fanout exchange.

Every event is a row of ``scsync_api_events`` first (see schema/sql/baseline_api.sql), so
it has an id that grows across instances and can be replayed. With the RabbitMQ bus,
one instance (whoever holds a PostgreSQL advisory lock) relays the database's events
to the exchange; every instance consumes the exchange with its own queue and delivers
to its own subscribers. Redelivered events are dropped by id, so each subscriber gets
each event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg

from api import store
from schema.auth import Principal
from schema.events import EventType
from schema.notifications import Listener, wakes

log = logging.getLogger("scsync.api.events")

CHANNEL: Final = "scsync_api_events"
RELAY_LOCK_KEY: Final = 7308901234567890505
RELAY_NAME: Final = "rabbitmq"
EVENTS: Final = "scsync_api_events"
OUTBOX: Final = "scsync_outbox"
HINT_TYPE: Final = EventType.SYNC_HINT
SEEN_WINDOW: Final = 20_000
# application_name of the listening sessions, so an operator (or a test) can find them.
LISTENER_NAME: Final = "scsync-api-listen"
RELAY_APP_NAME: Final = "scsync-api-relay"
# How often the log is read when nobody woke the listener (a site's legacy writes).
POLL_S: Final = 0.25
# While reading the event log fails, the warning is repeated this often (seconds).
FAILURE_REPEAT_S: Final = 60.0


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    site: int | None
    table: str | None
    record_id: str | None
    patient_id: str | None
    at: str
    data: dict[str, Any]

    @classmethod
    def from_notify(cls, body: dict[str, Any]) -> Event:
        return cls(
            id=int(body["id"]),
            type=str(body["type"]),
            site=body.get("site"),
            table=body.get("table"),
            record_id=body.get("record_id"),
            patient_id=body.get("patient_id"),
            at=str(body.get("at")),
            data=dict(body.get("data") or {}),
        )

    @classmethod
    def from_row(cls, row: store.Row) -> Event:
        return cls(
            id=int(row["id"]),
            type=str(row["type"]),
            site=row["site_id"],
            table=row["table_name"],
            record_id=None if row["row_id"] is None else str(row["row_id"]),
            patient_id=None if row["patient_id"] is None else str(row["patient_id"]),
            at=row["at"].isoformat(),
            data=dict(row["payload"] or {}),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "site": self.site,
            "table": self.table,
            "record_id": self.record_id,
            "patient_id": self.patient_id,
            "at": self.at,
            "data": self.data,
        }


@dataclass(eq=False)
class Subscriber:
    """One WebSocket's interest and its bounded outgoing queue."""

    principal: Principal
    queue: asyncio.Queue[str | None]
    sites: set[int] = field(default_factory=set)
    patients: set[str] = field(default_factory=set)
    records: set[tuple[str, str]] = field(default_factory=set)
    # Event types wanted; empty = all.
    types: set[str] = field(default_factory=set)
    overflowed: bool = False
    delivered: int = 0
    # While a replay runs, live events wait here (id, text) instead of the queue.
    hold: list[tuple[int, str]] | None = None
    # What the last replay sent: an event whose notification arrives after its replay
    # (a loaded listener) is not sent a second time.
    replayed: set[int] = field(default_factory=set)
    # Why the writer closes the socket when it meets the None marker (code, reason).
    close_reason: tuple[int, str] | None = None

    def close_with(self, code: int, reason: str) -> None:
        """Ask the writer to close the socket after what is queued is dropped."""
        self.close_reason = (code, reason)
        self.overflowed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def matches(self, ev: Event) -> bool:
        # The tenant wall first: nothing of another site, whatever was asked for.
        if ev.site is not None and not self.principal.may_access_site(ev.site):
            return False
        if self.types and ev.type not in self.types:
            return False
        if ev.site is None:
            return True
        if ev.site in self.sites:
            return True
        if ev.patient_id is not None and ev.patient_id in self.patients:
            return True
        return (
            ev.table is not None
            and ev.record_id is not None
            and (ev.table, ev.record_id) in self.records
        )

    def offer(self, text: str) -> bool:
        """Queue an event; False (and the subscriber marked overflowed) when full."""
        if self.overflowed:
            return False
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the wake-up that tells the writer to disconnect.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False
        self.delivered += 1
        return True


class SeenIds:
    """The last `window` event ids met: a replay (at least once) or a relay handover
    brings some again, and whoever passes events on drops those."""

    def __init__(self, window: int = SEEN_WINDOW) -> None:
        self.window = window
        self._ids: OrderedDict[int, None] = OrderedDict()

    def __contains__(self, event_id: int) -> bool:
        return event_id in self._ids

    def add(self, event_id: int) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.window:
            self._ids.popitem(last=False)


class Hub:
    """Dispatches events to this instance's subscribers, each event once."""

    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self._seen = SeenIds()
        self.last_id = 0
        self.dispatched = 0

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def unheard(self, newest_id: int | None = None) -> bool:
        """No subscriber here: the events up to ``newest_id`` need not be read; the
        resume point a new client's hello reports still moves on."""
        if self.subscribers:
            return False
        if newest_id is not None:
            self.last_id = max(self.last_id, newest_id)
        return True

    def dispatch(self, ev: Event) -> None:
        if ev.id in self._seen:
            return
        self._seen.add(ev.id)
        self.last_id = max(self.last_id, ev.id)
        self.dispatched += 1
        text: str | None = None
        for sub in list(self.subscribers):
            if ev.id not in sub.replayed and sub.matches(ev):
                if text is None:
                    text = json.dumps(ev.as_dict())
                if sub.hold is not None:
                    sub.hold.append((ev.id, text))
                else:
                    sub.offer(text)


async def events_after(pool: store.Pool, after: int, site: int | None, limit: int) -> list[Event]:
    """The events after client id ``after`` (a batch row fanned out per record, see
    ``scsync_api_events_after`` in schema/sql/baseline_api.sql)."""
    async with store.db_errors(), pool.connection() as conn:
        rows = await store.fetch_all(
            conn, store.q("api_events_after"), {"after": after, "site": site, "limit": limit}
        )
    return [Event.from_row(r) for r in rows]


async def max_event_id(pool: store.Pool) -> int:
    """The newest client event id, a whole batch included (a resume point)."""
    async with store.db_errors(), pool.connection() as conn:
        row = await store.fetch_one(conn, store.q("api_events_max"), {})
    return 0 if row is None else int(row["id"])


async def listen(
    conninfo: str,
    pool: store.Pool,
    on_event: Callable[[Event], Awaitable[None] | None],
    *,
    ready: asyncio.Event | None = None,
    poll_s: float = POLL_S,
    retry_s: float = 1.0,
    unheard: Callable[..., bool] | None = None,
) -> None:
    """Follow the event log for ever: read what is new after each wake-up on the
    channel (a hint without content, sent once per transaction by the code that
    commits) and every ``poll_s`` (the writes that wake nobody: a legacy application's
    on a site, a lease event of another instance that was missed). Reconnects on
    failure and catches up by id, so a listener outage loses nothing (up to 10,000).

    ``unheard(newest_id=None)``: True when nobody would get the events (no subscriber);
    the log is then not read, the listener only learns the newest id (its resume point)
    and tells it back."""
    listener = Listener(
        conninfo,
        [EVENTS],
        LISTENER_NAME,
        tick_s=poll_s,
        retry_initial_s=retry_s,
        retry_max_s=max(retry_s, 10.0),
    )
    last_id: int | None = None
    # A failing read is said once, then once a minute while it lasts (every wake-up
    # tick would say it again: four lines a second), and its end is said too.
    failing_since: float | None = None
    said_at = 0.0
    async with contextlib.aclosing(wakes(listener)) as heard:
        async for w in heard:
            if w.fresh and ready is not None:
                ready.set()
            try:
                if last_id is None or (unheard is not None and unheard()):
                    last_id = await max_event_id(pool)
                    if unheard is not None:
                        unheard(last_id)
                else:
                    for ev in await events_after(pool, last_id, None, 10_000):
                        last_id = max(last_id, ev.id)
                        await _maybe_await(on_event(ev))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The log is read again from last_id at the next wake: nothing is lost.
                now = time.monotonic()
                if failing_since is None or now - said_at >= FAILURE_REPEAT_S:
                    failing_since = failing_since or now
                    said_at = now
                    log.warning(
                        "event listener: reading the log failed for %.0f s (%s); trying at"
                        " every wake-up",
                        now - failing_since,
                        exc,
                    )
            else:
                if failing_since is not None:
                    log.warning(
                        "event listener: reading the log works again after %.0f s",
                        time.monotonic() - failing_since,
                    )
                    failing_since = None


async def _maybe_await(value: Awaitable[None] | None) -> None:
    if value is not None:
        await value


class RabbitBus:
    """The cloud's scale-out bus: a fanout exchange, one exclusive queue per instance,
    and a relay (one leader among the instances) from the database to the exchange."""

    def __init__(self, amqp_url: str, exchange: str, hub: Hub) -> None:
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.hub = hub
        self._connection: Any = None
        self._exchange: Any = None
        self.is_leader = False
        # Who hears the sync wake-ups (api/sync.py's Hints.heard): a site id, or None
        # for "every site" (the relay's listener was away, hints may be lost).
        self.hint_handlers: list[Callable[[int | None], None]] = []

    async def start(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(self.amqp_url, timeout=10)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        self._exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.FANOUT, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self._exchange)
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message: Any) -> None:
        try:
            body = json.loads(message.body)
            if isinstance(body, dict) and body.get("type") == HINT_TYPE:
                site = body.get("site")
                for handler in self.hint_handlers:
                    handler(None if site is None else int(site))
                return
            ev = Event.from_notify(body)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on the event exchange")
            return
        self.hub.dispatch(ev)

    async def publish(self, ev: Event) -> None:
        import aio_pika

        await self._exchange.publish(
            aio_pika.Message(
                json.dumps(ev.as_dict()).encode(),
                content_type="application/json",
                message_id=str(ev.id),
            ),
            routing_key="",
        )

    async def publish_hint(self, site: int | None) -> None:
        """A change of ``site`` (None: of any) committed on the cloud: every instance's
        sync long polls of that site answer. Ids only, like the notifications."""
        import aio_pika

        await self._exchange.publish(
            aio_pika.Message(
                json.dumps({"type": HINT_TYPE, "site": site}).encode(),
                content_type="application/json",
            ),
            routing_key="",
        )

    async def relay(self, conninfo: str, pool: store.Pool, retry_s: float = 1.0) -> None:
        """Become the relay when no other instance is, then move events DB → exchange.

        The advisory lock is held by the relay's own session: when that instance dies
        its connection closes, the lock is freed and another instance takes over from
        the cursor kept in scsync_api_relay (a redelivery is dropped by id downstream).
        """

        async def lead(conn: psycopg.AsyncConnection[Any]) -> None:
            while True:
                cur = await conn.execute(store.q("api_try_leader"), {"key": RELAY_LOCK_KEY})
                row = await cur.fetchone()
                if row is not None and row[0]:
                    self.is_leader = True
                    return
                await asyncio.sleep(retry_s)

        def lost(_exc: BaseException) -> None:
            self.is_leader = False

        # The sync long polls' wake-ups (api/sync.py) ride the same relay: one listener
        # on the database for all instances and all sites.
        listener = Listener(
            conninfo,
            [EVENTS, OUTBOX],
            RELAY_APP_NAME,
            tick_s=POLL_S,
            retry_initial_s=retry_s,
            retry_max_s=max(retry_s, 10.0),
            on_connect=lead,
            on_lost=lost,
        )
        cursor: int | None = None
        async with contextlib.aclosing(wakes(listener)) as heard:
            async for w in heard:
                try:
                    if w.fresh or cursor is None:
                        await self.publish_hint(None)  # hints may have gone unheard meanwhile
                        cursor = await self._relay_cursor(pool)
                    elif any(n.channel == OUTBOX for n in w.notes):
                        # A hint names no site: each instance asks the outbox about the
                        # sites that wait there (api/sync.py).
                        await self.publish_hint(None)
                    events = await events_after(pool, cursor, None, 10_000)
                    for ev in events:
                        await self.publish(ev)
                        cursor = max(cursor, ev.id)
                    if events:
                        await self._advance(pool, cursor)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # The leader keeps its lock; the cursor in scsync_api_relay did not
                    # move past what was published, so the next wake publishes the rest.
                    log.warning("event relay: %s; again at the next wake", exc)
                    cursor = None

    async def _relay_cursor(self, pool: store.Pool) -> int:
        async with store.transaction(pool, wake=False) as conn:
            row = await store.fetch_one(conn, store.q("api_relay_cursor"), {"name": RELAY_NAME})
        return 0 if row is None else int(row["last_event_id"])

    async def _advance(self, pool: store.Pool, event_id: int) -> None:
        async with store.transaction(pool, wake=False) as conn:
            await conn.execute(store.q("api_relay_advance"), {"id": event_id, "name": RELAY_NAME})

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
