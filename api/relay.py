"""Local side: lease events of this site that happen in the cloud (a cloud user opens a
record, a lease of a local user expires or gets an idle warning) reach the local
clients too. The local API follows the cloud API's WebSocket with the site's token
(the tenant wall gives it this site's events only) and republishes them in the local
event log; ``last_event_id`` resumes after a reconnect, so nothing is missed while
the link was down (within the cloud's replay bound)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final

import aiohttp

from api import store
from api.events import SeenIds
from schema.events import EventType

log = logging.getLogger("scsync.api.relay")

RELAYED: Final = (
    EventType.LEASE_EXPIRED,
    EventType.LEASE_IDLE_WARNING,
    EventType.RECORD_EDITING,
    EventType.RECORD_RELEASED,
)
# Published by this side's API itself when its own users open and close sessions.
OWN: Final = frozenset({EventType.RECORD_EDITING, EventType.RECORD_RELEASED})


async def follow_cloud(
    cloud_url: str,
    token: str,
    site: int,
    pool: store.Pool,
    *,
    retry_s: float = 1.0,
    connected: asyncio.Event | None = None,
) -> None:
    last: int | None = None
    # The cloud's replay is at least once (events that committed late below `last` come
    # again with those around them): what was republished already is dropped by id.
    relayed = SeenIds()
    url = cloud_url.rstrip("/") + "/ws"
    while True:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(
                    url, headers={"Authorization": f"Bearer {token}"}, heartbeat=20
                ) as ws,
            ):
                hello = await ws.receive_json(timeout=10)
                if last is None:
                    last = int(hello.get("last_event_id") or 0)
                await ws.send_json(
                    {
                        "type": "subscribe",
                        "site": site,
                        "events": list(RELAYED),
                        "last_event_id": last,
                    }
                )
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    ev: dict[str, Any] = json.loads(msg.data)
                    if ev.get("type") == "subscribed" and connected is not None:
                        connected.set()
                    if ev.get("type") not in RELAYED or "id" not in ev:
                        continue
                    ev_id = int(ev["id"])
                    last = max(last, ev_id)
                    if ev_id in relayed:
                        continue
                    await _republish(pool, ev)
                    relayed.add(ev_id)
            log.warning("the cloud closed the event link; reconnecting")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("event link to the cloud failed (%s); retrying", exc)
        await asyncio.sleep(retry_s)


async def _republish(pool: store.Pool, ev: dict[str, Any]) -> None:
    data = dict(ev.get("data") or {})
    if ev["type"] in OWN and data.get("by") == "local":
        return
    data["relayed_from"] = "cloud"
    data["cloud_event_id"] = ev["id"]
    async with store.transaction(pool) as conn:
        await store.publish(
            conn,
            site=ev.get("site"),
            type=str(ev["type"]),
            table=ev.get("table"),
            row_id=None if ev.get("record_id") is None else int(ev["record_id"]),
            patient=None if ev.get("patient_id") is None else int(ev["patient_id"]),
            payload=data,
        )
