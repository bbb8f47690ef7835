"""Sites benchmark (issue #14): one cloud API instance holding N sites' wake-ups while
some of them push and pull, and what that costs the API and the cloud database.

One embedded PostgreSQL (or ``SCSYNC_BENCH_PG_URL``) holds the cloud database with N
registered sites; the cloud API runs as its own process (``scsync api run --side
cloud``, its default pools); the sites are simulated by a few client processes (asyncio
+ uvloop + aiohttp, the replicator's own :class:`replicator.cloud_client.CloudEnd`, one
HTTP session per site as a replicator has). Every site holds a ``pull/wait`` long poll
and re-polls as it answers, as ``replicator/daemon.py`` does (hold 25 s). The active
sites also

- push: every ``PUSH_INTERVAL_S`` a batch of ``PUSH_ROWS`` new ``doctors`` rows through
  ``push/apply`` (the previous batch's inbox entry forgotten with it, as a lane does);
- pull: this process inserts a row for the site on the cloud database (as a cloud-side
  app would), round robin over the active sites, each site every ``PULL_INTERVAL_S``;
  the site's wait answers, it ``pull/read``s, finds the row and ``pull/ack``s it. Pull
  latency = the time just before the INSERT is sent -> the site has read the row (one
  machine's wall clock across processes).

Phases, one run: the API's (and PostgreSQL's) CPU with no site connected; the
comparison peer: the same pull and push loop with ONE site connected (a cloud write for
it every ``PEER_PULL_INTERVAL_S``, for more samples); then all N sites connect (first
holds spread over one hold period, pushes at each site's own phase: no synchronised
bursts), the CPU and RSS with all of them idle over one hold period (every site
re-polls about once); then the load with the active sites (``--load-s``).
``pg_stat_activity`` of the cloud database is sampled all along (the API's connections:
everything but this benchmark's own, which name themselves), with what the busy ones
wait for, and ``GET /health`` (no pool, no database: the API's loop and the scheduler).
``pg_stat_user_functions`` (track_functions) gives each lane function's calls and time.
CPU of the API, the PostgreSQL server, the clients and the whole machine come from
/proc: the machine is shared, so the table says how busy it was.

Targets: the API's database connections stay within its pools' ceiling (nothing grows
with sites), pull p99 <= 1000 ms, API peak RSS <= 600 MB. The per-site cost of a held
wait (RSS between 0 and N sites; API and PostgreSQL CPU per re-poll) is extrapolated to
10,000 sites at the daemon's 25 s hold.

Full run: 1,000 sites, 50 active, 4 client processes, 40 s of load. ``--quick``: 100
sites, 10 active, 8 s, a 4 s hold. ``--profile FILE`` records the API with py-spy during
the load. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: bench/ is on the path, the repository not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._cloud_api import JWT_SECRET, CloudApi

APP_NAME = "bench-sites"  # this benchmark's own connections, not counted as the API's
HOLD_S = 25.0  # the replicator's long-poll hold (daemon.py: min(25, op_timeout_s / 2))
QUICK_HOLD_S = 4.0  # --quick: so that its short idle window still sees every site re-poll
PUSH_ROWS = 10
PUSH_INTERVAL_S = 1.0
PULL_INTERVAL_S = 1.0  # per active site
PEER_PULL_INTERVAL_S = 0.2  # the one-site peer: more samples in a short phase
POOL_MAX = 10  # the API's pool_max (its default; --pool-max to try others)
TARGET_PULL_P99_MS = 1000.0
TARGET_RSS_MB = 600.0


# -- the simulated sites (a client process) ------------------------------------------------


def _client_main() -> None:
    import uvloop

    config = json.loads(sys.stdin.readline())
    uvloop.run(_client(config))


def _emit(**values: Any) -> None:
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


async def _client(config: dict[str, Any]) -> None:
    from replicator.cloud_client import CloudClient, CloudEnd
    from replicator.errors import ReplicatorError
    from replicator.settings import load_settings
    from schema.lanes import BatchRow
    from schema.snowflake import compose

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    go = asyncio.Event()
    latencies: list[float] = []
    push_ms: list[float] = []
    errors: dict[str, int] = {}
    waits = [0]
    wait_answers = [0]

    def error(what: str, exc: BaseException) -> None:
        key = f"{what}: {type(exc).__name__}: {str(exc)[:120]}"
        errors[key] = errors.get(key, 0) + 1

    async def commands() -> None:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if line.strip() == "go":
                go.set()
            elif line.strip() == "count":
                _emit(waits=waits[0])
            elif line.strip() in ("stop", ""):
                stop.set()
                return

    async def site(spec: dict[str, Any]) -> None:
        site_id, node, active = int(spec["id"]), int(spec["node"]), bool(spec["active"])
        settings = load_settings(
            None,
            local_db_url="postgresql://unused/bench",
            cloud_api_url=config["base"],
            site_token=spec["token"],
            site_id=site_id,
            op_timeout_s=60.0,
            connect_timeout_s=30,
        )
        client = CloudClient(settings)
        holder = f"bench/site-{site_id}"
        pull, push = CloudEnd(client, "pull", holder), CloudEnd(client, "push", holder)
        wake = asyncio.Event()

        async def hints() -> None:
            mark: str | None = None
            # The first hold is spread over one hold period: sites that connected at
            # one moment would otherwise re-poll in one burst every period, which a
            # cloud's sites (connected over days) do not.
            hold = random.uniform(0.5, config["hold_s"])
            while not stop.is_set():
                try:
                    waits[0] += 1
                    changed, mark = await pull.wait(hold, mark)
                    hold = config["hold_s"]
                    wait_answers[0] += 1
                    if changed:
                        wake.set()
                except ReplicatorError as exc:
                    error("wait", exc)
                    await asyncio.sleep(1.0)

        async def puller() -> None:
            await go.wait()
            while not stop.is_set():
                waiter = asyncio.create_task(wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                if stop.is_set():
                    return
                wake.clear()
                try:
                    while True:
                        rows = await pull.read("pull", 100, {}, [])
                        now = time.time()
                        if not rows:
                            break
                        for r in rows:
                            name = json.loads(r.row_data or "{}").get("name", "")
                            if name.startswith("pull:"):
                                latencies.append((now - int(name[5:]) / 1e9) * 1000)
                        ack = [
                            {"t": r.table_name, "id": r.row_id, "revs": [r.revision]} for r in rows
                        ]
                        seqs = [s for r in rows for s in r.seqs]
                        await pull.ack("pull", seqs, json.dumps(ack))
                except ReplicatorError as exc:
                    error("pull", exc)
                    wake.set()
                    await asyncio.sleep(0.5)

        async def pusher() -> None:
            await go.wait()
            columns = {
                "doctors": [
                    "id",
                    "site_id",
                    "version_major",
                    "version_minor",
                    "revision",
                    "deleted",
                    "sync_enabled",
                    "created_at",
                    "updated_at",
                    "name",
                ]
            }
            forget: list[int] = []
            seq = 0
            # Each site at its own phase of the interval: started together, the sites
            # would push in one burst a second (which a cloud's sites do not).
            started = time.monotonic() + random.uniform(0, PUSH_INTERVAL_S)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), started - time.monotonic())
            n = 0
            while not stop.is_set():
                batch: list[BatchRow] = []
                now = dt_now()
                ms = int((time.time() - 1_577_836_800) * 1000)  # since 2020-01-01
                for _ in range(PUSH_ROWS):
                    seq += 1
                    row_id = compose(ms, node, seq % 1024)
                    revision = compose(ms, node, (seq + 512) % 1024)
                    data = {
                        "id": row_id,
                        "site_id": site_id,
                        "version_major": 1,
                        "version_minor": 0,
                        "revision": revision,
                        "deleted": False,
                        "sync_enabled": True,
                        "created_at": now.isoformat(),
                        "updated_at": now.isoformat(),
                        "name": f"push {seq}",
                    }
                    batch.append(
                        BatchRow(
                            len(batch) + 1,
                            [seq],
                            "doctors",
                            row_id,
                            "U",
                            revision,
                            None,
                            json.dumps(data),
                            now,
                            None,
                        )
                    )
                t0 = time.perf_counter()
                try:
                    applied = await push.apply("push", batch, columns, forget, now, None, False)
                    push_ms.append((time.perf_counter() - t0) * 1000)
                    forget = [] if applied.batch_id is None else [applied.batch_id]
                except ReplicatorError as exc:
                    error("push", exc)
                n += 1
                # Ids and revisions are Snowflakes of the site's node: the batch's
                # millisecond and a sequence (each batch is a new millisecond).
                delay = started + n * PUSH_INTERVAL_S - time.monotonic()
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.002, delay))

        tasks = [asyncio.create_task(hints())]
        if active:
            tasks += [asyncio.create_task(puller()), asyncio.create_task(pusher())]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()

    cmd = asyncio.create_task(commands())
    sites = [asyncio.create_task(site(s)) for s in config["sites"]]
    # Every site's first wait is on its way (the API holds it once it arrives).
    while waits[0] < len(sites):
        await asyncio.sleep(0.05)
    _emit(connected=len(sites))
    await stop.wait()
    await asyncio.gather(*sites, return_exceptions=True)
    cmd.cancel()
    _emit(
        latencies_ms=latencies,
        push_ms=push_ms,
        errors=errors,
        waits=waits[0],
        wait_answers=wait_answers[0],
    )


def dt_now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


# -- the driver ------------------------------------------------------------------------------


def cpu_s(pid: int, children: bool = False) -> float:
    """CPU seconds of a process (with its reaped children's: ``children``); 0 when it is
    not on this machine or gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_s(postmaster: int | None) -> float:
    """The PostgreSQL server's CPU seconds: the postmaster and every child (the reaped
    ones through the postmaster's own account)."""
    if postmaster is None:
        return 0.0
    total = cpu_s(postmaster, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == postmaster:
                total += cpu_s(int(entry))
    return total


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


class Api(CloudApi):
    """The cloud API process (bench/_cloud_api.py): its CPU ticks and memory from /proc."""

    def cpu_s(self) -> float:
        return cpu_s(self.proc.pid)

    def mem_mb(self, key: str) -> float:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        return 0.0


class Sampler:
    """pg_stat_activity of the cloud database every 0.2 s: the API's connections, how
    many are in a statement, and what those wait for (where a pull's time goes)."""

    def __init__(self, url: str, api_url: str) -> None:
        import psycopg

        from schema.urls import libpq_url

        self.api_url = api_url
        self.health_ms: list[float] = []
        self.conn = psycopg.connect(libpq_url(url), autocommit=True, application_name=APP_NAME)
        self.postmaster: int | None = None
        try:  # the server's processes, when it runs on this machine
            with open(f"/proc/{self.conn.info.backend_pid}/stat", encoding="ascii") as fh:
                self.postmaster = int(fh.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
        self.peak = 0
        self.now = 0
        self.samples = 0
        self.active = 0  # summed over samples
        self.idle_tx = 0  # in a transaction, waiting for the API: summed over samples
        self.waits: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        rows = self.conn.execute(
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'CPU'),"
            " left(regexp_replace(query, '\\s+', ' ', 'g'), 60)"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND backend_type = 'client backend' AND application_name <> %s",
            (APP_NAME,),
        ).fetchall()
        self.now = len(rows)
        self.peak = max(self.peak, self.now)
        self.samples += 1
        for state, wait, text in rows:
            if state == "idle in transaction":
                self.idle_tx += 1
            if state == "active" and not text.startswith("LISTEN"):
                self.active += 1
                key = f"{wait} {text}"
                self.waits[key] = self.waits.get(key, 0) + 1

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()
            # GET /health does nothing but answer: its latency is the API's event loop
            # (and the scheduler's) delay, no pool or database in it.
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=30):
                    self.health_ms.append((time.perf_counter() - t0) * 1000)
            except OSError:
                pass

    def functions(self) -> dict[str, tuple[int, float]]:
        """Calls and total ms of the database's functions so far (track_functions)."""
        rows = self.conn.execute(
            "SELECT funcname, calls, total_time FROM pg_stat_user_functions"
        ).fetchall()
        return {str(name): (int(calls), float(ms)) for name, calls, ms in rows}

    def reset(self) -> dict[str, Any]:
        """The figures since the last reset."""
        got = {
            "health_ms": self.health_ms,
            "peak": self.peak,
            "active_mean": self.active / max(1, self.samples),
            "idle_tx_mean": self.idle_tx / max(1, self.samples),
            "waits": sorted(self.waits.items(), key=lambda kv: -kv[1])[:6],
            "samples": self.samples,
        }
        self.peak, self.samples, self.active, self.waits, self.idle_tx = 0, 0, 0, {}, 0
        self.health_ms = []
        return got

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.conn.close()


class Writer:
    """Cloud-side writes for the active sites, round robin, each site every
    ``interval_s``: one row per INSERT, its name the time just before it was sent."""

    def __init__(self, url: str, sites: list[int], interval_s: float) -> None:
        import psycopg

        from schema.urls import libpq_url

        self.conn = psycopg.connect(libpq_url(url), autocommit=True, application_name=APP_NAME)
        self.sites, self.interval_s = sites, interval_s
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        step = self.interval_s / len(self.sites)
        started = time.monotonic()
        i = 0
        while not self._stop.is_set():
            delay = started + i * step - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            site = self.sites[i % len(self.sites)]
            self.conn.execute(
                "INSERT INTO doctors (site_id, name) VALUES (%s, %s)",
                (site, f"pull:{time.time_ns()}"),
            )
            self.written += 1
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


class Clients:
    """The client processes; each takes its slice of the sites."""

    def __init__(
        self, stack: ExitStack, base: str, sites: list[dict[str, Any]], n: int, hold_s: float
    ) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        slices = [sites[i::n] for i in range(n)]
        for part in slices:
            if not part:
                continue
            proc = subprocess.Popen(
                [sys.executable, __file__, "--client"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            stack.callback(self._kill, proc)
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"base": base, "sites": part, "hold_s": hold_s}) + "\n")
            proc.stdin.flush()
            self.procs.append(proc)
        for proc in self.procs:
            self._read(proc, "connected")

    @staticmethod
    def _kill(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)

    @staticmethod
    def _read(proc: subprocess.Popen[str], key: str) -> dict[str, Any]:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a client process ended (exit {proc.wait()}) before {key!r}")
        got: dict[str, Any] = json.loads(line)
        if key not in got:
            raise RuntimeError(f"a client said {line!r}, not {key!r}")
        return got

    def send(self, command: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(command + "\n")
            proc.stdin.flush()

    def cpu_s(self) -> float:
        return sum(cpu_s(proc.pid) for proc in self.procs)

    def waits(self) -> int:
        """Wait requests the sites have sent so far."""
        self.send("count")
        return sum(int(self._read(proc, "waits")["waits"]) for proc in self.procs)

    def results(self) -> dict[str, Any]:
        self.send("stop")
        out: dict[str, Any] = {
            "latencies_ms": [],
            "push_ms": [],
            "errors": {},
            "waits": 0,
            "wait_answers": 0,
        }
        for proc in self.procs:
            got = self._read(proc, "latencies_ms")
            out["latencies_ms"] += got["latencies_ms"]
            out["push_ms"] += got["push_ms"]
            out["waits"] += got["waits"]
            out["wait_answers"] += got["wait_answers"]
            for k, v in got["errors"].items():
                out["errors"][k] = out["errors"].get(k, 0) + v
            proc.wait(30)
        return out


def register(url: str, n: int) -> list[dict[str, Any]]:
    """N sites on the cloud, each with its node id and a site token."""
    from schema.auth import site_token
    from scsync.devdb import register_sites

    creds = register_sites(url, [f"bench-site-{i}" for i in range(n)])
    return [
        {
            "id": c.site_id,
            "node": c.node_id,
            "token": site_token(JWT_SECRET, c.site_id, ttl_s=24 * 3600),
            "active": False,
        }
        for c in creds
    ]


def idle_cpu(api: Api, sampler: Sampler, seconds: float) -> tuple[float, float]:
    """The API's and PostgreSQL's CPU over `seconds`, % of one core."""
    a0, d0, t0 = api.cpu_s(), server_cpu_s(sampler.postmaster), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return (api.cpu_s() - a0) / wall * 100, (server_cpu_s(sampler.postmaster) - d0) / wall * 100


def load(
    api: Api,
    profile: str | None,
    sampler: Sampler,
    url: str,
    clients: Clients,
    active: list[int],
    interval_s: float,
    seconds: float,
) -> dict[str, Any]:
    """The active sites push and pull for `seconds`; their figures."""
    sampler.reset()
    writer = Writer(url, active, interval_s)
    c0, t0 = api.cpu_s(), time.monotonic()
    db0, cl0, (busy0, total0) = server_cpu_s(sampler.postmaster), clients.cpu_s(), machine_busy_s()
    f0 = sampler.functions()
    spy = None
    if profile:
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(api.proc.pid),
                "--format",
                "raw",
                "--output",
                profile,
                "--duration",
                str(int(seconds)),
                "--rate",
                "100",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
        )
    clients.send("go")
    writer.start()
    time.sleep(seconds)
    if spy is not None:
        spy.wait(30)
    writer.stop()
    time.sleep(2.0)  # the last writes' pulls
    wall = time.monotonic() - t0
    cpu = (api.cpu_s() - c0) / wall * 100
    db_cpu = (server_cpu_s(sampler.postmaster) - db0) / wall * 100
    client_cpu = (clients.cpu_s() - cl0) / wall * 100
    busy1, total1 = machine_busy_s()
    machine = (busy1 - busy0) / (total1 - total0) * 100
    got = clients.results()
    time.sleep(1.0)  # the backends' function statistics reach the collector
    f1 = sampler.functions()
    functions = {
        name: (calls - f0.get(name, (0, 0.0))[0], ms - f0.get(name, (0, 0.0))[1])
        for name, (calls, ms) in f1.items()
    }
    activity = sampler.reset()
    got.update(
        written=writer.written,
        connections_peak=activity["peak"],
        db_active_mean=activity["active_mean"],
        db_idle_tx_mean=activity["idle_tx_mean"],
        db_waits=activity["waits"],
        db_samples=activity["samples"],
        health_ms=activity["health_ms"],
        load_cpu_pct=cpu,
        db_cpu_pct=db_cpu,
        functions={k: v for k, v in functions.items() if v[0] > 0},
        client_cpu_pct=client_cpu,
        machine_cpu_pct=machine,
        rss_mb=api.mem_mb("VmRSS"),
    )
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 sites, 10 active (< 60 s)")
    parser.add_argument("--sites", type=int)
    parser.add_argument("--active", type=int)
    parser.add_argument("--processes", type=int, default=4, help="client processes")
    parser.add_argument("--load-s", type=float)
    parser.add_argument("--pool-max", type=int, default=POOL_MAX, help="the API's pool_max")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="py-spy record the API during the load (collapsed stacks to FILE; needs py-spy)",
    )
    parser.add_argument("--api-log", metavar="FILE", help="keep the API's log (access lines)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        _client_main()
        return
    from scsync.devdb import admin_url, new_database, percentile

    pool_max = args.pool_max
    n_sites = args.sites or (100 if args.quick else 1000)
    n_active = min(n_sites, args.active or (10 if args.quick else 50))
    load_s = args.load_s or (8.0 if args.quick else 40.0)
    peer_s = 4.0 if args.quick else 20.0
    hold_s = QUICK_HOLD_S if args.quick else HOLD_S
    idle_s = hold_s  # every held site re-polls about once in the window
    settle_s = 1.0 if args.quick else 5.0
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="scsync-bench-sites-"))
        stack.callback(shutil.rmtree, workdir, True)
        admin = admin_url(stack)
        name = f"bench_sites_{os.getpid()}"
        url = new_database(stack, admin, name, "cloud", 0, None)
        import psycopg

        from schema.urls import libpq_url

        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            # Calls and time per lane function (pg_stat_user_functions), for the table.
            conn.execute(f"ALTER DATABASE \"{name}\" SET track_functions = 'pl'")
        t = time.monotonic()
        sites = register(url, n_sites)
        register_s = time.monotonic() - t
        api = Api(stack, url, workdir, pool_max=pool_max)
        sampler = Sampler(url, api.url)
        stack.callback(sampler.close)
        time.sleep(settle_s)
        rss0 = api.mem_mb("VmRSS")
        cpu0, db_idle0 = idle_cpu(api, sampler, idle_s)

        # The peer: the same loop with one site connected (the first one).
        sites[0]["active"] = True
        with ExitStack() as peer_stack:
            one = Clients(peer_stack, api.url, [sites[0]], 1, hold_s)
            time.sleep(1.0)
            first = [sites[0]["id"]]
            peer = load(api, None, sampler, url, one, first, PEER_PULL_INTERVAL_S, peer_s)

        # All sites connected, idle; then the load.
        for s in sites[:n_active]:
            s["active"] = True
        t = time.monotonic()
        clients = Clients(stack, api.url, sites, min(args.processes, n_sites), hold_s)
        connect_s = time.monotonic() - t
        time.sleep(settle_s)
        rss_n = api.mem_mb("VmRSS")
        w0 = clients.waits()
        cpu_n, db_idle_n = idle_cpu(api, sampler, idle_s)
        idle_waits = clients.waits() - w0
        idle_connections = sampler.now
        active_ids = [s["id"] for s in sites[:n_active]]
        full = load(api, args.profile, sampler, url, clients, active_ids, PULL_INTERVAL_S, load_s)
        hwm = api.mem_mb("VmHWM")
        api.stop()
        log_tail = api.log.read_text(errors="replace").splitlines()[-5:]
        if args.api_log:
            shutil.copyfile(api.log, args.api_log)

    lat, peer_lat = full["latencies_ms"], peer["latencies_ms"]
    full_h, peer_h = full["health_ms"], peer["health_ms"]
    p50, p99 = percentile(lat, 0.5), percentile(lat, 0.99)
    peer_p50, peer_p99 = percentile(peer_lat, 0.5), percentile(peer_lat, 0.99)
    push50, push99 = percentile(full["push_ms"], 0.5), percentile(full["push_ms"], 0.99)
    ppush50, ppush99 = percentile(peer["push_ms"], 0.5), percentile(peer["push_ms"], 0.99)
    # The API's connection ceiling: two pools of pool_max (the app's; lockd's, shared by
    # the sync endpoints), the SQLAlchemy engine (2 + 2 overflow), the events LISTEN and
    # the sync hints LISTEN.
    ceiling = 2 * pool_max + 4 + 2
    peak = max(full["connections_peak"], peer["connections_peak"])
    rss_per_site_kb = max(0.0, rss_n - rss0) * 1024 / n_sites
    # CPU per re-poll (a wait answered by its timeout and sent again), ms; 10,000 sites
    # re-poll 10,000 / HOLD_S times a second (the daemon's hold, whatever this run's).
    cpu_per_wait_ms = max(0.0, cpu_n - cpu0) / 100 * idle_s / max(1, idle_waits) * 1000
    est_rss = rss0 + rss_per_site_kb * 10_000 / 1024
    est_cpu = cpu0 + cpu_per_wait_ms / 1000 * 10_000 / HOLD_S * 100
    db_per_wait_ms = max(0.0, db_idle_n - db_idle0) / 100 * idle_s / max(1, idle_waits) * 1000
    est_db_cpu = db_idle0 + db_per_wait_ms / 1000 * 10_000 / HOLD_S * 100
    checks = {
        "connections": full["connections_peak"] <= ceiling,
        "pull_p99": p99 <= TARGET_PULL_P99_MS,
        "rss": hwm <= TARGET_RSS_MB,
    }

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(f"{'':38}{'1 site':>12}{f'{n_sites} sites':>14}{'target':>14}")
    print(f"{'active sites (push + pull)':38}{1:>12}{n_active:>14}{'':>14}")
    print(
        f"{'pull latency p50, ms':38}{peer_p50:>12.1f}{p50:>14.1f}{'':>14}\n"
        f"{'pull latency p99, ms':38}{peer_p99:>12.1f}{p99:>14.1f}"
        f"{'<= 1000 ' + verdict(checks['pull_p99']):>14}\n"
        f"{'pulls measured':38}{len(peer_lat):>12}{len(lat):>14}{'':>14}\n"
        f"{'cloud writes':38}{peer['written']:>12}{full['written']:>14}{'':>14}\n"
        f"{'push/apply p50 / p99, ms':38}{f'{ppush50:.0f} / {ppush99:.0f}':>12}"
        f"{f'{push50:.0f} / {push99:.0f}':>14}{'':>14}\n"
        f"{'pushes':38}{len(peer['push_ms']):>12}{len(full['push_ms']):>14}{'':>14}\n"
        f"{'API DB connections, peak':38}{peer['connections_peak']:>12}"
        f"{full['connections_peak']:>14}{f'<= {ceiling} ' + verdict(checks['connections']):>14}\n"
        f"{'API DB connections in a statement, mean':38}{peer['db_active_mean']:>12.1f}"
        f"{full['db_active_mean']:>14.1f}{'':>14}\n"
        f"{'  idle in a transaction (API side), mean':38}{peer['db_idle_tx_mean']:>12.1f}"
        f"{full['db_idle_tx_mean']:>14.1f}{'':>14}\n"
        f"{'API /health p50 / p99 under load, ms':38}"
        f"{f'{percentile(peer_h, 0.5):.0f} / {percentile(peer_h, 0.99):.0f}':>12}"
        f"{f'{percentile(full_h, 0.5):.0f} / {percentile(full_h, 0.99):.0f}':>14}{'':>14}\n"
        f"{'API CPU under load, % of a core':38}{peer['load_cpu_pct']:>12.1f}"
        f"{full['load_cpu_pct']:>14.1f}{'':>14}\n"
        f"{'PostgreSQL CPU under load, % of a core':38}{peer['db_cpu_pct']:>12.1f}"
        f"{full['db_cpu_pct']:>14.1f}{'':>14}\n"
        f"{'site clients CPU, % of a core':38}{peer['client_cpu_pct']:>12.1f}"
        f"{full['client_cpu_pct']:>14.1f}{'':>14}\n"
        f"{f'machine busy, % of {os.cpu_count()} cores':38}{peer['machine_cpu_pct']:>12.1f}"
        f"{full['machine_cpu_pct']:>14.1f}{'':>14}"
    )
    print(f"{'':38}{'0 sites':>12}{f'{n_sites} sites':>14}")
    print(
        f"{'API CPU idle, % of a core':38}{cpu0:>12.2f}{cpu_n:>14.2f}\n"
        f"{'PostgreSQL CPU idle, % of a core':38}{db_idle0:>12.2f}{db_idle_n:>14.2f}\n"
        f"{'API RSS idle, MB':38}{rss0:>12.1f}{rss_n:>14.1f}\n"
        f"{'API DB connections, idle':38}{'':>12}{idle_connections:>14}\n"
        f"{'API peak RSS, MB':38}{'':>12}{hwm:>14.1f}{'<= 600 ' + verdict(checks['rss']):>14}"
    )
    print(
        f"per held site: {rss_per_site_kb:.1f} KB RSS; per re-poll: {cpu_per_wait_ms:.2f} ms"
        f" API CPU ({idle_waits} in the {idle_s:.0f} s idle window); at 10,000 sites (hold"
        f" {HOLD_S:.0f} s): ~{est_rss:.0f} MB RSS, ~{est_cpu:.0f} % of a core idle; PostgreSQL"
        f" {db_per_wait_ms:.2f} ms a re-poll, ~{est_db_cpu:.0f} % of a core idle"
    )
    print(f"cloud DB functions, top by time under load: calls, ms a call (1 site | {n_sites})")
    top = sorted(full["functions"].items(), key=lambda kv: -kv[1][1])[:8]
    for fname, (calls, ms) in top:
        pc, pms = peer["functions"].get(fname, (0, 0.0))
        print(
            f"  {fname:<36}{pc:>7} {pms / max(1, pc):>7.2f} |{calls:>7} {ms / max(1, calls):>7.2f}"
        )
    print(f"what the API's busy connections were doing under load ({full['db_samples']} samples):")
    for what, n in full["db_waits"]:
        print(f"  {n / max(1, full['db_samples']):5.2f}  {what}")
    errors = {**peer["errors"], **full["errors"]}
    if errors:
        print("errors:", json.dumps(errors))
    print(
        f"(sites={n_sites}, active={n_active}, processes={args.processes}, load={load_s:.0f} s,"
        f" hold={hold_s:.0f} s, pool_max={pool_max}, registered in {register_s:.1f} s, connected in"
        f" {connect_s:.1f} s, cpus={os.cpu_count()})"
    )
    if errors and log_tail:
        print("API log tail:", *log_tail, sep="\n  ")
    print(
        json.dumps(
            {
                "sites": n_sites,
                "active_sites": n_active,
                "api_pool_max": pool_max,
                "api_connection_ceiling": ceiling,
                "cloud_db_connections_peak": full["connections_peak"],
                "peer_cloud_db_connections_peak": peer["connections_peak"],
                "pull_p50_ms": round(p50, 1),
                "pull_p99_ms": round(p99, 1),
                "peer_pull_p50_ms": round(peer_p50, 1),
                "peer_pull_p99_ms": round(peer_p99, 1),
                "pull_p99_ratio": round(p99 / peer_p99, 2) if peer_p99 else None,
                "pulls": len(lat),
                "push_p50_ms": round(push50, 1),
                "push_p99_ms": round(push99, 1),
                "api_peak_rss_mb": round(hwm, 1),
                "idle_api_cpu_pct": round(cpu_n, 2),
                "idle_api_cpu_pct_0_sites": round(cpu0, 2),
                "idle_cpu_ratio": round(cpu_n / cpu0, 2) if cpu0 else None,
                "load_api_cpu_pct": round(full["load_cpu_pct"], 1),
                "load_api_health_p99_ms": round(percentile(full_h, 0.99), 1),
                "db_active_mean": round(full["db_active_mean"], 2),
                "load_db_cpu_pct": round(full["db_cpu_pct"], 1),
                "load_clients_cpu_pct": round(full["client_cpu_pct"], 1),
                "load_machine_busy_pct": round(full["machine_cpu_pct"], 1),
                "rss_kb_per_site": round(rss_per_site_kb, 1),
                "idle_waits": idle_waits,
                "api_cpu_ms_per_wait": round(cpu_per_wait_ms, 3),
                "est_10k_rss_mb": round(est_rss),
                "est_10k_idle_cpu_pct": round(est_cpu, 1),
                "idle_db_cpu_pct": round(db_idle_n, 2),
                "idle_db_cpu_pct_0_sites": round(db_idle0, 2),
                "db_cpu_ms_per_wait": round(db_per_wait_ms, 3),
                "est_10k_idle_db_cpu_pct": round(est_db_cpu, 1),
                "errors": sum(errors.values()),
                "peak_overall_connections": peak,
            }
        )
    )


if __name__ == "__main__":
    main()
