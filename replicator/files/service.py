"""The file lanes wired into the core daemon (``scsync replicator run`` when the file
settings are given, and its alias ``scsync files run``; see ``replicator.daemon.run``).

- The push lane gets :func:`push_gate` as its ``blob_gate``: before a batch is applied
  on the cloud, the blobs of its in-scope file-bearing rows are uploaded; a row whose
  upload failed is held back (the core parks and retries it), so a row that references
  a blob is applied only once the cloud has verified that blob.
- A files task next to the lanes serves on-demand requests and downloads blobs of rows
  the pull lane brought in as ``pending``, then sleeps ``poll_s`` (or until stopped).
- Optionally the backfill runs in the same process, behind the live lane: before each
  of its batches it waits while the push lane's outbox holds changes of this site.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from replicator.backoff import Backoff
from replicator.files.backfill import Backfill, BackfillConfig
from replicator.files.cloud import FilesCloud
from replicator.files.errors import FilesError, RecordNotFound
from replicator.files.lane import FileLane
from replicator.files.localdb import LocalDb, make_pool
from replicator.files.transfer import BlobApi, DbJournal, Transfer, TransferConfig
from schema.database import fetch_value
from schema.scope_policy import FILE_TABLES

log = logging.getLogger(__name__)

# The longest pause of a file-lane loop after repeated failures.
FAILURE_BACKOFF_MAX_S = 30.0

Gate = Callable[[Sequence[Any]], Awaitable[dict[tuple[str, int], str]]]


def push_gate(lane: FileLane) -> Gate:
    """The core's ``BlobGate`` for the push lane (rows: ``replicator.lane.BatchRow``)."""

    async def gate(batch: Sequence[Any]) -> dict[tuple[str, int], str]:
        held: dict[tuple[str, int], str] = {}

        async def one(row: Any) -> None:
            key = (row.table_name, row.row_id)
            try:
                await lane.before_push(row.table_name, row.row_id)
            except RecordNotFound:
                return  # deleted since: the tombstone needs no blob
            except FilesError as exc:
                held[key] = f"blob upload: {exc}"
            except psycopg.Error as exc:
                # The file lane's own connection broke (it reopens on the next call);
                # the row waits like one whose upload failed.
                held[key] = f"blob upload: local database: {exc}"

        await asyncio.gather(
            *(one(r) for r in batch if r.table_name in FILE_TABLES and r.op != "D")
        )
        return held

    return gate


def outbox_gate(
    local: LocalDb,
    site_id: int,
    poll_s: float = 0.05,
    max_wait_s: float = 10.0,
) -> Callable[[], Awaitable[None]]:
    """A backfill ``live_gate``: wait while the live lane has changes of this site to send.

    Bounded by ``max_wait_s`` so a backfill without a running push lane still moves
    (slowly), and says so in the log.
    """

    async def gate() -> None:
        deadline = time.monotonic() + max_wait_s
        while True:
            async with local.connection() as conn:
                pending = await fetch_value(conn, "files_outbox_pending", {"site_id": site_id})
            if not pending:
                return
            if time.monotonic() > deadline:
                log.warning("live lane has not drained its outbox in %.0f s", max_wait_s)
                return
            await asyncio.sleep(poll_s)

    return gate


@dataclass(frozen=True)
class FilesSettings:
    blobs_url: str
    token: str
    store_root: Path
    poll_s: float = 1.0
    concurrency: int = 4
    backfill: bool = False
    backfill_config: BackfillConfig = field(default_factory=BackfillConfig)


async def serve(settings: Any, files: FilesSettings, stop: asyncio.Event | None = None) -> int:
    """Core daemon (push/pull lanes) plus the file lanes, until SIGTERM/SIGINT or `stop`."""
    from replicator.daemon import Daemon

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # One pool of the local database for the file lanes, the journal and the backfill's
    # gate, opened in the background: a local database that is down at start or
    # restarts later delays the file lanes, it does not stop the daemon.
    pool = make_pool(settings.local_db_url, max_size=files.concurrency + 4)
    await pool.open(wait=False)
    local = LocalDb(pool)
    # The backfill reaches the cloud as the lanes do: the cloud API, the site's token.
    cloud = FilesCloud(settings)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = BlobApi(session, files.blobs_url, files.token, settings.site_id)
            transfer = Transfer(api, DbJournal(pool), TransferConfig(concurrency=files.concurrency))
            lane = FileLane(transfer, local, files.store_root)
            daemon = Daemon(settings)
            if "push" in daemon.lanes:
                daemon.lanes["push"].blob_gate = push_gate(lane)
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(daemon.serve(), name="daemon"),
                asyncio.create_task(_files_loop(lane, files, stop), name="files"),
            ]
            if files.backfill:
                backfill = Backfill(
                    settings.local_db_url,
                    cloud,
                    settings.site_id,
                    transfer=transfer,
                    config=files.backfill_config,
                    live_gate=outbox_gate(local, settings.site_id),
                )
                tasks.append(asyncio.create_task(_backfill_loop(backfill, stop), name="backfill"))
            await stop.wait()
            daemon.stop()
            for task in tasks[1:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await pool.close()
        await cloud.close()
    return 0


async def _files_loop(lane: FileLane, files: FilesSettings, stop: asyncio.Event) -> None:
    backoff = Backoff(files.poll_s, FAILURE_BACKOFF_MAX_S)
    while not stop.is_set():
        wait = files.poll_s
        try:
            await lane.serve_requests()
            await lane.fetch_pending()
            backoff.reset()
        except (FilesError, psycopg.Error) as exc:
            wait = max(wait, backoff.next())
            log.warning("file lane: %s; again in %.1f s", exc, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)


async def _backfill_loop(backfill: Backfill, stop: asyncio.Event) -> None:
    """Run the backfill to its end (done or paused), starting it again after a failure:
    it resumes from what is recorded as synced."""
    backoff = Backoff(1.0, FAILURE_BACKOFF_MAX_S)
    while not stop.is_set():
        try:
            await backfill.run()
            return
        except FilesError as exc:
            wait = backoff.next()
            log.warning("backfill: %s; again in %.1f s", exc, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=wait)
