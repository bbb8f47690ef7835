"""Prometheus ``/metrics`` of the replicator (prometheus_client's own HTTP server in a
thread, on ``metrics_port``): the daemon's in-process registry (lag, outbox depth, rows
moved, conflicts open, parked records, reconnects) plus figures read from the local
database at scrape time (parked rows now, file bytes crossed, backfill progress), read
on the daemon's event loop through the runtime layer (schema.database)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from replicator.metrics import Metrics
from schema import database
from schema.errors import DatabaseUnavailable, ScsyncError

log = logging.getLogger(__name__)


# How long a scrape waits for the figures read from the local database.
SCRAPE_DB_TIMEOUT_S = 5.0


class ReplicatorCollector(Collector):
    """Collects on prometheus_client's thread; the database figures are read by the
    daemon's event loop (``loop``) on the runtime layer and handed over."""

    def __init__(
        self, metrics: Metrics, local_db_url: str, site_id: int, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.metrics = metrics
        self.local_db_url = local_db_url
        self.site_id = site_id
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        for name, samples in sorted(self.metrics.snapshot().items()):
            labels = sorted({k for lab, _ in samples for k in lab})
            family: GaugeMetricFamily | CounterMetricFamily
            if name.endswith("_total"):
                family = CounterMetricFamily(name.removesuffix("_total"), name, labels=labels)
            else:
                family = GaugeMetricFamily(name, name, labels=labels)
            for lab, value in samples:
                family.add_metric([lab.get(k, "") for k in labels], value)
            yield family
        up = GaugeMetricFamily("scsync_local_db_up", "1 when the scrape could read the local DB")
        try:
            figures = asyncio.run_coroutine_threadsafe(self._read(), self.loop).result(
                SCRAPE_DB_TIMEOUT_S
            )
        except (ScsyncError, TimeoutError, RuntimeError) as exc:
            log.warning("metrics: local database: %s", exc)
            up.add_metric([], 0)
        else:
            yield from _families(figures)
            up.add_metric([], 1)
        yield up

    async def _read(self) -> _Figures:
        from replicator.files.backfill import read_progress

        site = {"site_id": self.site_id}
        async with database.connect(self.local_db_url, ERRORS, name="scsync-metrics") as conn:
            parked = await database.fetch_value(conn, "ops_dead_letters_count", site) or 0
            synced = await database.fetch_value(conn, "ops_file_bytes_synced", site) or 0
            progress = (await read_progress(conn, self.site_id)).as_dict()
        return _Figures(int(parked), float(synced), progress)


# An unreachable local database (or any error reading it) is a scrape without figures.
ERRORS = database.SCHEMA.extend({}, other=lambda e: DatabaseUnavailable(e.message))


@dataclass(frozen=True)
class _Figures:
    parked: int
    synced_bytes: float
    progress: dict[str, Any]


def _families(f: _Figures) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "scsync_parked_rows", "records parked (dead letters) now, local DB", value=f.parked
    )
    yield GaugeMetricFamily(
        "scsync_file_bytes_synced",
        "bytes of this site's files whose rows have crossed",
        value=f.synced_bytes,
    )
    for key in ("rows_total", "rows_done", "bytes_total", "bytes_done"):
        yield GaugeMetricFamily(
            f"scsync_backfill_{key}", f"backfill {key.replace('_', ' ')}", value=f.progress[key]
        )
    total = f.progress["rows_total"] or 0
    yield GaugeMetricFamily(
        "scsync_backfill_progress_ratio",
        "rows done / rows total (1 when nothing is left)",
        value=1.0 if not total else f.progress["rows_done"] / total,
    )


@dataclass
class Exporter:
    server: Any
    thread: Any

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(metrics: Metrics, settings: Any) -> Exporter | None:
    """Serve /metrics on ``settings.metrics_port`` (0: not at all). Called on the
    daemon's event loop, which reads the database figures of each scrape."""
    port = int(getattr(settings, "metrics_port", 0) or 0)
    if not port:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        ReplicatorCollector(
            metrics, settings.local_db_url, settings.site_id, asyncio.get_running_loop()
        )
    )
    server, thread = start_http_server(port, settings.metrics_host, registry)
    log.info("metrics on http://%s:%s/metrics", settings.metrics_host, port)
    return Exporter(server, thread)
