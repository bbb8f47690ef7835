"""WebSocket fan-out benchmark: N clients subscribed to one site, M record changes
committed to the local database, commit -> delivery latency per client and event.

Two servers run as their own processes, one after the other, with the same clients and
the same kind of change:

- ``scsync``: ``scsync api run --side local`` (JWT auth, subscriptions, the tenant wall,
  bounded per-client queues, the event log with ids);
- ``floor``: a bare aiohttp process that LISTENs on the same channel and, woken, reads
  the log after its last id (``scsync_api_events_after``: a statement's event row fanned
  out per record, revision 0012) and forwards what it reads to every socket, with none
  of that: the cost of a wake-up + one read + Python WebSocket fan-out on this machine.

Each change commits with ``scsync_wake()``, as an API's save does (no trigger notifies
since revision 0012; a legacy application's plain SQL wakes nobody and is read within
the listeners' poll, 0.25 s).

The clients are aiohttp tasks in this process (uvloop, like both servers) and subscribe
to ``record.changed`` only.
Latency = the client's receive time - the time just before COMMIT was sent (one clock,
this process). PostgreSQL is the embedded server (or ``SCSYNC_BENCH_PG_URL``).
Prints a table, then one JSON line: clients, events, p50_ms, p99_ms, delivered_ratio
(of the scsync run) and the floor's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import uvloop

from scsync.devdb import admin_url, new_database, percentile

SECRET = "bench-secret-0123456789abcdef-0123456789abcdef"

FLOOR = r"""
import asyncio, json, sys
import psycopg
import uvloop
from aiohttp import web

async def main(conninfo, port):
    sockets = set()

    async def ws(request):
        w = web.WebSocketResponse()
        await w.prepare(request)
        sockets.add(w)
        try:
            async for _ in w:
                pass
        finally:
            sockets.discard(w)
        return w

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    reader = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    await conn.execute("LISTEN scsync_api_events")
    cur = await reader.execute("SELECT scsync_api_events_newest()")
    last = (await cur.fetchone())[0]
    print(f'{{"listening": "http://127.0.0.1:{port}"}}', flush=True)
    async for _note in conn.notifies():
        # A notification is a wake-up only; what happened is read from the log.
        cur = await reader.execute(
            "SELECT id, json_build_object('type', type, 'record_id', row_id::text)::text"
            " FROM scsync_api_events_after(%s, NULL, 10000)",
            (last,),
        )
        for event_id, text in await cur.fetchall():
            last = max(last, event_id)
            if '"record.changed"' in text:
                for w in list(sockets):
                    if not w.closed:
                        await w.send_str(text)

uvloop.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _database(stack: ExitStack, admin: str) -> str:
    return new_database(stack, admin, f"bench_ws_{os.getpid()}", "local", 1, 1)


def _start(stack: ExitStack, args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}, stderr=sys.stderr
    )

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    stack.callback(stop)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("{"):
        raise RuntimeError(f"server did not start: {line!r}")
    return str(json.loads(line)["listening"])


async def _run(
    base: str, conninfo: str, clients: int, events: int, interval_s: float, scsync: bool
) -> dict[str, Any]:
    from schema.auth import issue_token

    token = issue_token(
        SECRET, side="local", subject="user:bench", kind="user", role="viewer", site_id=1
    )
    commit_at: dict[str, float] = {}
    latencies: list[float] = []
    received = [0]
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        sem = asyncio.Semaphore(100)

        async def connect() -> None:
            async with sem:
                params = {"token": token} if scsync else {}
                ws = await http.ws_connect(base.replace("http", "ws") + "/ws", params=params)
                if scsync:
                    await ws.receive_json(timeout=30)  # hello
                    await ws.send_json(
                        {"type": "subscribe", "site": 1, "events": ["record.changed"]}
                    )
                    ack = await ws.receive_json(timeout=30)
                    assert ack["type"] == "subscribed", ack
                sockets.append(ws)

        await asyncio.gather(*(connect() for _ in range(clients)))

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for msg in ws:
                now = time.perf_counter()
                ev = json.loads(msg.data)
                if ev.get("type") != "record.changed":
                    continue
                sent = commit_at.get(str(ev.get("record_id")))
                if sent is not None:
                    latencies.append((now - sent) * 1000)
                    received[0] += 1

        readers = [asyncio.create_task(reader(ws)) for ws in sockets]
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            cur = await conn.execute(
                "INSERT INTO doctors (site_id, name) SELECT 1, 'd' || g"
                " FROM generate_series(1, %s) g RETURNING id",
                (events,),
            )
            ids = [int(r[0]) for r in await cur.fetchall()]
            await conn.execute("SELECT scsync_wake()")
            await conn.commit()
            await asyncio.sleep(1.0)  # the inserts' own events pass before timing starts
            started = time.perf_counter()
            for i, row_id in enumerate(ids):
                await conn.execute(
                    "UPDATE doctors SET name = %s WHERE id = %s", (f"changed {i}", row_id)
                )
                await conn.execute("SELECT scsync_wake()")  # as an API's save does
                commit_at[str(row_id)] = time.perf_counter()
                await conn.commit()
                await asyncio.sleep(interval_s)
            expected = clients * events
            deadline = time.perf_counter() + 10
            while received[0] < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - started
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return {
        "clients": clients,
        "events": events,
        "delivered": received[0],
        "delivered_ratio": round(received[0] / expected, 4),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2) if latencies else float("nan"),
        "seconds": round(elapsed, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50 clients, 10 changes")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--events", type=int)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    args = parser.parse_args()
    clients = args.clients or (50 if args.quick else 1000)
    events = args.events or (10 if args.quick else 100)
    from scsync.embedded_pg import free_port

    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        conninfo = _database(stack, admin_url(stack))
        for name in ("scsync", "floor"):
            with ExitStack() as server:
                port = free_port()
                if name == "scsync":
                    cfg = Path(tempfile.mkdtemp(prefix="bench-ws-cfg-"))
                    server.callback(shutil.rmtree, cfg, True)
                    (cfg / "api.toml").write_text(
                        f"db_url = {json.dumps(conninfo)}\njwt_secret = {json.dumps(SECRET)}\n"
                        f"port = {port}\nws_queue_size = 4096\n"
                    )
                    cmd = [
                        sys.executable,
                        "-m",
                        "scsync",
                        "api",
                        "run",
                        "--side",
                        "local",
                        "--config",
                        str(cfg / "api.toml"),
                    ]
                else:
                    cmd = [sys.executable, "-c", FLOOR, conninfo, str(port)]
                base = _start(server, cmd, {})
                results[name] = uvloop.run(
                    _run(base, conninfo, clients, events, args.interval_ms / 1000, name == "scsync")
                )
    header = (
        f"{'server':<8} {'clients':>7} {'events':>6} {'delivered':>9} {'ratio':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
    )
    print(header)
    for name, r in results.items():
        print(
            f"{name:<8} {r['clients']:>7} {r['events']:>6} {r['delivered']:>9} "
            f"{r['delivered_ratio']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}"
        )
    s, f = results["scsync"], results["floor"]
    print(
        json.dumps(
            {
                "clients": s["clients"],
                "events": s["events"],
                "p50_ms": s["p50_ms"],
                "p99_ms": s["p99_ms"],
                "delivered_ratio": s["delivered_ratio"],
                "floor_p50_ms": f["p50_ms"],
                "floor_p99_ms": f["p99_ms"],
                "floor_delivered_ratio": f["delivered_ratio"],
            }
        )
    )


if __name__ == "__main__":
    main()
