"""The one way a process listens to a scsync database: wake-ups with a probe and
reconnects.

Every listener of scsync has the same needs: a dedicated autocommit connection with
TCP keepalives, LISTEN on its channels, a wake-up when a notification comes and at
least every ``tick_s`` without one (no trigger notifies: what a legacy application
writes wakes nobody, so listeners look for themselves), a liveness probe of the
connection when nothing came, and a reconnect with backoff when it fails. The
notifications are hints without content; a listener never trusts them to be complete:
the first wake after a (re)connect is ``fresh``, meaning that whatever was sent while
nobody listened is lost and the listener should look at everything once.

Used by the replicator's push-lane listener, the API's event listener and relay, the
sync API's outbox listener and lockd's listener for released leases. Pooled connections
(schema.database) get the same keepalives from :func:`keepalive_conninfo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from schema.errors import first_line
from schema.urls import libpq_url

log = logging.getLogger(__name__)

Conn = psycopg.AsyncConnection[Any]

# Notifications taken in one wake at most: a burst of hints costs one look, not one each.
WAKE_BATCH = 500


def keepalive_conninfo(url: str, connect_timeout_s: int, application_name: str) -> str:
    """A libpq conninfo with a bounded connect time and TCP keepalives, so a dead peer
    (cable pulled, traffic dropped) is noticed instead of waited on for ever. ``url``: a
    database URL, or a libpq conninfo already (a pool's, whose settings are kept)."""
    return psycopg.conninfo.make_conninfo(
        libpq_url(url) if "://" in url else url,
        connect_timeout=connect_timeout_s,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        application_name=application_name,
    )


@dataclass(frozen=True)
class Wake:
    """One wake-up of a listener."""

    conn: Conn  # the listening connection, just heard from (for a probe query)
    notes: list[psycopg.Notify] = field(default_factory=list)  # none: the tick passed
    fresh: bool = False  # first wake of a (re)connected listener: hints were lost


@dataclass(frozen=True)
class Listener:
    """Where and how to listen."""

    url: str
    channels: Sequence[str]
    name: str  # application_name, so an operator sees who listens
    tick_s: float
    connect_timeout_s: int = 10
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    # Run on a new connection before it LISTENs (the relay takes its leader lock there).
    on_connect: Callable[[Conn], Awaitable[None]] | None = None
    # Told of each lost connection (a listener may want its readers to look for
    # themselves while it reconnects).
    on_lost: Callable[[BaseException], None] | None = None
    # The liveness probe runs on a quiet tick once nothing was heard for this long (0:
    # on every quiet tick); a listener with a short tick probes less often than it wakes.
    probe_after_s: float = 0.0


async def _next_notes(conn: Conn, timeout: float) -> list[psycopg.Notify]:
    """Up to ``timeout`` for a notification, then those already arrived too."""
    first = [n async for n in conn.notifies(timeout=timeout, stop_after=1)]
    if not first:
        return first
    return first + [n async for n in conn.notifies(timeout=0.0, stop_after=WAKE_BATCH)]


async def wakes(listener: Listener) -> AsyncGenerator[Wake, None]:
    """Wake-ups for ever: one ``fresh`` wake per (re)connect, then one per notification
    burst or tick. Connection failures are logged and retried with backoff; errors of
    the caller's own work between wakes are the caller's."""
    delay = listener.retry_initial_s
    while True:
        conn: Conn | None = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                keepalive_conninfo(listener.url, listener.connect_timeout_s, listener.name),
                autocommit=True,
            )
            if listener.on_connect is not None:
                await listener.on_connect(conn)
            for channel in listener.channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            delay = listener.retry_initial_s
            loop = asyncio.get_running_loop()
            heard = loop.time()
            yield Wake(conn, [], fresh=True)
            while True:
                notes = await _next_notes(conn, listener.tick_s)
                if notes:
                    heard = loop.time()
                elif loop.time() - heard >= listener.probe_after_s:
                    # Liveness: a connection that cannot answer is reconnected.
                    await asyncio.wait_for(conn.execute("SELECT 1"), timeout=10.0)
                    heard = loop.time()
                yield Wake(conn, notes)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            log.warning(
                "listener %s: %s; reconnecting in %.1f s", listener.name, first_line(exc), delay
            )
            if listener.on_lost is not None:
                listener.on_lost(exc)
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                    await asyncio.wait_for(conn.close(), timeout=2)
        await asyncio.sleep(delay)
        delay = min(delay * 2, listener.retry_max_s)
