"""The per-site replicator daemon: the push and pull lanes, their wake-up listeners,
backoff, signals, systemd notifications and metrics.

Each lane waits for whichever comes first, a hint, the poll interval or a stop request,
then drains its outbox in batches (procrastinate's worker loop). The push lane's hints
come from a LISTEN connection to the local database (schema/notifications.py), which
also looks at the outbox's head (or the WAL's end) every ``outbox_probe_s`` and is
reconnected on failure; after every (re)connect the lane is woken once, since hints
sent while nobody listened are lost (the outbox is not). The pull
lane's hints come from the cloud API: one long poll (``pull/wait``) kept open, answered
when a change of this site commits on the cloud; the site holds no session on the
cloud database. Polling every ``poll_interval_s`` remains the fallback for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg

from replicator import metrics as m
from replicator import sdnotify
from replicator.backoff import Backoff
from replicator.cloud_client import CloudClient
from replicator.db import connect, first_line
from replicator.errors import LaneBusy, Refused, SettingsError, Unavailable
from replicator.lane import BlobGate, Lane, LaneName
from replicator.metrics import Metrics
from replicator.settings import Settings
from replicator.wal import check_settings, lsn_int
from schema.database import named
from schema.notifications import Listener, wakes

if TYPE_CHECKING:
    from replicator.files.service import FilesSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
_CHANNEL = "scsync_outbox"


class Daemon:
    """Runs the configured lanes until :meth:`stop` is called."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics | None = None,
        blob_gate: BlobGate | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        # One pooled HTTP session to the cloud API for both lanes.
        self.client = CloudClient(settings)
        self.lanes: dict[LaneName, Lane] = {
            name: Lane(name, settings, self.metrics, blob_gate, client=self.client)
            for name in settings.lanes
        }
        self._wake: dict[LaneName, asyncio.Event] = {n: asyncio.Event() for n in self.lanes}
        self._stop = asyncio.Event()
        self.last_progress: dict[LaneName, float] = {}

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _refuses_capture(self) -> str | None:
        """The reason the site database cannot be captured (wal_level and friends), or
        None; an unreachable database is the lanes' weather, not a refusal."""
        try:
            conn = await connect(
                self.settings.local_db_url, self.settings.connect_timeout_s, "scsync-check"
            )
        except (psycopg.Error, OSError, Unavailable):
            return None
        try:
            await check_settings(conn)
        except SettingsError as exc:
            return str(exc)
        finally:
            await conn.close()
        return None

    async def serve(self) -> int:
        if "push" in self.lanes and self.settings.capture == "wal":
            refused = await self._refuses_capture()
            if refused is not None:
                log.error("replicator: %s", refused)
                return 2
        lane_tasks = [
            asyncio.create_task(self._lane_loop(lane), name=f"lane-{name}")
            for name, lane in self.lanes.items()
        ]
        helpers = [asyncio.create_task(self._watchdog(), name="watchdog")]
        if "push" in self.lanes:
            helpers.append(
                asyncio.create_task(
                    self._listen(self.settings.local_db_url, "push"), name="listen-local"
                )
            )
        if "pull" in self.lanes:
            helpers.append(asyncio.create_task(self._cloud_hints(), name="hints-cloud"))
        from replicator import exporter

        metrics_server = exporter.start(self.metrics, self.settings)
        sdnotify.notify("READY=1")
        log.info("replicator of site %s running lanes %s", self.settings.site_id, list(self.lanes))
        await self._stop.wait()
        sdnotify.notify("STOPPING=1")
        if metrics_server is not None:
            metrics_server.close()
        # A lane finishes the batch it is in (each step is transactional on both sides);
        # past the grace period it is cancelled, which rolls back its open transaction.
        _, pending = await asyncio.wait(lane_tasks, timeout=self.settings.stop_grace_s)
        for task in [*pending, *helpers]:
            task.cancel()
        await asyncio.gather(*lane_tasks, *helpers, return_exceptions=True)
        for lane in self.lanes.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(lane.close(release=True), timeout=3)
        with contextlib.suppress(Exception):
            await self.client.close()
        log.info("replicator stopped")
        return 0

    # -- lanes -------------------------------------------------------------------------
    async def _timed(self, what: Callable[[], Awaitable[T]]) -> T:
        try:
            return await asyncio.wait_for(what(), timeout=self.settings.op_timeout_s)
        except TimeoutError as exc:
            raise Unavailable(f"no answer within {self.settings.op_timeout_s} s") from exc

    async def _lane_loop(self, lane: Lane) -> None:
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        wake = self._wake[lane.name]
        while not self._stop.is_set():
            try:
                if not lane.connected:
                    await self._timed(lane.open)
                    # The lane's gauges from its start, not only after its first drain
                    # (a WAL drain ends with a read of the stream, which takes a moment).
                    await self._timed(lane.refresh_metrics)
                wake.clear()
                await lane.drain(
                    should_stop=self._stop.is_set, op_timeout=self.settings.op_timeout_s
                )
                self.last_progress[lane.name] = time.monotonic()
                if time.monotonic() - lane.last_metrics_at >= self.settings.metrics_interval_s:
                    await self._timed(lane.refresh_metrics)
                backoff.reset()
            except Exception as exc:
                # Unavailable/LaneBusy are expected weather; anything else is a bug or a
                # broken schema, logged with its traceback, and the lane still retries
                # rather than dying silently inside a running daemon.
                delay = backoff.next()
                if isinstance(exc, Unavailable | LaneBusy | Refused):
                    log.warning("%s lane: %s; retrying in %.1f s", lane.name, exc, delay)
                else:
                    log.exception("%s lane failed; retrying in %.1f s", lane.name, delay)
                self.metrics.inc(m.RECONNECTS, lane=lane.name)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(lane.close(), timeout=2)
                await self._sleep(delay)
                continue
            await self._wait_for_work(wake)

    async def _wait_for_work(self, wake: asyncio.Event) -> None:
        stop = asyncio.create_task(self._stop.wait())
        hint = asyncio.create_task(wake.wait())
        try:
            await asyncio.wait(
                [stop, hint],
                timeout=self.settings.poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            stop.cancel()
            hint.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    # -- wake-up hints ---------------------------------------------------------------
    async def _listen(self, url: str, lane: LaneName) -> None:
        site = str(self.settings.site_id)
        wake = self._wake[lane]
        from_wal = self.settings.capture == "wal"
        probe = "capture_wal_position" if from_wal else "replicator_outbox_head"
        to_int: Callable[[str], int] = lsn_int if from_wal else int
        listener = Listener(
            url,
            [_CHANNEL],
            f"scsync-listen-{lane}",
            tick_s=self.settings.outbox_probe_s,
            connect_timeout_s=self.settings.connect_timeout_s,
            retry_initial_s=self.settings.backoff_initial_s,
            retry_max_s=self.settings.backoff_max_s,
            # The lane finds out for itself whether the link is down.
            on_lost=lambda _exc: wake.set(),
        )
        head = 0
        async with contextlib.aclosing(wakes(listener)) as heard:
            async for w in heard:
                if self._stop.is_set():
                    return
                if w.fresh or any(n.payload in ("", site) for n in w.notes):
                    wake.set()  # hints sent while nobody listened are lost: look once
                # Also after every wake: a legacy writer wakes nobody. What moves is the
                # outbox's newest seq, or with the WAL capture the WAL's end.
                try:
                    cur = await asyncio.wait_for(
                        w.conn.execute(named(probe)),
                        timeout=min(10.0, self.settings.op_timeout_s),
                    )
                    row = await cur.fetchone()
                except (psycopg.Error, OSError, TimeoutError):
                    continue  # the listener's next wait finds the connection gone
                newest = 0 if row is None else to_int(str(row[0]))
                if newest > head:
                    head = newest
                    wake.set()

    async def _cloud_hints(self) -> None:
        """The pull lane's wake-ups: a long poll to the cloud API, renewed as it answers."""
        backoff = Backoff(self.settings.backoff_initial_s, self.settings.backoff_max_s)
        wake = self._wake["pull"]
        cloud = self.lanes["pull"].cloud
        # Answered well within the client's read timeout.
        hold = max(1.0, min(25.0, self.settings.op_timeout_s / 2))
        mark: str | None = None
        while not self._stop.is_set():
            try:
                changed, mark = await cloud.wait(hold, mark)
                if changed:
                    wake.set()
                backoff.reset()
            except (Unavailable, Refused) as exc:
                delay = backoff.next()
                log.warning("cloud hints: %s; again in %.1f s", exc, delay)
                wake.set()  # the lane finds out for itself whether the link is down
                await self._sleep(delay)

    async def _watchdog(self) -> None:
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while not self._stop.is_set():
            sdnotify.notify("WATCHDOG=1")
            await self._sleep(interval)


async def serve(
    settings: Settings,
    metrics: Metrics | None = None,
    blob_gate: BlobGate | None = None,
    install_signals: bool = True,
) -> int:
    """Run the daemon in the current event loop until SIGTERM/SIGINT; exit code."""
    daemon = Daemon(settings, metrics, blob_gate)
    if install_signals:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.stop)
    return await daemon.serve()


# Without the blob gate the push lane applies a file-bearing row at once; the cloud's
# files_blob_state trigger then marks it remote (metadata only), and nothing uploads
# its file later but a backfill's widened-scope pass or an on-demand request.
FILE_LANES_OFF = (
    "file lanes are off (no blobs_url, token and store in [files] of the config file, "
    "SCSYNC_BLOBS_URL/SCSYNC_SITE_TOKEN/SCSYNC_FILE_STORE or flags): file-bearing rows "
    "cross as metadata only (blob_state remote on the cloud) and their files stay on the "
    "site until `scsync backfill start` with the blob settings uploads them; files of "
    "pulled rows are not downloaded"
)


def run(settings: Settings, files: FilesSettings | None = None) -> int:
    """The replicator's entry point (``scsync replicator run``, ``scsync files run``):
    blocks until stopped. With ``files`` the file lanes run beside the row lanes
    (:func:`replicator.files.service.serve`)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from schema.redact import install

    install()  # no token or Authorization header in a log line, whoever writes it
    # Until the event loop takes over SIGTERM, stopping is simply exiting: nothing has
    # been started that needs finishing.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main: Coroutine[Any, Any, int]
    if files is None:
        log.warning(FILE_LANES_OFF)
        main = serve(settings)
    else:
        from replicator.files.service import serve as serve_with_files

        log.info("file lanes on: blobs %s, store %s", files.blobs_url, files.store_root)
        main = serve_with_files(settings, files)
    try:
        return asyncio.run(main)
    except Unavailable as exc:  # pragma: no cover - serve() retries; kept for safety
        log.error("replicator: %s", first_line(exc))
        return 1
