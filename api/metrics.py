"""``GET /metrics``: Prometheus text format (prometheus_client) of one API instance.

WebSocket clients of this instance, and from its database at scrape time: outbox depth
and lag per site, rows moved and apply lag per lane, open conflicts, parked rows, live
leases (cloud) and backfill progress (local). Counts only, no record data; but the
cloud's are per site, so the endpoint answers only the monitoring's own bearer token
(setting ``metrics_token``) and is off without one.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api import state, store
from api.errors import NotFound, Unauthorized
from api.settings import Settings
from schema.auth import AuthError, bearer


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _gauge(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float]]) -> Metric:
    g = GaugeMetricFamily(name, doc, labels=labels)
    for values, v in rows:
        g.add_metric(values, v)
    return g


async def _rows(conn: store.Conn, name: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await store.fetch_all(conn, store.q(name), {})]


def check_scrape_token(settings: Settings, header: str | None) -> None:
    """The wall of ``/metrics``: the setting ``metrics_token`` as a bearer token, and
    nothing else (a user's or a site's JWT opens no metrics). Unset: metrics are off."""
    if not settings.metrics_token:
        raise NotFound(
            "metrics are off: set metrics_token in [api] (or SCSYNC_API_METRICS_TOKEN) and"
            " give it to Prometheus as the scrape's bearer token",
            field="metrics_token",
        )
    try:
        given = bearer(header)
    except AuthError as exc:
        raise Unauthorized(f"/metrics wants the metrics token: {exc}") from exc
    if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
        raise Unauthorized("/metrics wants the metrics token (setting metrics_token)")


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    check_scrape_token(app[state.SETTINGS], request.headers.get("Authorization"))
    side = app[state.SETTINGS].side
    hub = app[state.HUB]
    fam: list[Metric] = [
        _gauge(
            "scsync_websocket_clients",
            "WebSocket clients of this instance",
            ["side"],
            [([side], float(len(hub.subscribers)))],
        ),
        _gauge(
            "scsync_api_last_event_id",
            "id of the last event seen",
            ["side"],
            [([side], float(hub.last_id or 0))],
        ),
    ]
    async with store.transaction(app[state.POOL], wake=False) as conn:
        outbox = await _rows(conn, "ops_metrics_outbox")
        cursors = await _rows(conn, "ops_metrics_cursors")
        conflicts = await _rows(conn, "ops_conflicts_by_site")
        parked = await _rows(conn, "ops_parked_by_site")
        leases = await _rows(conn, "ops_metrics_leases") if side == "cloud" else []
        backfill = await _rows(conn, "ops_metrics_backfill") if side == "local" else []
    fam += [
        _gauge(
            "scsync_outbox_depth",
            "changes waiting in this side's outbox",
            ["side", "site"],
            [([side, str(r["site_id"])], float(r["depth"])) for r in outbox],
        ),
        _gauge(
            "scsync_outbox_oldest_seconds",
            "age of the oldest waiting change (lag)",
            ["side", "site"],
            [([side, str(r["site_id"])], float(r["oldest_s"])) for r in outbox],
        ),
        _gauge(
            "scsync_lane_rows_applied",
            "rows a lane has applied on this side",
            ["lane", "site"],
            [([r["lane"], str(r["site_id"])], float(r["rows_applied"] or 0)) for r in cursors],
        ),
        _gauge(
            "scsync_lane_apply_lag_seconds",
            "last apply minus the source commit of what it applied",
            ["lane", "site"],
            [([r["lane"], str(r["site_id"])], float(r["lag_s"])) for r in cursors],
        ),
        _gauge(
            "scsync_conflicts_open",
            "open conflicts",
            ["side", "site"],
            [([side, str(r["site_id"])], float(r["open"])) for r in conflicts],
        ),
        _gauge(
            "scsync_parked_rows",
            "records parked by a lane (dead letters)",
            ["side", "site"],
            [([side, str(r["site_id"])], float(r["parked"])) for r in parked],
        ),
    ]
    if side == "cloud":
        fam.append(
            _gauge(
                "scsync_leases_live",
                "live edit leases",
                ["site"],
                [([str(r["site_id"])], float(r["count"])) for r in leases],
            )
        )
    for r in backfill:
        for key in ("rows_total", "rows_done", "bytes_total", "bytes_done"):
            fam.append(
                _gauge(
                    f"scsync_backfill_{key}",
                    f"backfill {key}",
                    ["state"],
                    [([str(r["state"])], float(r[key] or 0))],
                )
            )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(fam))
    return web.Response(
        body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
