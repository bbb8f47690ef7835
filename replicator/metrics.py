"""A plain in-process metrics registry: lag, rows per lane, outbox depth, conflicts open.

Kept free of any exporter so the API (or a Prometheus bridge) can expose a
:meth:`Metrics.snapshot` later without the replicator depending on it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]


@dataclass
class Metrics:
    """Gauges and counters keyed by name and labels; safe to read from another thread."""

    _gauges: dict[tuple[str, Labels], float] = field(default_factory=dict)
    _counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    started_at: float = field(default_factory=time.time)

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> tuple[str, Labels]:
        return name, tuple(sorted(labels.items()))

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[self._key(name, labels)] = float(value)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = self._key(name, labels)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0.0) + value

    def get(self, name: str, **labels: str) -> float | None:
        key = self._key(name, labels)
        with self._lock:
            if key in self._gauges:
                return self._gauges[key]
            return self._counters.get(key)

    def snapshot(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """{metric name: [(labels, value), ...]} of every gauge and counter."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        with self._lock:
            for (name, labels), value in [*self._gauges.items(), *self._counters.items()]:
                out.setdefault(name, []).append((dict(labels), value))
        return out


# Metric names (documented in docs/replicator.md).
LAG_SECONDS = "scsync_replication_lag_seconds"  # gauge, lane: oldest unsent change's age
ROWS = "scsync_replication_rows_total"  # counter, lane + outcome
BATCHES = "scsync_replication_batches_total"  # counter, lane
OUTBOX_DEPTH = "scsync_outbox_depth"  # gauge, lane: outbox rows waiting at the source
CONFLICTS_OPEN = "scsync_conflicts_open"  # gauge
DEAD_LETTERS = "scsync_dead_letters_total"  # counter, lane: records parked
RECONNECTS = "scsync_replication_reconnects_total"  # counter, lane
# The WAL capture's slot (capture = "wal"): the WAL it keeps on the site's disk, and
# whether that WAL is safe (1 while wal_status is reserved or extended; 0 when it is
# unreserved or lost: past max_slot_wal_keep_size, a resync follows).
CAPTURE_RETAINED = "scsync_capture_retained_wal_bytes"  # gauge
CAPTURE_SAFE = "scsync_capture_wal_safe"  # gauge
# Its confirmed position (the cloud committed and the site acknowledged everything
# before it; the LSN as a number) and the WAL written past it (the whole cluster's).
CAPTURE_CONFIRMED_LSN = "scsync_capture_confirmed_lsn"  # gauge
CAPTURE_UNCONFIRMED = "scsync_capture_unconfirmed_wal_bytes"  # gauge
