"""WebSocket ``/ws``: live events for a site, a patient or a list of records.

Protocol (JSON text frames):

- connect with ``Authorization: Bearer <JWT>`` or ``?token=<JWT>`` (or send
  ``{"type": "auth", "token": ...}`` first, within 10 s); optional
  ``?last_event_id=N`` replays what was missed at the first subscribe (at least once:
  events that committed late with an id below N come too, and may repeat ones the
  client has; it drops ids it has seen).
- client: ``{"type": "subscribe", "site": 1}``, ``{"type": "subscribe", "patient_id":
  "..."}``, ``{"type": "subscribe", "records": [{"table": "images", "id": "..."}]}``
  (keys may be combined; ``last_event_id`` may be given here too; ``"events":
  ["record.changed", ...]`` limits the event types, default all),
  ``{"type": "unsubscribe", ...}`` with the same keys, ``{"type": "ping"}``.
- server: ``hello``, ``subscribed``, ``pong``, ``error``, ``replay.truncated`` and the
  events themselves (``{"id", "type": "record.changed", "site", "table", "record_id",
  "patient_id", "at", "data"}``).

A client that does not keep up has a bounded queue; when it fills, the server closes
the socket with code 4008 and the reason ``slow consumer``. A socket whose token
expires or is revoked (account deleted or disabled, site disabled) is closed with code
4401 and the reason ``unauthorized: token expired`` / ``unauthorized: token revoked:
...`` (revocation within the setting ``revocation_check_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Final

import jwt
from aiohttp import WSCloseCode, WSMsgType, web

from api import state
from api.errors import ApiError, Unauthorized, ValidationFailed
from api.events import Event, Subscriber, events_after
from api.http import check_revoked, verify
from api.records import parse_id, table_spec
from schema import jsonbody
from schema.auth import AuthError, Principal, bearer

log = logging.getLogger("scsync.api.ws")

CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW: Final = 4008
AUTH_TIMEOUT_S: Final = 10.0
MAX_MESSAGE: Final = 64 * 1024
MAX_RECORDS: Final = 1000


class _Session:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, sub: Subscriber) -> None:
        self.request = request
        self.ws = ws
        self.sub = sub
        self.pending_replay: int | None = None
        self.writer: asyncio.Task[None] | None = None

    def send(self, message: dict[str, Any]) -> None:
        self.sub.offer(json.dumps(message))

    def error(self, code: str, message: str) -> None:
        self.send({"type": "error", "error": code, "message": message})

    async def handle(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ping":
            self.send({"type": "pong"})
        elif kind in ("subscribe", "unsubscribe"):
            await self.subscribe(msg, add=kind == "subscribe")
        elif kind == "auth":
            self.error("already_authenticated", "this connection is already authenticated")
        else:
            self.error("bad_message", f"unknown message type {kind!r}")

    async def subscribe(self, msg: dict[str, Any], add: bool) -> None:
        p = self.sub.principal
        sites: set[int] = set()
        patients: set[str] = set()
        records: set[tuple[str, str]] = set()
        try:
            if "site" in msg:
                site = msg["site"]
                if isinstance(site, bool) or not isinstance(site, int):
                    raise ApiError("site must be an integer", field="site")
                if not p.may_access_site(site):
                    self.error("forbidden", "site is not yours")
                    return
                sites.add(site)
            if "patient_id" in msg:
                patients.add(str(parse_id(msg["patient_id"], "patient_id")))
            if "records" in msg:
                items = msg["records"]
                if not isinstance(items, list) or len(items) > MAX_RECORDS:
                    raise ApiError("records must be a list (at most 1000)", field="records")
                side = self.request.app[state.SETTINGS].side
                for item in items:
                    if (
                        not isinstance(item, dict)
                        or table_spec(side, item.get("table", "")) is None
                    ):
                        raise ApiError("each record is {table, id}", field="records")
                    records.add((item["table"], str(parse_id(item.get("id"), "id"))))
            types = msg.get("events")
            if types is not None and (
                not isinstance(types, list) or not all(isinstance(t, str) for t in types)
            ):
                raise ApiError("events must be a list of event types", field="events")
            last = msg.get("last_event_id", self.pending_replay)
            if last is not None and (
                isinstance(last, bool) or not isinstance(last, int) or not 0 <= last < 2**63
            ):
                raise ApiError("last_event_id must be an integer", field="last_event_id")
        except ApiError as exc:
            self.error("bad_message", exc.message)
            return
        cap = self.request.app[state.SETTINGS].ws_max_subscriptions
        if add and (
            len(self.sub.sites | sites)
            + len(self.sub.patients | patients)
            + len(self.sub.records | records)
            > cap
        ):
            self.error(
                "too_many_subscriptions",
                f"a socket holds at most {cap} subscriptions (sites, patients and records);"
                " nothing was added",
            )
            return
        if add and types is not None:
            self.sub.types = set(types)
        if add:
            self.sub.sites |= sites
            self.sub.patients |= patients
            self.sub.records |= records
        else:
            self.sub.sites -= sites
            self.sub.patients -= patients
            self.sub.records -= records
        replayed, truncated = 0, False
        if add and last is not None:
            self.pending_replay = None
            replayed, truncated = await self.replay(last)
        self.send(
            {
                "type": "subscribed",
                "sites": sorted(self.sub.sites),
                "patients": sorted(self.sub.patients),
                "records": [{"table": t, "id": i} for t, i in sorted(self.sub.records)],
                "events": sorted(self.sub.types),
                "replayed": replayed,
                "truncated": truncated,
            }
        )

    async def replay(self, after: int) -> tuple[int, bool]:
        """Send what matches since `after`, holding live events back meanwhile so the
        client sees every event once and in id order. The replay waits for the client
        to take what is queued (it is never cut off as a slow consumer for it); when
        more than ``ws_replay_limit`` events, or more live ones than its queue holds,
        pile up meanwhile, it is told to reload (``replay.truncated``, ``reload``)."""
        app = self.request.app
        limit = app[state.SETTINGS].ws_replay_limit
        held: list[tuple[int, str]] = []
        self.sub.hold = held
        count, truncated = 0, False
        try:
            p = self.sub.principal
            site = None if p.is_vendor_admin else p.site_id
            events = await events_after(app[state.POOL], after, site, limit + 1)
            truncated = len(events) > limit
            if truncated:
                await self._put(self._reload(after, limit))
            sent_ids: set[int] = set()
            self.sub.replayed = sent_ids  # filled as they are sent
            for ev in events[:limit]:
                if len(held) > self.sub.queue.maxsize:
                    truncated = True
                    held.clear()
                    await self._put(self._reload(after, limit))
                    break
                if self.sub.matches(ev):
                    sent_ids.add(ev.id)
                    await self._put(json.dumps(ev.as_dict()))
                    count += 1
            # Live events of the meantime; new ones join `held` until it is empty.
            while held:
                if len(held) > self.sub.queue.maxsize:
                    truncated = True
                    held.clear()
                    await self._put(self._reload(after, limit))
                    break
                ev_id, text = held.pop(0)
                if ev_id not in sent_ids:
                    await self._put(text)
        except _Gone:
            pass
        finally:
            self.sub.hold = None
        return count, truncated

    def _reload(self, after: int, limit: int) -> str:
        return json.dumps(
            {"type": "replay.truncated", "after": after, "limit": limit, "reload": True}
        )

    async def _put(self, text: str) -> None:
        """Queue ``text``, waiting while the client's queue is full (back-pressure);
        _Gone when the socket's writer has ended."""
        while True:
            if self.sub.overflowed or (self.writer is not None and self.writer.done()):
                raise _Gone
            try:
                await asyncio.wait_for(self.sub.queue.put(text), 1.0)
            except TimeoutError:
                continue
            self.sub.delivered += 1
            return


class _Gone(Exception):
    """The socket went away during a replay."""


async def _writer(ws: web.WebSocketResponse, sub: Subscriber) -> None:
    while True:
        text = sub.queue.get_nowait() if not sub.queue.empty() else await sub.queue.get()
        if text is None:
            code, reason = sub.close_reason or (
                CLOSE_SLOW,
                f"slow consumer: more than {sub.queue.maxsize} events queued",
            )
            await ws.close(code=code, message=reason.encode())
            return
        await ws.send_str(text)


def _expires_at(token: str) -> float | None:
    """The verified token's ``exp`` (read again without checks: it was just verified)."""
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return float(exp) if isinstance(exp, int | float) else None


async def _watch_token(request: web.Request, sub: Subscriber, at: float | None) -> None:
    """Close the socket when its token expires, or once it is revoked (checked every
    revocation_check_s; a database that does not answer leaves the socket open)."""
    interval = max(0.1, request.app[state.SETTINGS].revocation_check_s or 1.0)
    while True:
        left = None if at is None else at - time.time()
        if left is not None and left <= 0:
            sub.close_with(CLOSE_UNAUTHORIZED, "unauthorized: token expired")
            return
        await asyncio.sleep(interval if left is None else min(interval, left))
        if at is not None and time.time() >= at:
            continue
        try:
            await check_revoked(request, sub.principal)
        except Unauthorized as exc:
            sub.close_with(CLOSE_UNAUTHORIZED, f"unauthorized: {exc.message}"[:120])
            return
        except ApiError:
            log.warning("cannot check a WebSocket token for revocation (database)")


async def _authenticate_first_message(
    request: web.Request, ws: web.WebSocketResponse
) -> tuple[Principal, str] | None:
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized: no auth message")
        return None
    if msg.type != WSMsgType.TEXT:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized: expected auth message")
        return None
    try:
        body = jsonbody.loads(msg.data)
        if not isinstance(body, dict) or body.get("type") != "auth":
            raise Unauthorized("expected {type: auth, token}")
        token = str(body.get("token", ""))
        p = verify(request, token)
        await check_revoked(request, p)
        return p, token
    except (ValueError, ApiError) as exc:
        reason = exc.message if isinstance(exc, ApiError) else "malformed auth message"
        await ws.close(code=CLOSE_UNAUTHORIZED, message=f"unauthorized: {reason}"[:120].encode())
        return None


async def websocket(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[state.SETTINGS]
    p: Principal | None = None
    token = request.query.get("token", "")
    header = request.headers.get("Authorization")
    if header and "token" not in request.query:
        try:
            token = bearer(header)
        except AuthError as exc:
            raise Unauthorized(str(exc)) from exc
    if token or "token" in request.query:
        p = verify(request, token)  # 401 before the upgrade
        await check_revoked(request, p)
    last_raw = request.query.get("last_event_id")
    last: int | None = None
    if last_raw is not None:
        try:
            last = int(last_raw)
        except ValueError:
            last = -1
        if not 0 <= last < 2**63:
            raise ValidationFailed(
                "last_event_id must be an event id (a non-negative integer)",
                field="last_event_id",
            )
    ws = web.WebSocketResponse(heartbeat=settings.ws_heartbeat_s, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    app[state.WEBSOCKETS].add(ws)
    if p is None:
        got = await _authenticate_first_message(request, ws)
        if got is None:
            return ws
        p, token = got
    sub = Subscriber(principal=p, queue=asyncio.Queue(maxsize=settings.ws_queue_size))
    session = _Session(request, ws, sub)
    session.pending_replay = last
    hub = app[state.HUB]
    hub.add(sub)
    writer = asyncio.create_task(_writer(ws, sub))
    session.writer = writer
    # A token is good until it expires or is revoked; the socket it opened is closed then.
    expiry = asyncio.create_task(_watch_token(request, sub, _expires_at(token)))
    session.send(
        {
            "type": "hello",
            "side": settings.side,
            "site_id": p.site_id,
            "role": p.role,
            "last_event_id": hub.last_id,
        }
    )
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            try:
                body = jsonbody.loads(msg.data)
            except ValueError as exc:
                session.error("malformed_json", f"messages are JSON objects: {exc}")
                continue
            if not isinstance(body, dict):
                session.error("bad_message", "messages are JSON objects")
                continue
            await session.handle(body)
            if writer.done():
                break
    finally:
        hub.remove(sub)
        expiry.cancel()
        if not writer.done():
            writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws


def event_text(ev: Event) -> str:
    return json.dumps(ev.as_dict())
