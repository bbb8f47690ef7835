"""Issue #15, availability under hostile input: the cloud API serves lockd, blobs and
every socket in one event loop, so nothing a caller sends may stall it. Real API
processes; ``/health`` is probed from this process while the hostile load runs."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from schema.auth import site_token
from scsync.embedded_pg import free_port
from scsync.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint
from tests.api.conftest import SECRET, ApiProcess, add_user, start_api, write_config
from tests.pg import TestDatabase

HEALTH_BUDGET_S = 0.050
# A hundred wrong passwords for one account, as fast as ten connections carry them.
BURST = """
import asyncio, json, sys
import aiohttp

async def main(url):
    connector = aiohttp.TCPConnector(limit=10)
    async with aiohttp.ClientSession(connector=connector) as s:
        async def attempt(i):
            body = {"username": "alice", "password": f"wrong {i}", "site_id": 1}
            async with s.post(url + "/v1/auth/token", json=body) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After")
        print(json.dumps(await asyncio.gather(*(attempt(i) for i in range(100)))))

asyncio.run(main(sys.argv[1]))
"""


async def _probe_health_while(
    url: str, load: Callable[[], Awaitable[Any]]
) -> tuple[Any, list[float]]:
    """Run ``load`` while /health is asked every 10 ms on a connection of its own; the
    load's result and every /health latency (seconds)."""
    latencies: list[float] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession() as probe:
        # Warm the connection, so the first probe measures the server, not a connect.
        async with probe.get(url + "/health") as resp:
            assert resp.status == 200

        async def prober() -> None:
            while not done.is_set():
                started = time.perf_counter()
                async with probe.get(url + "/health") as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(prober())
        try:
            result = await load()
        finally:
            done.set()
            await task
    return result, latencies


def _assert_fast(latencies: list[float]) -> None:
    """/health within HEALTH_BUDGET_S. Held by the median and bounded at five times the
    budget for single probes: on the shared 2-core test machine (load 7-10) single
    probes met 50-110 ms of CPU scheduling even with the API idle between its turns,
    while the old code's stalls were 0.6 s (passwords) and seconds (part URLs)."""
    ms = sorted(latencies)
    assert ms and statistics.median(ms) < HEALTH_BUDGET_S, _report("/health", latencies)
    assert ms[-1] < 5 * HEALTH_BUDGET_S, _report("/health", latencies)


def _report(name: str, latencies: list[float]) -> str:
    ms = sorted(x * 1000 for x in latencies)
    return (
        f"{name}: {len(ms)} probes, median {statistics.median(ms):.1f} ms, "
        f"p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, max {ms[-1]:.1f} ms"
    )


async def test_health_stays_fast_during_a_burst_of_wrong_passwords(
    cloud_db: TestDatabase, tmp_path: Path, processes: list[ApiProcess]
) -> None:
    add_user(cloud_db, "alice", "editor", site_id=1)
    api = start_api("cloud", write_config(tmp_path / "cloud.toml", cloud_db, free_port()))
    processes.append(api)

    async def burst() -> list[tuple[int, str | None]]:
        # From a process of its own: the burst's client work must not delay the probe,
        # which measures the server alone.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BURST, api.url, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        return [(int(a), b) for a, b in json.loads(out)]

    _, idle = await _probe_health_while(api.url, lambda: asyncio.sleep(1.5))
    print(_report("/health idle", idle))
    answers, latencies = await _probe_health_while(api.url, burst)
    print(_report("/health during 100 wrong passwords", latencies))
    statuses = [status for status, _ in answers]
    assert set(statuses) == {401, 429}, statuses
    # Only the first few were checked at all; the rest were told when to come back.
    assert statuses.count(401) == 5
    assert all(int(str(retry)) >= 1 for status, retry in answers if status == 429)
    _assert_fast(latencies)
    # The right password is refused too while the account is throttled.
    async with aiohttp.ClientSession() as s:
        body = {"username": "alice", "password": "correct horse battery", "site_id": 1}
        async with s.post(api.url + "/v1/auth/token", json=body) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["error"] == "too_many_requests"


PLAN = """
import asyncio, json, sys
import aiohttp

async def main(url, token, size):
    async with aiohttp.ClientSession() as s:
        async with s.post(url, json={"size": int(size)},
                          headers={"Authorization": "Bearer " + token}) as resp:
            body = await resp.json()
            print(json.dumps([resp.status, body.get("part_count"), len(body.get("parts", []))]))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_health_stays_fast_while_a_max_size_upload_plan_is_signed(
    cloud_db: TestDatabase,
    s3_endpoint: S3Endpoint,
    tmp_path: Path,
    processes: list[ApiProcess],
) -> None:
    bucket = f"scsync-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=bucket)
    biggest = 10_000 * 16 * 1024 * 1024  # S3's most parts, at the default part size
    config = write_config(
        tmp_path / "cloud.toml",
        cloud_db,
        free_port(),
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint.url,
        s3_region=REGION,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        blob_max_size=biggest,
    )
    api = start_api("cloud", config)
    processes.append(api)
    url = api.url + "/v1/blobs/sites/1/blobs/" + "ab" * 32 + "/upload"

    async def plan(size: int) -> list[int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PLAN,
            url,
            site_token(SECRET, 1),
            str(size),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        answer: list[int] = json.loads(out)
        return answer

    answer, latencies = await _probe_health_while(api.url, lambda: plan(biggest))
    print(_report("/health while 10,000 part URLs are signed", latencies))
    assert answer == [200, 10_000, 10_000]
    _assert_fast(latencies)
    status, _, _ = await plan(biggest + 1)
    assert status == 400
