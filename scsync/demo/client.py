"""The demo's client side, as a viewer uses the APIs: JSON over HTTP, readiness probes,
polling until a condition holds, a WebSocket event watcher, signing in, reading records
and edit sessions (open, save, close)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scsync.demo.data import PASSWORDS


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def http(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode() or "{}"
            out = json.loads(text)
            return out if isinstance(out, dict) else {"items": out}
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode(errors="replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"message": raw}
        raise HttpError(exc.code, parsed if isinstance(parsed, dict) else {"body": parsed}) from exc


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if pred():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


class EventWatcher:
    """Collect an API's WebSocket events in a background thread (aiohttp client)."""

    def __init__(self, base_url: str, token: str, site_id: int) -> None:
        self.url = base_url.replace("http://", "ws://") + "/ws"
        self.token = token
        self.site_id = site_id
        self.events: list[dict[str, Any]] = []
        self.connected = False
        self._stop = False
        self._thread: Any = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        wait_until(lambda: self.connected, 10)

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            while not self._stop:
                try:
                    async with session.ws_connect(self.url, heartbeat=10) as ws:
                        await ws.send_json({"type": "auth", "token": self.token})
                        await ws.send_json({"type": "subscribe", "site": self.site_id})
                        async for msg in ws:
                            if self._stop:
                                return
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                continue
                            body = json.loads(msg.data)
                            if body.get("type") == "subscribed":
                                self.connected = True
                            elif "id" in body and "type" in body:
                                self.events.append(body)
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.5)

    def find(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found.extend(e for e in list(self.events) if pred(e))
            return bool(found)

        wait_until(look, timeout, 0.05)
        return found[0] if found else None

    def stop(self) -> None:
        self._stop = True


def sign_in(api_url: str, user: str, site_id: int | None = None) -> str:
    body: dict[str, Any] = {"username": user, "password": PASSWORDS[user]}
    if site_id is not None:
        body["site_id"] = site_id
    return str(http("POST", api_url + "/v1/auth/token", body)["token"])


@dataclass(frozen=True)
class SignIn:
    """One way in that the demo tells its user about: the status page, what goes into
    its clinic field (empty: the page has none, or a vendor account), user, password."""

    page: str
    clinic: str
    user: str
    password: str

    @property
    def api_url(self) -> str:
        return self.page.rstrip("/")


def sign_in_as(hint: SignIn) -> dict[str, Any]:
    """What the page's form sends for a hint: user, password and the clinic if any."""
    body: dict[str, Any] = {"username": hint.user, "password": hint.password}
    if hint.clinic:
        body["site"] = hint.clinic
    return http("POST", hint.api_url + "/v1/auth/token", body)


def get_record(api_url: str, token: str, table: str, rid: int) -> dict[str, Any]:
    return http("GET", f"{api_url}/v1/records/{table}/{rid}", token=token)


def count_records(api_url: str, token: str, table: str) -> int:
    total, cursor = 0, None
    while True:
        url = f"{api_url}/v1/records/{table}?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = http("GET", url, token=token)
        total += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


class LockUnreachable(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", "lock service unreachable"))
        self.body = body


class Editor:
    """A viewer's edit session through its own server's API (``POST …/edit``, save,
    close): the local API asks the cloud's lockd, the cloud API its mounted lockd."""

    def __init__(self, api_url: str, user: str, site_id: int | None = None) -> None:
        self.api_url = api_url
        self.token = sign_in(api_url, user, site_id)

    def open(self, table: str, rid: int, offline: bool = False) -> dict[str, Any]:
        url = f"{self.api_url}/v1/records/{table}/{rid}/edit"
        try:
            return http("POST", url, {"offline": True} if offline else {}, self.token)
        except HttpError as exc:
            if exc.status == 503 and exc.body.get("error") == "lock_service_unreachable":
                raise LockUnreachable(exc.body) from exc
            raise

    def save(self, session: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        body = {"session": session["session"], "changes": changes}
        return http("POST", self.api_url + "/v1/edit-sessions/save", body, self.token)

    def close(self, session: dict[str, Any]) -> None:
        body = {"session": session["session"]}
        http("POST", self.api_url + "/v1/edit-sessions/close", body, self.token)

    def edit(self, table: str, rid: int, changes: dict[str, Any]) -> dict[str, Any]:
        session = self.open(table, rid)
        try:
            return self.save(session, changes)
        finally:
            self.close(session)
