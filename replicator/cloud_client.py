"""The cloud end of a site's lanes: the cloud API's sync endpoints (api/sync.py) over
HTTPS with the site's token. The site holds no login and no session on the cloud
database; everything a lane does there is a request, and what the cloud remembers of a
lane between requests is its lease (renewed by each request, lapsing on its own).

One pooled aiohttp session (keep-alive) is shared by the lanes of a daemon. Batches
stream both ways as JSON lines. HTTP answers map to the replicator's errors once,
here: unreachable, 5xx and timeouts are :class:`Unavailable` (a partition, healed by
retrying), 409 ``lane_busy`` is :class:`LaneBusy`, 422 ``apply_failed`` is
:class:`ApplyFailed` (the lane applies record by record), anything else refused is
:class:`Refused`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from replicator.errors import ApplyFailed, LaneBusy, Refused, Unavailable
from replicator.settings import Settings
from schema.lanes import Applied, BatchRow, LaneName, Outcome, Park

HOLDER_HEADER = "X-Scsync-Holder"
# A row's JSON line may be long (a record's content); lines are split here, not by
# aiohttp's readline and its 64 KiB limit.
_CHUNK = 1 << 16


def default_holder(settings: Settings) -> str:
    """Who holds a lane's lease: this host and this site's database. The same after a
    restart (a restarted replicator takes its lanes back at once); a second replicator
    on this host is stopped before, by the local database's advisory lock."""
    digest = hashlib.sha256(settings.local_db_url.encode()).hexdigest()[:8]
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:150] or "host"
    return f"{host}/{digest}"


async def json_lines(content: aiohttp.StreamReader) -> AsyncIterator[Any]:
    """The JSON values of a stream of lines, one at a time."""
    buf = bytearray()
    async for chunk in content.iter_chunked(_CHUNK):
        buf.extend(chunk)
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            line = bytes(buf[start:end]).strip()
            start = end + 1
            if line:
                yield json.loads(line)
        del buf[:start]
    if bytes(buf).strip():
        yield json.loads(bytes(buf))


class CloudClient:
    """The HTTP session to the cloud API; created in the running loop on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base = settings.cloud_api_url.rstrip("/") + "/v1/sync"
        self._session: aiohttp.ClientSession | None = None

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.settings.ca_file:
            return ssl.create_default_context(cafile=self.settings.ca_file)
        return True

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self._ssl(), limit=8, keepalive_timeout=30, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.settings.connect_timeout_s,
                    sock_read=self.settings.op_timeout_s,
                ),
                headers={"Authorization": f"Bearer {self.settings.site_token}"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @asynccontextmanager
    async def post(
        self, path: str, holder: str, *, body: Any = None, data: Any = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A POST to a sync endpoint, errors mapped; the caller reads the answer."""
        what = f"cloud API {path}"
        headers = {HOLDER_HEADER: holder}
        try:
            async with self.session().post(
                f"{self.base}/{path}", json=body, data=data, headers=headers
            ) as resp:
                if resp.status >= 400:
                    await _raise_for(resp, what)
                yield resp
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"{what}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc


async def _raise_for(resp: aiohttp.ClientResponse, what: str) -> None:
    try:
        body = await resp.json(content_type=None)
        code, message = str(body.get("error")), str(body.get("message"))
    except (ValueError, AttributeError, aiohttp.ClientError):
        code, message = f"http_{resp.status}", resp.reason or ""
    text = f"{what}: {message}"
    if resp.status >= 500 or resp.status == 429:
        raise Unavailable(text)
    if resp.status == 409 and code == "lane_busy":
        raise LaneBusy(message)
    if resp.status == 422 and code == "apply_failed":
        raise ApplyFailed(message)
    raise Refused(f"{text} (HTTP {resp.status} {code})")


class CloudEnd:
    """The cloud end of one lane of this site (the lane is in every path)."""

    def __init__(self, client: CloudClient, lane: LaneName, holder: str) -> None:
        self.client = client
        self.lane: LaneName = lane
        self.holder = holder

    def _post(
        self, op: str, *, body: Any = None, data: Any = None
    ) -> Any:  # an async context manager of the response
        return self.client.post(f"{self.lane}/{op}", self.holder, body=body, data=data)

    async def _json(self, op: str, body: Any = None) -> Any:
        async with self._post(op, body=body if body is not None else {}) as resp:
            return await resp.json()

    async def lease(self) -> None:
        """Take (or keep) the lane's lease; LaneBusy names its live holder."""
        await self._json("lease")

    async def release(self) -> None:
        await self._json("release")

    async def columns(self) -> tuple[dict[str, list[str]], str | None]:
        got = await self._json("schema")
        columns = {str(t): [str(c) for c in cols] for t, cols in got["columns"].items()}
        rev = got.get("revision")
        return columns, None if rev is None else str(rev)

    async def read(
        self, lane: LaneName, limit: int, exclude: dict[str, list[str]], skip: Sequence[int]
    ) -> list[BatchRow]:
        body = {"limit": limit, "exclude": exclude, "skip": list(skip)}
        rows: list[BatchRow] = []
        async with self._post("read", body=body) as resp:
            async for value in json_lines(resp.content):
                if isinstance(value, dict):  # the trailer: the batch is complete
                    if value.get("rows") != len(rows):
                        raise Unavailable(f"cloud API {self.lane}/read: batch cut short")
                    return rows
                rows.append(BatchRow.from_json(value))
        raise Unavailable(f"cloud API {self.lane}/read: batch cut short (no trailer)")

    async def apply(
        self,
        lane: LaneName,
        batch: Sequence[BatchRow],
        columns: dict[str, list[str]],
        forget: Sequence[int],
        source_commit_at: dt.datetime | None,
        peer_schema_revision: str | None,
        one_by_one: bool,
        source_lsn: str | None = None,
    ) -> Applied:
        head = {
            "mode": "each" if one_by_one else "batch",
            "source_lsn": source_lsn,
            "columns": columns,
            "forget": list(forget),
            "source_commit_at": None if source_commit_at is None else source_commit_at.isoformat(),
            "peer_schema_revision": peer_schema_revision,
            "rows": len(batch),
        }

        async def body() -> AsyncIterator[bytes]:
            yield json.dumps(head).encode() + b"\n"
            lines: list[bytes] = []
            for r in batch:
                lines.append(json.dumps(r.to_json()).encode())
                if len(lines) >= 200:
                    yield b"\n".join(lines) + b"\n"
                    lines = []
            if lines:
                yield b"\n".join(lines) + b"\n"

        async with self._post("apply", data=body()) as resp:
            got = await resp.json()
        outcomes: list[Outcome] = [
            (int(o[0]), str(o[1]), int(o[2]), str(o[3]), int(o[4]), o[5]) for o in got["outcomes"]
        ]
        failures = {(str(t), int(i)): str(why) for t, i, why in got["failures"]}
        batch_id = got.get("batch_id")
        return Applied(
            outcomes,
            None if batch_id is None else int(batch_id),
            failures,
            skipped=bool(got.get("skipped")),
        )

    async def position(self) -> str | None:
        """The source LSN the cloud holds for this lane of the site (the end of the last
        WAL batch it applied), None before the first."""
        got = await self._json("position")
        lsn = got.get("source_lsn")
        return None if lsn is None else str(lsn)

    async def ack(
        self,
        lane: LaneName,
        seqs: Sequence[int],
        rows: str,
        parks: Sequence[Park] = (),
        requeue: bool = False,
    ) -> None:
        body = {
            "seqs": list(seqs),
            "rows": json.loads(rows),
            "parks": [
                {
                    "table_name": p.table_name,
                    "row_id": p.row_id,
                    "revision": p.revision,
                    "reason": p.reason,
                    "initial_s": p.initial_s,
                    "max_s": p.max_s,
                }
                for p in parks
            ],
        }
        await self._json("ack", body)

    async def forget(self, lane: LaneName, batch_ids: Sequence[int]) -> None:
        await self._json("forget", {"batch_ids": list(batch_ids)})

    async def inbox_pending(self, lane: LaneName) -> list[tuple[int, list[int]]]:
        got = await self._json("inbox")
        return [(int(b), [int(s) for s in seqs]) for b, seqs in got["pending"]]

    async def outbox_keys(self, seqs: Sequence[int]) -> list[dict[str, Any]]:
        got = await self._json("outbox-keys", {"seqs": list(seqs)})
        return [{"t": str(k["t"]), "id": int(k["id"])} for k in got["keys"]]

    async def recover_rows(self, keys: str) -> str:
        got = await self._json("recover-rows", {"keys": json.loads(keys)})
        return json.dumps(got["rows"])

    async def outbox_depth(self) -> tuple[int, float | None]:
        got = await self._json("depth")
        lag = got.get("oldest_change_age_s")
        return int(got["depth"]), None if lag is None else float(lag)

    async def wait(self, timeout_s: float, mark: str | None) -> tuple[bool, str | None]:
        """Long-poll for a change of this site on the cloud: (changed, mark for the next)."""
        async with self._post("wait", body={"timeout_s": timeout_s, "mark": mark}) as resp:
            got = await resp.json()
        return bool(got.get("changed")), got.get("mark")


async def cloud_status(settings: Settings) -> dict[str, Any]:
    """This site's figures on the cloud (``/v1/sync/status``), for the status commands."""
    client = CloudClient(settings)
    try:
        async with client.post("status", "status", body={}) as resp:
            got: dict[str, Any] = await resp.json()
            return got
    finally:
        await client.close()
