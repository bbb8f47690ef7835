"""Prometheus ``/metrics`` of the replicator (prometheus_client's own HTTP server in a
thread, on ``metrics_port``): the daemon's in-process registry (lag, outbox depth, rows
moved, conflicts open, parked records, reconnects) plus figures read from the local
database at scrape time (parked rows now, file bytes crossed, backfill progress)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from replicator.metrics import Metrics
from schema.sql import query
from schema.urls import libpq_url

log = logging.getLogger(__name__)


class ReplicatorCollector(Collector):
    def __init__(self, metrics: Metrics, local_db_url: str, site_id: int) -> None:
        self.metrics = metrics
        self.local_db_url = local_db_url
        self.site_id = site_id

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
            yield from self._from_db()
            up.add_metric([], 1)
        except (psycopg.Error, OSError) as exc:
            log.warning("metrics: local database: %s", exc)
            up.add_metric([], 0)
        yield up

    def _from_db(self) -> Iterator[Metric]:
        site = {"site_id": self.site_id}
        with psycopg.connect(
            libpq_url(self.local_db_url), connect_timeout=2, autocommit=True
        ) as conn:
            (parked,) = conn.execute(query("ops_dead_letters_count"), site).fetchone() or (0,)
            (synced_bytes,) = conn.execute(query("ops_file_bytes_synced"), site).fetchone() or (0,)
        yield GaugeMetricFamily(
            "scsync_parked_rows", "records parked (dead letters) now, local DB", value=parked
        )
        yield GaugeMetricFamily(
            "scsync_file_bytes_synced",
            "bytes of this site's files whose rows have crossed",
            value=float(synced_bytes),
        )
        progress = asyncio.run(_backfill(self.local_db_url, self.site_id))
        for key in ("rows_total", "rows_done", "bytes_total", "bytes_done"):
            yield GaugeMetricFamily(
                f"scsync_backfill_{key}", f"backfill {key.replace('_', ' ')}", value=progress[key]
            )
        total = progress["rows_total"] or 0
        yield GaugeMetricFamily(
            "scsync_backfill_progress_ratio",
            "rows done / rows total (1 when nothing is left)",
            value=1.0 if not total else progress["rows_done"] / total,
        )


async def _backfill(url: str, site_id: int) -> dict[str, Any]:
    from replicator.files.backfill import read_progress
    from replicator.files.localdb import connect

    conn = await connect(url)
    try:
        return (await read_progress(conn, site_id)).as_dict()
    finally:
        await conn.close()


@dataclass
class Exporter:
    server: Any
    thread: Any

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start(metrics: Metrics, settings: Any) -> Exporter | None:
    """Serve /metrics on ``settings.metrics_port`` (0: not at all)."""
    port = int(getattr(settings, "metrics_port", 0) or 0)
    if not port:
        return None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReplicatorCollector(metrics, settings.local_db_url, settings.site_id))
    server, thread = start_http_server(port, settings.metrics_host, registry)
    log.info("metrics on http://%s:%s/metrics", settings.metrics_host, port)
    return Exporter(server, thread)
