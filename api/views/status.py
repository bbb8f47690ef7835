"""Liveness (``/health``) and sync health (``/v1/status``)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from api import state, store
from api.http import (
    ok,
    principal,
    scope,
)
from api.records import (
    to_json_value,
)


async def health(request: web.Request) -> web.Response:
    return ok({"status": "ok", "side": request.app[state.SETTINGS].side})


# --- status -------------------------------------------------------------------------


async def sync_status(request: web.Request) -> web.Response:
    p = principal(request)
    site = scope(p)
    now = dt.datetime.now(dt.UTC)
    async with store.transaction(request.app[state.POOL]) as conn:
        outbox = await store.fetch_one(conn, store.q("api_status_outbox"), {"site": site})
        conflicts = await store.fetch_one(conn, store.q("api_status_conflicts"), {"site": site})
        cursors = await store.fetch_all(conn, store.q("api_status_cursors"), {"site": site})
    assert outbox is not None and conflicts is not None
    oldest = outbox["oldest"]
    hub = request.app[state.HUB]
    bus = request.app.get(state.BUS)
    hints = request.app.get(state.SYNC_HINTS)
    return ok(
        {
            "side": request.app[state.SETTINGS].side,
            "site_id": site,
            "outbox_depth": int(outbox["depth"]),
            "outbox_oldest_age_s": None if oldest is None else (now - oldest).total_seconds(),
            "open_conflicts": int(conflicts["open"]),
            "lanes": [
                {
                    "lane": c["lane"],
                    "site_id": c["site_id"],
                    "rows_applied": int(c["rows_applied"]),
                    "last_applied_at": to_json_value("datetime", c["last_applied_at"]),
                    "lag_s": None
                    if c["last_source_commit_at"] is None or c["last_applied_at"] is None
                    else (c["last_applied_at"] - c["last_source_commit_at"]).total_seconds(),
                }
                for c in cursors
            ],
            "last_event_id": hub.last_id,
            "websocket_clients": len(hub.subscribers),
            "bus": request.app[state.SETTINGS].bus,
            "relay_leader": None if bus is None else bus.is_leader,
            # The cloud's sync long polls at this instance: whether change hints reach
            # it yet, and how many sites' replicators wait here for one.
            "sync_long_polls": None
            if hints is None
            else {"hints_live": hints.live, "sites_waiting": len(hints.events)},
        }
    )
