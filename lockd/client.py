"""The site's client of lockd (used by the local API), over HTTP with the site's JWT.

Every call has a short timeout: when lockd cannot be reached in time the client raises
:class:`~lockd.errors.LockServiceUnreachable`, which the local API turns into "lock
service unreachable - edit offline?" (see :mod:`lockd.offline`). Error answers of lockd
come back as the same exception classes the library raises (LeaseBusy, LeaseNotHeld,
VersionConflict, ...), with ``field`` and the extra fields of the body.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import aiohttp

from lockd.errors import ERRORS_BY_CODE, LockdError, LockServiceUnreachable
from lockd.models import Lease, LeaseState, SaveGrant, SaveResult

TokenSource = str | Callable[[], str]


class LockClient:
    """``async with LockClient("http://cloud/v1/locks", site_jwt) as locks: ...``"""

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        timeout_s: float = 2.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s
        self._session = session
        self._own_session = session is None
        # When (monotonic) this client last failed to reach lockd; None once lockd has
        # answered since. The local API grants an offline edit only on such evidence.
        self.unreachable_at: float | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        extra_wait_s: float = 0.0,
    ) -> dict[str, Any]:
        token = self._token() if callable(self._token) else self._token
        timeout = aiohttp.ClientTimeout(total=self.timeout_s + extra_wait_s)
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=timeout,
            ) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:
                    data = None
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.unreachable_at = time.monotonic()
            raise LockServiceUnreachable(
                f"lock service at {self.base_url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(data, dict):
            self.unreachable_at = time.monotonic()
            raise LockServiceUnreachable(f"lock service answered {status} without a JSON body")
        self.unreachable_at = None
        if status >= 400:
            raise _error_from(status, data)
        return data

    def failed_within(self, seconds: float) -> bool:
        """True when this client's last attempt failed to reach lockd, less than
        ``seconds`` ago (and nothing has reached it since)."""
        at = self.unreachable_at
        return at is not None and time.monotonic() - at <= seconds

    async def acquire(
        self,
        table: str,
        row_id: int,
        holder: str,
        *,
        ttl_s: float | None = None,
        wait_s: float = 0.0,
    ) -> Lease:
        body: dict[str, Any] = {"table": table, "row_id": row_id, "holder": holder}
        if ttl_s is not None:
            body["ttl_ms"] = round(ttl_s * 1000)
        if wait_s:
            body["wait_ms"] = round(wait_s * 1000)
        return Lease.from_json(await self._request("POST", "/acquire", body, extra_wait_s=wait_s))

    async def renew(self, lease_id: uuid.UUID, token: int, *, ttl_s: float | None = None) -> Lease:
        body: dict[str, Any] = {"lease_id": str(lease_id), "token": token}
        if ttl_s is not None:
            body["ttl_ms"] = round(ttl_s * 1000)
        return Lease.from_json(await self._request("POST", "/renew", body))

    async def touch(self, lease_id: uuid.UUID, token: int) -> Lease:
        body = {"lease_id": str(lease_id), "token": token}
        return Lease.from_json(await self._request("POST", "/touch", body))

    async def release(self, lease_id: uuid.UUID, token: int) -> None:
        await self._request("POST", "/release", {"lease_id": str(lease_id), "token": token})

    async def force_break(
        self, table: str, row_id: int, *, by: str, reason: str = ""
    ) -> dict[str, Any]:
        body = {"table": table, "row_id": row_id, "by": by, "reason": reason}
        return await self._request("POST", "/break", body)

    async def get(self, table: str, row_id: int) -> LeaseState:
        return LeaseState.from_json(await self._request("GET", f"/leases/{table}/{row_id}"))

    async def save(
        self,
        lease_id: uuid.UUID,
        token: int,
        changes: Mapping[str, Any],
        *,
        expected_revision: int | None = None,
        save_id: uuid.UUID | None = None,
    ) -> SaveResult:
        body: dict[str, Any] = {
            "lease_id": str(lease_id),
            "token": token,
            "changes": dict(changes),
            "expected_revision": expected_revision,
            "save_id": str(save_id) if save_id else None,
        }
        return SaveResult.from_json(await self._request("POST", "/save", body))

    async def begin_save(self, lease_id: uuid.UUID, token: int, base_revision: int) -> SaveGrant:
        body = {"lease_id": str(lease_id), "token": token, "base_revision": base_revision}
        return SaveGrant.from_json(await self._request("POST", "/begin_save", body))

    async def end_save(
        self, lease_id: uuid.UUID, token: int, new_revision: int, changed: bool
    ) -> None:
        body = {
            "lease_id": str(lease_id),
            "token": token,
            "new_revision": new_revision,
            "changed": changed,
        }
        await self._request("POST", "/end_save", body)

    async def health(self) -> bool:
        try:
            await self._request("GET", "/health")
        except LockServiceUnreachable:
            return False
        return True


def _error_from(status: int, data: dict[str, Any]) -> LockdError:
    cls = ERRORS_BY_CODE.get(str(data.get("error")), LockdError)
    extra = {k: v for k, v in data.items() if k not in ("error", "message", "field")}
    err = cls(str(data.get("message", f"HTTP {status}")), field=data.get("field"), **extra)
    if cls is LockdError:
        err.status = status
    return err


async def heartbeat(
    client: LockClient, lease: Lease, *, every_s: float, stop: asyncio.Event
) -> None:
    """Renew ``lease`` every ``every_s`` seconds until ``stop``; ends when the lease is
    lost (the caller then tells its user the edit session is over)."""
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        await client.renew(lease.lease_id, lease.token)
