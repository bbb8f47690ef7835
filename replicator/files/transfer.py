"""Moving blobs between the site's file store and S3, through the cloud's presigned URLs.

- Upload: ask the cloud for a plan (``exists``: dedupe, nothing sent; ``single``: one
  PUT; ``multipart``: part URLs). Every finished part is written to the upload journal
  (local table ``scsync_uploads``/``scsync_upload_parts``) so a restarted replicator
  continues the same upload; S3's own list of parts (returned in the plan) decides which
  parts still have to go, so a finished part is never sent twice.
- Download: presigned GET into a temporary file next to the destination, hashed while
  it is written; only bytes whose sha256 and size match are renamed into place, so a
  corrupted transfer never replaces or creates the destination file.
- Files are streamed in chunks (``chunk_size``); concurrency is bounded by one semaphore
  over every PUT/GET this object makes; an optional byte-rate limiter throttles both.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import aiohttp
from psycopg.rows import namedtuple_row

from replicator.files.errors import (
    ApiRefused,
    BlobCorrupt,
    BlobMissing,
    StoreRefusedBytes,
    TransferFailed,
)
from schema import database

T = TypeVar("T")

log = logging.getLogger(__name__)

MiB = 1024 * 1024


# -- the cloud's blob endpoints -------------------------------------------------------------


class BlobApi:
    """HTTP client of api/blobs/ for one site (its JWT in every request)."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, token: str, site_id: int
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.site_id = site_id

    def _url(self, sha256: str, action: str = "") -> str:
        tail = f"/{action}" if action else ""
        return f"{self.base_url}/sites/{self.site_id}/blobs/{sha256}{tail}"

    async def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            async with self.session.request(method, url, json=body, headers=headers) as resp:
                payload: Any = await resp.json(content_type=None)
                if resp.status >= 400:
                    raise ApiRefused(resp.status, payload)
                return payload
        except aiohttp.ClientError as exc:
            raise TransferFailed(f"blob API unreachable: {exc}") from exc

    async def upload_plan(
        self, sha256: str, size: int, upload_id: str | None = None
    ) -> dict[str, Any]:
        # sends_headers: this client PUTs with the headers a single plan names.
        body: dict[str, Any] = {"size": size, "sends_headers": True}
        if upload_id:
            body["upload_id"] = upload_id
        result: dict[str, Any] = await self._call("POST", self._url(sha256, "upload"), body)
        return result

    async def complete(
        self, sha256: str, size: int, upload_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"size": size}
        if upload_id:
            body["upload_id"] = upload_id
        result: dict[str, Any] = await self._call("POST", self._url(sha256, "complete"), body)
        return result

    async def download_url(self, sha256: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", self._url(sha256, "download"), {})
        return result

    async def info(self, sha256: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._call("GET", self._url(sha256))
        except ApiRefused as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def delete(self, sha256: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("DELETE", self._url(sha256))
        return result

    async def open_requests(self) -> list[dict[str, Any]]:
        url = f"{self.base_url}/sites/{self.site_id}/requests"
        result: dict[str, Any] = await self._call("GET", url)
        requests: list[dict[str, Any]] = result["requests"]
        return requests


# -- upload journal ---------------------------------------------------------------------------


@dataclass
class JournalEntry:
    upload_id: str
    size: int
    part_size: int
    parts: dict[int, str] = field(default_factory=dict)  # part number -> etag


class UploadJournal(Protocol):
    """Where multipart uploads in flight are remembered across restarts."""

    async def load(self, sha256: str) -> JournalEntry | None: ...
    async def begin(self, sha256: str, upload_id: str, size: int, part_size: int) -> None: ...
    async def part_done(self, sha256: str, part_number: int, etag: str, size: int) -> None: ...
    async def finish(self, sha256: str) -> None: ...


class MemoryJournal:
    """A journal that forgets on exit (benchmarks, tests of the transfer alone)."""

    def __init__(self) -> None:
        self.entries: dict[str, JournalEntry] = {}

    async def load(self, sha256: str) -> JournalEntry | None:
        return self.entries.get(sha256)

    async def begin(self, sha256: str, upload_id: str, size: int, part_size: int) -> None:
        self.entries[sha256] = JournalEntry(upload_id, size, part_size)

    async def part_done(self, sha256: str, part_number: int, etag: str, size: int) -> None:
        self.entries[sha256].parts[part_number] = etag

    async def finish(self, sha256: str) -> None:
        self.entries.pop(sha256, None)


class DbJournal:
    """The journal in the local database (the files tables of the baseline), on the
    process's pool of it (schema.database)."""

    def __init__(self, pool: database.Pool) -> None:
        self.pool = pool

    async def load(self, sha256: str) -> JournalEntry | None:
        async with self.pool.connection() as conn:
            rows = await database.fetch_all(
                conn, "files_journal_get", {"sha256": sha256}, row=namedtuple_row
            )
        if not rows:
            return None
        first: Any = rows[0]
        entry = JournalEntry(first.upload_id, first.size, first.part_size)
        for r in rows:
            part: Any = r
            if part.part_number is not None:
                entry.parts[part.part_number] = part.etag
        return entry

    async def begin(self, sha256: str, upload_id: str, size: int, part_size: int) -> None:
        async with database.transaction(self.pool) as conn:
            await database.execute(conn, "files_journal_finish", {"sha256": sha256})
            await database.execute(
                conn,
                "files_journal_begin",
                {"sha256": sha256, "upload_id": upload_id, "size": size, "part_size": part_size},
            )

    async def part_done(self, sha256: str, part_number: int, etag: str, size: int) -> None:
        async with self.pool.connection() as conn:
            await database.execute(
                conn,
                "files_journal_part",
                {"sha256": sha256, "part_number": part_number, "etag": etag, "size": size},
            )

    async def finish(self, sha256: str) -> None:
        async with self.pool.connection() as conn:
            await database.execute(conn, "files_journal_finish", {"sha256": sha256})


# -- throttling ---------------------------------------------------------------------------------


class RateLimiter:
    """A token bucket of units per second (bytes or rows); ``None`` rate: no limit."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else (rate or 0.0)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def consume(self, amount: float) -> None:
        if not self.rate:
            return
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            if self._tokens < 0:
                # Pay the debt by waiting; holding the lock makes every consumer queue
                # behind it, which is what a shared budget means.
                await asyncio.sleep(-self._tokens / self.rate)
                self._last = time.monotonic()
                self._tokens = 0.0


# -- transfers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferConfig:
    concurrency: int = 4  # PUTs/GETs in flight at once, over all files
    chunk_size: int = MiB  # bytes read/written at a time: the memory per transfer
    retries: int = 3
    retry_delay_s: float = 0.5


@dataclass
class UploadOutcome:
    sha256: str
    status: Literal["exists", "uploaded"]
    bytes_sent: int = 0
    parts_sent: int = 0


@dataclass
class _Counters:
    bytes_up: int = 0
    bytes_down: int = 0


def store_path(store_root: Path, sha256: str) -> Path:
    """Where a blob downloaded from the cloud lives in the site's file store."""
    return store_root / "blobs" / sha256[:2] / sha256


class Transfer:
    def __init__(
        self,
        api: BlobApi,
        journal: UploadJournal | None = None,
        config: TransferConfig | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.api = api
        self.journal: UploadJournal = journal if journal is not None else MemoryJournal()
        self.config = config or TransferConfig()
        self.limiter = limiter or RateLimiter(None)
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self.counters = _Counters()

    # -- upload ---------------------------------------------------------------------

    async def upload(self, path: Path, sha256: str, size: int) -> UploadOutcome:
        """Make the blob present in the cloud (verified there), sending what is missing."""
        try:
            actual = path.stat().st_size
        except OSError as exc:
            raise BlobMissing(f"{path}: {exc.strerror}") from exc
        if actual != size:
            raise BlobMissing(f"{path} has {actual} bytes, its row says {size}")
        for attempt in range(self.config.retries):
            try:
                return await self._upload_once(path, sha256, size)
            except TransferFailed as exc:
                # An expired URL (403) or a dropped connection: ask for a fresh plan,
                # which continues the same multipart upload from S3's list of parts.
                if attempt == self.config.retries - 1:
                    raise
                log.warning("blob %s: %s; planning again", sha256, exc)
                await asyncio.sleep(self.config.retry_delay_s * (attempt + 1))
        raise AssertionError("unreachable")

    async def _upload_once(self, path: Path, sha256: str, size: int) -> UploadOutcome:
        entry = await self.journal.load(sha256)
        plan = await self.api.upload_plan(sha256, size, entry.upload_id if entry else None)
        if plan["status"] == "exists":
            await self.journal.finish(sha256)
            return UploadOutcome(sha256, "exists")
        if plan["status"] == "single":
            try:
                await self._put(plan["url"], path, 0, size, plan.get("headers") or {})
            except StoreRefusedBytes as exc:
                # complete finds no object and drops the pending upload on the cloud.
                with contextlib.suppress(ApiRefused):
                    await self.api.complete(sha256, size, None)
                raise BlobMissing(f"local file of blob {sha256} does not match it: {exc}") from exc
            await self._complete(sha256, size, None)
            return UploadOutcome(sha256, "uploaded", size, 1)
        return await self._multipart(path, sha256, size, plan, entry)

    async def _multipart(
        self,
        path: Path,
        sha256: str,
        size: int,
        plan: dict[str, Any],
        entry: JournalEntry | None,
    ) -> UploadOutcome:
        upload_id: str = plan["upload_id"]
        part_size: int = plan["part_size"]
        if entry is None or entry.upload_id != upload_id:
            await self.journal.begin(sha256, upload_id, size, part_size)
        for p in plan["uploaded_parts"]:
            # S3 is the truth about finished parts; the journal catches up with it.
            if entry is None or entry.parts.get(p["part_number"]) != p["etag"]:
                await self.journal.part_done(sha256, p["part_number"], p["etag"], p["size"])
        sent = 0

        async def one(part: dict[str, Any]) -> int:
            number: int = part["part_number"]
            offset = (number - 1) * part_size
            length = min(part_size, size - offset)
            etag = await self._put(part["url"], path, offset, length)
            await self.journal.part_done(sha256, number, etag, length)
            return length

        results = await _all_or_cancel([one(p) for p in plan["parts"]])
        sent = sum(results)
        await self._complete(sha256, size, upload_id)
        await self.journal.finish(sha256)
        return UploadOutcome(sha256, "uploaded", sent, len(results))

    async def _complete(self, sha256: str, size: int, upload_id: str | None) -> None:
        try:
            result = await self.api.complete(sha256, size, upload_id)
        except ApiRefused as exc:
            if exc.status != 422:
                raise
            # The cloud hashed what was sent and it is not this blob: the local file no
            # longer holds the bytes its row describes. Sending again cannot help.
            await self.journal.finish(sha256)
            raise BlobMissing(f"local file of blob {sha256} does not match it: {exc}") from exc
        if result.get("status") not in ("uploaded", "exists"):
            raise TransferFailed(f"cloud did not record blob {sha256}: {result}")

    async def _chunks(self, path: Path, offset: int, length: int) -> AsyncIterator[bytes]:
        chunk = self.config.chunk_size
        fd = os.open(path, os.O_RDONLY)
        try:
            left = length
            pos = offset
            while left > 0:
                data = os.pread(fd, min(chunk, left), pos)
                if not data:
                    raise BlobMissing(f"{path} ended early (changed while uploading?)")
                await self.limiter.consume(len(data))
                self.counters.bytes_up += len(data)
                pos += len(data)
                left -= len(data)
                yield data
        finally:
            os.close(fd)

    async def _put(
        self, url: str, path: Path, offset: int, length: int, headers: dict[str, str] | None = None
    ) -> str:
        """PUT one range of a file to a presigned URL (with the headers signed into it);
        returns S3's ETag. StoreRefusedBytes when S3 found the bytes are not the ones
        whose checksum the URL was signed with."""
        last: Exception | None = None
        for attempt in range(self.config.retries):
            async with self._slots:
                try:
                    async with self.api.session.put(
                        url,
                        data=self._chunks(path, offset, length),
                        # A known length: S3 refuses chunked transfer on presigned PUTs.
                        headers={**(headers or {}), "Content-Length": str(length)},
                    ) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            return resp.headers.get("ETag", "")
                        if resp.status == 400 and b"<Code>BadDigest</Code>" in body:
                            raise StoreRefusedBytes("S3 refused the bytes (BadDigest)")
                        last = TransferFailed(f"S3 answered {resp.status}: {body[:200]!r}")
                        if resp.status < 500:
                            raise last
                except aiohttp.ClientError as exc:
                    last = TransferFailed(f"upload to S3 failed: {exc}")
            await asyncio.sleep(self.config.retry_delay_s * (attempt + 1))
        assert last is not None
        raise last

    # -- download -------------------------------------------------------------------

    async def download(self, sha256: str, dest: Path, size: int | None = None) -> Path:
        """Fetch a blob into `dest` (atomically), verified against its sha256 and size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        for attempt in range(self.config.retries):
            info = await self.api.download_url(sha256)
            expected = info["size"] if size is None else size
            tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part"
            try:
                got, digest = await self._get_to(info["url"], tmp)
                if got == expected and digest == sha256:
                    os.replace(tmp, dest)
                    _fsync_dir(dest.parent)
                    return dest
                problems.append(f"got {got} bytes with sha256 {digest}")
                log.warning("blob %s: corrupt download (attempt %d)", sha256, attempt + 1)
            except (aiohttp.ClientError, TransferFailed) as exc:
                problems.append(str(exc))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            await asyncio.sleep(self.config.retry_delay_s * (attempt + 1))
        raise BlobCorrupt(
            f"blob {sha256} could not be downloaded intact after "
            f"{self.config.retries} attempts: {'; '.join(problems)}"
        )

    async def _get_to(self, url: str, tmp: Path) -> tuple[int, str]:
        h = hashlib.sha256()
        got = 0
        async with self._slots, self.api.session.get(url) as resp:
            if resp.status != 200:
                raise TransferFailed(f"S3 answered {resp.status} to a download")
            with tmp.open("wb") as f:
                async for chunk in resp.content.iter_chunked(self.config.chunk_size):
                    await self.limiter.consume(len(chunk))
                    f.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    self.counters.bytes_down += len(chunk)
                f.flush()
                os.fsync(f.fileno())
        return got, h.hexdigest()


async def _all_or_cancel(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Run all; on the first failure cancel the others and raise it. With plain gather
    the parts still queued would go on sending through expired URLs after a 403, taking
    the slots and the byte budget from the retry that has fresh ones."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
