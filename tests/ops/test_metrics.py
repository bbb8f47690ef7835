"""/metrics in Prometheus text format on the replicator and both APIs, read by
prometheus_client's own parser, with the figures the issue lists."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockd.db import make_pool
from lockd.manager import LeaseManager
from replicator.sites import register_site
from scsync.embedded_pg import free_port
from tests.pg import TestDatabase
from tests.polling import wait_until
from tests.world import CloudApi, replicator_toml

SECRET = "ops-metrics-tests-secret-0123456789abcdef"
METRICS_TOKEN = "ops-metrics-scrape-token-0123456789abcdef"
Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(url: str, token: str | None = None) -> Samples:
    """``token``: the API's metrics_token (the replicator's exporter, on its own
    loopback port, takes none)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    for lab, v in samples.get(name, []):
        if all(lab.get(k) == w for k, w in labels.items()):
            return v
    return None


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"proc-{len(started)}.log", "wb")  # noqa: SIM115
        p = subprocess.Popen(
            [sys.executable, "-m", "scsync", *args],
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_replicator_metrics(
    sync_api: CloudApi,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    tmp_path: Path,
    procs: Callable[..., subprocess.Popen[bytes]],
) -> None:
    creds = cloud_db.call(register_site, "clinic-metrics")
    port = free_port()
    config = tmp_path / "local.toml"
    config.write_text(
        "[replicator]\n"
        + replicator_toml(local_db.url, sync_api.url, creds.site_id)
        + f"poll_interval_s = 0.5\nmetrics_interval_s = 0.2\nmetrics_port = {port}\n",
        encoding="utf-8",
    )
    with local_db.connect(autocommit=True) as c:
        for i in range(5):
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, 'x')",
                (creds.site_id, f"M{i}"),
            )
        c.execute(
            "INSERT INTO scsync_dead_letters (lane, table_name, row_id, site_id, reason,"
            " next_retry_at) VALUES ('pull', 'patients', 42, %s, 'poisoned', now() + interval"
            " '1 hour')",
            (creds.site_id,),
        )
    proc = procs("replicator", "run", "--config", str(config))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(
        lambda: (value(scrape(url), "scsync_replication_rows_total", lane="push") or 0) >= 5,
        30,
        "5 pushed rows counted",
        interval=0.2,
        tolerate=(OSError,),
    )
    s = scrape(url)
    for name in (
        "scsync_replication_lag_seconds",
        "scsync_outbox_depth",
    ):
        assert value(s, name, lane="push") is not None and value(s, name, lane="pull") is not None
    assert value(s, "scsync_conflicts_open") == 0
    assert value(s, "scsync_parked_rows") == 1
    assert value(s, "scsync_local_db_up") == 1
    assert value(s, "scsync_file_bytes_synced") == 0
    assert value(s, "scsync_backfill_rows_total") is not None
    assert value(s, "scsync_backfill_progress_ratio") is not None
    assert proc.poll() is None
    proc.terminate()
    assert proc.wait(15) == 0


async def _ws_client(url: str, token: str, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"type": "auth", "token": token})
        await ws.receive_json(timeout=5)  # hello
        ready.set()
        await stop.wait()


def test_api_metrics(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    tmp_path: Path,
    procs: Callable[..., subprocess.Popen[bytes]],
) -> None:
    from schema.auth import issue_token

    creds = cloud_db.call(register_site, "clinic-metrics")
    ports = {"cloud": free_port(), "local": free_port()}
    for side, db in (("cloud", cloud_db), ("local", local_db)):
        cfg = tmp_path / f"{side}.toml"
        cfg.write_text(
            f"[api]\ndb_url = {json.dumps(db.url)}\njwt_secret = {json.dumps(SECRET)}\n"
            f"port = {ports[side]}\nmetrics_token = {json.dumps(METRICS_TOKEN)}\n",
            encoding="utf-8",
        )
        procs("api", "run", "--side", side, "--config", str(cfg))
    with cloud_db.connect(autocommit=True) as c:
        row = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, 'C', 'c') RETURNING id",
            (creds.site_id,),
        ).fetchone()
        assert row is not None
        c.execute(
            "INSERT INTO scsync_conflicts (table_name, row_id, site_id, detected_on)"
            " VALUES ('patients', %s, %s, 'cloud')",
            (row[0], creds.site_id),
        )
    with local_db.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, 'L', 'l')",
            (creds.site_id,),
        )

    async def scenario() -> tuple[Samples, Samples]:
        async with make_pool(cloud_db.url, min_size=1, max_size=1) as pool:
            await LeaseManager(pool).acquire("patients", int(str(row[0])), "cloud:1/bob", ttl_s=60)
        token = issue_token(
            SECRET,
            side="cloud",
            subject="user:bob",
            kind="user",
            role="viewer",
            site_id=creds.site_id,
        )
        ready, stop = asyncio.Event(), asyncio.Event()
        client = asyncio.create_task(
            _ws_client(f"http://127.0.0.1:{ports['cloud']}/ws", token, ready, stop)
        )
        await asyncio.wait_for(ready.wait(), 10)
        cloud = await asyncio.to_thread(
            scrape, f"http://127.0.0.1:{ports['cloud']}/metrics", METRICS_TOKEN
        )
        local = await asyncio.to_thread(
            scrape, f"http://127.0.0.1:{ports['local']}/metrics", METRICS_TOKEN
        )
        stop.set()
        await client
        return cloud, local

    for side in ("cloud", "local"):
        wait_until(
            lambda side=side: (
                urllib.request.urlopen(  # type: ignore[misc]
                    f"http://127.0.0.1:{ports[side]}/health", timeout=2
                ).status
                == 200
            ),
            30,
            f"{side} API",
            interval=0.2,
            tolerate=(OSError,),
        )
    cloud, local = asyncio.run(scenario())
    site = str(creds.site_id)
    assert value(cloud, "scsync_websocket_clients", side="cloud") == 1
    assert value(local, "scsync_websocket_clients", side="local") == 0
    assert value(cloud, "scsync_leases_live", site=site) == 1
    assert value(cloud, "scsync_conflicts_open", side="cloud", site=site) == 1
    assert (value(cloud, "scsync_outbox_depth", side="cloud", site=site) or 0) >= 1
    assert (value(local, "scsync_outbox_depth", side="local", site=site) or 0) >= 1
    assert (value(local, "scsync_outbox_oldest_seconds", side="local", site=site) or -1) >= 0
    assert "scsync_leases_live" not in local
