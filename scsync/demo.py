"""``scsync demo``: a cloud and two clinics on this machine, as real processes, and a
narrated scenario that checks each step through the public interfaces (HTTP APIs,
WebSocket, the ``scsync`` CLI).

Processes: an embedded PostgreSQL for the cloud and one per site, a moto S3 server,
the cloud API, the blob endpoints and lockd where the cloud API does not mount them,
a lockd that the sites reach, and per site its local API and its replicator
(``scsync replicator run``, file lanes from the ``[files]`` table). Every one is stopped
on exit, on failure and on Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from scsync.demo_data import MiB, Seeded, seed_history
from scsync.demo_procs import DemoError, Supervisor, run_cli, scsync_argv
from scsync.embedded_pg import free_port

TABLE = "patients"
PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password"}
# The vendor's own account on the cloud (site 0, role vendor_admin): every clinic.
VENDOR = ("vendor", "vendor-demo-password")


# -- output -----------------------------------------------------------------------------------


class Narrator:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0
        self.step_no = 0
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        self.step_no += 1
        at = time.monotonic() - self.started
        print(f"\n== {self.step_no}. {title}  [{at:.0f} s]", flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def check(self, ok: bool, text: str) -> bool:
        print(f"   [{'ok' if ok else 'FAILED'}] {text}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failures.append(text)
        return ok


def progress_bar(done: int, total: int, width: int = 30, extra: str = "") -> str:
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    filled = int(frac * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% {extra}"


# -- HTTP -------------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def http(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode() or "{}"
            out = json.loads(text)
            return out if isinstance(out, dict) else {"items": out}
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode(errors="replace")
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {"message": raw}
        raise HttpError(exc.code, parsed if isinstance(parsed, dict) else {"body": parsed}) from exc


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if pred():
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- WebSocket watcher ----------------------------------------------------------------------


class EventWatcher:
    """Collect an API's WebSocket events in a background thread (aiohttp client)."""

    def __init__(self, base_url: str, token: str, site_id: int) -> None:
        self.url = base_url.replace("http://", "ws://") + "/ws"
        self.token = token
        self.site_id = site_id
        self.events: list[dict[str, Any]] = []
        self.connected = False
        self._stop = False
        self._thread: Any = None

    def start(self) -> None:
        import threading

        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        wait_until(lambda: self.connected, 10)

    async def _run(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            while not self._stop:
                try:
                    async with session.ws_connect(self.url, heartbeat=10) as ws:
                        await ws.send_json({"type": "auth", "token": self.token})
                        await ws.send_json({"type": "subscribe", "site": self.site_id})
                        async for msg in ws:
                            if self._stop:
                                return
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                continue
                            body = json.loads(msg.data)
                            if body.get("type") == "subscribed":
                                self.connected = True
                            elif "id" in body and "type" in body:
                                self.events.append(body)
                except (aiohttp.ClientError, OSError):
                    await asyncio.sleep(0.5)

    def find(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        found: list[dict[str, Any]] = []

        def look() -> bool:
            found.extend(e for e in list(self.events) if pred(e))
            return bool(found)

        wait_until(look, timeout, 0.05)
        return found[0] if found else None

    def stop(self) -> None:
        self._stop = True


# -- the world ------------------------------------------------------------------------------


@dataclass
class SiteInfo:
    name: str
    site_id: int = 0
    node_id: int = 0
    admin_url: str = ""  # the local DB, as the clinic's DBA
    api_url: str = ""
    store: Path = Path()
    seeded: Seeded | None = None
    site_token: str = ""
    # The clinic's own JWT secret (its local API's); the cloud's stays in the cloud.
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    metrics_port: int = 0  # the replicator's /metrics


@dataclass
class World:
    workdir: Path
    secret: str
    cloud_admin_url: str = ""
    cloud_api: str = ""
    blobs_url: str = ""
    cloud_lockd: str = ""  # what cloud clients use (mounted in the cloud API or alone)
    site_lockd: str = ""  # what the sites reach; stopped in the outage step
    lockd_port: int = 0
    s3: Any = None
    bucket: str = "scsync-demo"
    sites: list[SiteInfo] = field(default_factory=list)


@dataclass
class DemoOptions:
    once: bool = False
    workdir: Path | None = None
    keep: bool = False
    patients: int = 60
    images: int = 18
    volume_mb: int = 40


def _db_url(server_url: str, dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=dbname).render_as_string(hide_password=False)


def _start_postgres(sup: Supervisor, name: str, data_dir: Path) -> str:
    proc = sup.start(
        f"pg-{name}",
        [sys.executable, "-m", "scsync.embedded_pg", str(data_dir), "--port", str(free_port())],
    )
    urls: list[str] = []

    def ready() -> bool:
        for line in proc.log_text().splitlines():
            if line.startswith("postgresql://"):
                urls.append(line.strip())
                return True
        return False

    sup.wait_for(proc.name, ready, 90, "a server URL")
    server = urls[0]
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute("CREATE DATABASE scsync")
    return _db_url(server, "scsync")


def _write_private(path: Path, text: str) -> None:
    """Write a config file mode 0600 (it holds secrets), as `scsync init` does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _toml(values: dict[str, Any]) -> str:
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


def _start_api(sup: Supervisor, w: World, name: str, config: Path, side: str) -> str:
    proc = sup.start(name, scsync_argv("api", "run", "--side", side, "--config", str(config)))
    found: list[str] = []

    def ready() -> bool:
        m = re.search(r'"listening": "(http://[^"]+)"', proc.log_text())
        if m:
            found.append(m.group(1))
        return bool(m)

    sup.wait_for(name, ready, 60, "its listening line")
    return found[0]


def build(sup: Supervisor, w: World, opts: DemoOptions, n: Narrator) -> None:
    from schema.auth import site_token
    from scsync.s3_server import S3Endpoint

    n.step("Start the cloud: PostgreSQL, S3, schema, two registered sites")
    pgs = {name: _start_postgres(sup, name, w.workdir / f"pg-{name}") for name in ("cloud",)}
    w.cloud_admin_url = pgs["cloud"]
    n.say(f"cloud PostgreSQL: {w.cloud_admin_url}")
    w.s3 = S3Endpoint()
    w.s3.start()
    w.s3.client().create_bucket(Bucket=w.bucket)
    n.say(f"S3 endpoint (moto server): {w.s3.url}  bucket {w.bucket}")
    run_cli("db", "upgrade", "--side", "cloud", "--url", w.cloud_admin_url)
    run_cli("db", "set-node", "--side", "cloud", "--url", w.cloud_admin_url, "--node-id", "0")
    n.say("$ scsync db upgrade --side cloud  &&  scsync db set-node --side cloud --node-id 0")
    _add_vendor_account(w)
    n.say(f"vendor account on the cloud: {VENDOR[0]} (vendor_admin, every clinic)")
    for name in ("clinic-north", "clinic-south"):
        out = run_cli("site", "register", name, "--url", w.cloud_admin_url)
        site = SiteInfo(name)
        site.site_id = int(_grab(out, r"^site_id = (\d+)$"))
        site.node_id = int(_grab(out, r"--node-id (\d+)"))
        # What POST /v1/sites/{id}/token answers a vendor admin (same secret, same claims).
        site.site_token = site_token(w.secret, site.site_id, ttl_s=7 * 86400)
        w.sites.append(site)
        n.say(f"$ scsync site register {name}  ->  site {site.site_id}, node {site.node_id}")

    n.step("Start the cloud services: cloud API, lockd, blob endpoints")
    cloud_cfg = w.workdir / "cloud-api.toml"
    _write_private(
        cloud_cfg,
        _toml(
            {
                "db_url": w.cloud_admin_url,
                "jwt_secret": w.secret,
                "port": free_port(),
                "s3_bucket": w.bucket,
                "s3_endpoint_url": w.s3.url,
                "s3_access_key": "testing",
                "s3_secret_key": "testing",
            }
        ),
    )
    w.cloud_api = _start_api(sup, w, "cloud-api", cloud_cfg, "cloud")
    n.say(f"cloud API: {w.cloud_api}")
    lockd_env = {"SCSYNC_JWT_SECRET": w.secret}
    if status_of(w.cloud_api + "/v1/locks/health") == 200:
        w.cloud_lockd = w.cloud_api + "/v1/locks"
        n.say("lockd: mounted by the cloud API at /v1/locks")
    else:
        port = free_port()
        sup.start(
            "lockd-cloud",
            scsync_argv(
                "lockd",
                "run",
                "--db-url",
                w.cloud_admin_url,
                "--port",
                str(port),
                "--idle-warn-s",
                "0",
            ),
            env=lockd_env,
        )
        w.cloud_lockd = f"http://127.0.0.1:{port}/v1/locks"
        sup.wait_for("lockd-cloud", lambda: answers(w.cloud_lockd + "/health"), 30, "health")
        n.say(f"lockd for cloud clients: {w.cloud_lockd} (the cloud API does not mount it)")
    w.lockd_port = free_port()
    w.site_lockd = f"http://127.0.0.1:{w.lockd_port}/v1/locks"
    _start_site_lockd(sup, w)
    n.say(
        f"lockd the sites reach: {w.site_lockd} (a process of its own, so that the demo"
        " can stop it while the cloud API keeps serving)"
    )
    if status_of(w.cloud_api + "/v1/blobs/sites/1/requests") == 401:
        w.blobs_url = w.cloud_api + "/v1/blobs"
        n.say("blob endpoints: mounted by the cloud API at /v1/blobs")
    else:
        port = free_port()
        sup.start(
            "blobs",
            [sys.executable, "-m", "api.blobs", "--port", str(port)],
            env={
                "SCSYNC_CLOUD_DB_URL": w.cloud_admin_url,
                "SCSYNC_JWT_SECRET": w.secret,
                "SCSYNC_S3_BUCKET": w.bucket,
                "SCSYNC_S3_ENDPOINT_URL": w.s3.url,
                "SCSYNC_S3_ACCESS_KEY": "testing",
                "SCSYNC_S3_SECRET_KEY": "testing",
                "SCSYNC_S3_MULTIPART_THRESHOLD": str(16 * MiB),
                "SCSYNC_S3_PART_SIZE": str(8 * MiB),
            },
        )
        w.blobs_url = f"http://127.0.0.1:{port}/v1/blobs"
        sup.wait_for(
            "blobs", lambda: status_of(w.blobs_url + "/sites/1/requests") == 401, 30, "answer"
        )
        n.say(f"blob endpoints: {w.blobs_url} (the cloud API does not mount them)")

    n.step("Start two clinics: local PostgreSQL, schema, node ids, years of history")
    for i, site in enumerate(w.sites):
        site.admin_url = _start_postgres(sup, site.name, w.workdir / f"pg-{site.name}")
        run_cli("db", "upgrade", "--side", "local", "--url", site.admin_url)
        run_cli(
            "db",
            "set-node",
            "--side",
            "local",
            "--url",
            site.admin_url,
            "--node-id",
            str(site.node_id),
            "--site-id",
            str(site.site_id),
        )
        site.store = w.workdir / f"files-{site.name}"
        first = i == 0
        site.seeded = seed_history(
            _libpq(site.admin_url),
            site.site_id,
            site.store,
            patients=opts.patients if first else max(4, opts.patients // 6),
            images=opts.images if first else 3,
            volume_bytes=opts.volume_mb * MiB if first else MiB,
            passwords=PASSWORDS,
        )
        s = site.seeded
        n.say(
            f"{site.name}: {len(s.patients)} patients, {len(s.doctors)} doctors, "
            f"{len(s.images) - 1} PNG X-rays, 1 CBCT volume of {s.volume_size / MiB:.1f} MiB, "
            f"{len(s.reports)} reports (history from before scsync: never synced)"
        )

    n.step("Start each clinic's local API and replicator")
    for site in w.sites:
        cfg = _write_site_config(w, site)
        site.api_url = _start_api(sup, w, f"{site.name}-api", cfg, "local")
        _start_replicator(sup, w, site)
        n.say(f"{site.name}: local API {site.api_url}, replicator running ({cfg.name})")


def _add_vendor_account(w: World) -> None:
    import psycopg

    from api.passwords import hash_password

    with psycopg.connect(_libpq(w.cloud_admin_url), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO user_accounts (site_id, username, password_hash, role)"
            " VALUES (0, %s, %s, 'vendor_admin')",
            (VENDOR[0], hash_password(VENDOR[1])),
        )


def _libpq(url: str) -> str:
    from schema.urls import libpq_url

    return libpq_url(url)


def _grab(text: str, pattern: str) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    if not m:
        raise DemoError(f"unexpected output (no {pattern!r}):\n{text}")
    return m.group(1)


def _start_site_lockd(sup: Supervisor, w: World) -> None:
    sup.start(
        "lockd",
        scsync_argv(
            "lockd",
            "run",
            "--db-url",
            w.cloud_admin_url,
            "--port",
            str(w.lockd_port),
            "--idle-warn-s",
            "0",
        ),
        env={"SCSYNC_JWT_SECRET": w.secret},
    )
    sup.wait_for("lockd", lambda: answers(w.site_lockd + "/health"), 30, "health")


def site_config(w: World, site: SiteInfo) -> Path:
    return w.workdir / f"{site.name}.toml"


def _write_site_config(w: World, site: SiteInfo) -> Path:
    """The site's one config file, laid out as `scsync init --side local` writes it."""
    site.metrics_port = site.metrics_port or free_port()
    api = {
        "db_url": site.admin_url,
        "jwt_secret": site.secret,
        "port": free_port(),
        "lockd_url": w.site_lockd,
        "lockd_token": site.site_token,
        "lockd_timeout_s": 1.5,
        # The relay: the cloud's lease events of this site (a cloud user opens a record:
        # "Editing by cloud") reach the clinic's clients through the local API.
        "cloud_url": w.cloud_api,
    }
    replicator = {
        "local_db_url": site.admin_url,
        "cloud_api_url": w.cloud_api,
        "site_token": site.site_token,
        "site_id": site.site_id,
        "poll_interval_s": 1.0,
        "backoff_max_s": 2.0,
        "dead_letter_initial_s": 0.5,
        "dead_letter_max_s": 2.0,
        "schema_refresh_s": 2.0,
        "metrics_port": site.metrics_port,
    }
    files = {
        "blobs_url": w.blobs_url,
        "token": site.site_token,
        "store": str(site.store / "downloads"),
    }
    cfg = site_config(w, site)
    _write_private(
        cfg, f"[api]\n{_toml(api)}\n[replicator]\n{_toml(replicator)}\n[files]\n{_toml(files)}"
    )
    return cfg


def _start_replicator(sup: Supervisor, w: World, site: SiteInfo) -> None:
    cfg = site_config(w, site)
    sup.start(
        f"{site.name}-replicator",
        scsync_argv("replicator", "run", "--config", str(cfg), "--poll-s", "0.5"),
    )


# -- clients (what a viewer does, over HTTP) -------------------------------------------------


def sign_in(api_url: str, user: str, site_id: int | None = None) -> str:
    body: dict[str, Any] = {"username": user, "password": PASSWORDS[user]}
    if site_id is not None:
        body["site_id"] = site_id
    return str(http("POST", api_url + "/v1/auth/token", body)["token"])


@dataclass(frozen=True)
class SignIn:
    """One way in that the demo tells its user about: the status page, what goes into
    its clinic field (empty: the page has none, or a vendor account), user, password."""

    page: str
    clinic: str
    user: str
    password: str

    @property
    def api_url(self) -> str:
        return self.page.rstrip("/")


def sign_in_hints(w: World) -> list[SignIn]:
    """Working credentials for every page the demo lists (printed, and checked)."""
    hints = [SignIn(s.api_url + "/", "", u, p) for s in w.sites for u, p in PASSWORDS.items()]
    hints += [
        SignIn(w.cloud_api + "/", s.name, u, p) for s in w.sites for u, p in PASSWORDS.items()
    ]
    hints.append(SignIn(w.cloud_api + "/", "", *VENDOR))
    return hints


def sign_in_as(hint: SignIn) -> dict[str, Any]:
    """What the page's form sends for a hint: user, password and the clinic if any."""
    body: dict[str, Any] = {"username": hint.user, "password": hint.password}
    if hint.clinic:
        body["site"] = hint.clinic
    return http("POST", hint.api_url + "/v1/auth/token", body)


def check_sign_ins(w: World, n: Narrator) -> None:
    n.step("Everyone signs in as the demo's hint says (every status page)")
    failed = []
    for hint in sign_in_hints(w):
        try:
            sign_in_as(hint)
        except HttpError as exc:
            failed.append(f"{hint.user}@{hint.clinic or '-'} on {hint.page}: HTTP {exc.status}")
    n.check(
        not failed,
        f"{len(sign_in_hints(w))} sign-ins: clinic pages, the cloud page by clinic name, the"
        " vendor account" + (f"; failed: {failed}" if failed else ""),
    )


def get_record(api_url: str, token: str, table: str, rid: int) -> dict[str, Any]:
    return http("GET", f"{api_url}/v1/records/{table}/{rid}", token=token)


def count_records(api_url: str, token: str, table: str) -> int:
    total, cursor = 0, None
    while True:
        url = f"{api_url}/v1/records/{table}?limit=200" + (f"&cursor={cursor}" if cursor else "")
        page = http("GET", url, token=token)
        total += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return total


class LockUnreachable(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", "lock service unreachable"))
        self.body = body


class Editor:
    """A viewer's edit session through its own server's API (``POST …/edit``, save,
    close): the local API asks the cloud's lockd, the cloud API its mounted lockd."""

    def __init__(self, api_url: str, user: str, site_id: int | None = None) -> None:
        self.api_url = api_url
        self.token = sign_in(api_url, user, site_id)

    def open(self, table: str, rid: int, offline: bool = False) -> dict[str, Any]:
        url = f"{self.api_url}/v1/records/{table}/{rid}/edit"
        try:
            return http("POST", url, {"offline": True} if offline else {}, self.token)
        except HttpError as exc:
            if exc.status == 503 and exc.body.get("error") == "lock_service_unreachable":
                raise LockUnreachable(exc.body) from exc
            raise

    def save(self, session: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        body = {"session": session["session"], "changes": changes}
        return http("POST", self.api_url + "/v1/edit-sessions/save", body, self.token)

    def close(self, session: dict[str, Any]) -> None:
        body = {"session": session["session"]}
        http("POST", self.api_url + "/v1/edit-sessions/close", body, self.token)

    def edit(self, table: str, rid: int, changes: dict[str, Any]) -> dict[str, Any]:
        session = self.open(table, rid)
        try:
            return self.save(session, changes)
        finally:
            self.close(session)


# -- the scenario ----------------------------------------------------------------------------


def run_backfill(sup: Supervisor, w: World, n: Narrator) -> None:
    n.step("First connection: backfill of everything that never crossed (newest first)")
    n.say("$ scsync backfill start   (per site; the live lanes keep running beside it)")
    for site in w.sites:
        sup.start(
            f"{site.name}-backfill",
            scsync_argv(
                "backfill",
                "start",
                "--no-progress",
                "--log-progress",
                # The site's config: the cloud API and the site's token, as the
                # replicator reaches the cloud (no cloud database URL on a site).
                "--config",
                str(site_config(w, site)),
                "--local-url",
                site.admin_url,
                "--blobs-url",
                w.blobs_url,
                "--token",
                site.site_token,
                "--batch-rows",
                "40",
                "--file-batch-rows",
                "4",
            ),
            # An operator's shell may export it for the cloud's commands; a site
            # command refuses it.
            env={"SCSYNC_CLOUD_DB_URL": ""},
        )
    first = w.sites[0]
    proc = sup.procs[f"{first.name}-backfill"]
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 600
    tty = sys.stdout.isatty()
    while proc.popen.poll() is None and time.monotonic() < deadline:
        for line in proc.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    last = json.loads(line)
        if last:
            bar = progress_bar(
                int(last.get("rows_done", 0)),
                int(last.get("rows_total", 0)),
                extra=f"rows {last.get('rows_done')}/{last.get('rows_total')}  "
                f"{last.get('bytes_done', 0) / MiB:.1f}/{last.get('bytes_total', 0) / MiB:.1f} MiB"
                f"  {last.get('table') or ''}",
            )
            print(("\r   " if tty else "   ") + bar, end="" if tty else "\n", flush=True)
        time.sleep(0.3 if tty else 1.0)
    for line in proc.log_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                last = json.loads(line)
    if tty:
        print()
    print(
        "   "
        + progress_bar(
            int(last.get("rows_done", 0)),
            int(last.get("rows_total", 0)),
            extra=f"rows {last.get('rows_done')}/{last.get('rows_total')} {last.get('state')}",
        ),
        flush=True,
    )
    for site in w.sites:
        p = sup.procs[f"{site.name}-backfill"]
        rc = p.popen.wait(max(1.0, deadline - time.monotonic()))
        n.check(
            rc == 0,
            f"{site.name}: backfill finished (exit {rc})" + ("" if rc == 0 else f":\n{p.tail()}"),
        )


def check_backfill(w: World, n: Narrator) -> None:
    site = w.sites[0]
    s = site.seeded
    assert s is not None
    ok = wait_until(lambda: bool(sign_in(w.cloud_api, "bob", site.site_id)), 45, 0.5)
    n.check(ok, "the clinic's accounts arrived: bob signs in to the cloud API")
    if not ok:
        return
    token = sign_in(w.cloud_api, "bob", site.site_id)
    got = count_records(w.cloud_api, token, "patients")
    n.check(
        got == len(s.patients), f"cloud API lists {got}/{len(s.patients)} patients of {site.name}"
    )
    got = count_records(w.cloud_api, token, "images")
    n.check(got == len(s.images), f"cloud API lists {got}/{len(s.images)} images")
    vol = get_record(w.cloud_api, token, "images", s.volume_id)
    n.check(
        vol.get("blob_sha256") == s.volume_sha and vol.get("blob_state") == "uploaded",
        f"the CBCT volume ({s.volume_size / MiB:.1f} MiB) is in S3, sha256 verified by the cloud "
        f"(blob_state={vol.get('blob_state')})",
    )
    other = w.sites[1]
    token2 = sign_in(w.cloud_api, "bob", other.site_id)
    theirs = count_records(w.cloud_api, token2, "patients")
    assert other.seeded is not None
    n.check(
        theirs == len(other.seeded.patients),
        f"{other.name}'s bob sees only his clinic's {theirs} patients (tenant wall)",
    )


def scenario(sup: Supervisor, w: World, n: Narrator) -> None:
    site = w.sites[0]
    s = site.seeded
    assert s is not None
    alice = Editor(site.api_url, "alice")
    bob = Editor(w.cloud_api, "bob", site.site_id)
    watcher = EventWatcher(w.cloud_api, bob.token, site.site_id)
    watcher.start()
    clinic_watcher = EventWatcher(site.api_url, alice.token, site.site_id)
    clinic_watcher.start()
    rid = s.patients[0]
    try:
        n.step("A local edit is shown as 'Editing by local' in the cloud")
        t0 = time.monotonic()
        session = alice.open(TABLE, rid)
        n.say(
            f"alice opens patient {rid} for edit at {site.name} "
            f"(fencing token {session.get('fencing_token')})"
        )
        ev = watcher.find(
            lambda e: e["type"] == "record.editing" and e.get("record_id") == str(rid), 1.5
        )
        if ev is not None:
            n.check(
                "local" in json.dumps(ev.get("data")),
                f"cloud WebSocket: record.editing by local after {time.monotonic() - t0:.2f} s",
            )
        else:
            state = http("GET", f"{w.cloud_lockd}/leases/{TABLE}/{rid}", token=bob.token)
            n.say("(the cloud WebSocket sends no record.editing yet: asked the cloud's lockd)")
            n.check(
                state.get("editing_by") == "local",
                f"cloud: patient {rid} is 'Editing by {state.get('editing_by')}' "
                f"(holder {state.get('holder')})",
            )

        figures = json.loads(
            run_cli(
                "status",
                "--config",
                str(site_config(w, site)),
                "--cloud-url",
                w.cloud_admin_url,
                "--json",
            )
        )
        n.check(
            figures["leases"].get("by_local") == 1,
            f"scsync status: leases live {figures['leases'].get('live')}, "
            f"editing by local {figures['leases'].get('by_local')}",
        )

        n.step("An edit is refused while the record is locked")
        try:
            bob.open(TABLE, rid)
            n.check(False, "bob's edit in the cloud was refused")
        except HttpError as exc:
            n.check(
                exc.status == 409 and exc.body.get("error") == "lease_busy",
                f"bob's edit in the cloud: HTTP {exc.status} {exc.body.get('error')}, "
                f"held by {exc.body.get('holder')}",
            )
        saved = alice.save(session, {"phone": "010-1111-2222"})
        t0 = time.monotonic()
        alice.close(session)
        n.say(f"alice saves (version {saved.get('version')}) and closes the editor")
        ok = wait_until(
            lambda: get_record(w.cloud_api, bob.token, TABLE, rid).get("phone") == "010-1111-2222",
            45,
        )
        n.check(ok, f"the local save reached the cloud in {time.monotonic() - t0:.1f} s")

        n.step("A cloud edit flows down to the clinic, shown there as 'Editing by cloud'")
        t0 = time.monotonic()
        session = bob.open(TABLE, rid)
        n.say(f"bob opens patient {rid} for edit in the cloud")
        ev = clinic_watcher.find(
            lambda e: (
                e["type"] == "record.editing"
                and e.get("record_id") == str(rid)
                and (e.get("data") or {}).get("by") == "cloud"
            ),
            3.0,
        )
        n.check(
            ev is not None,
            f"clinic WebSocket (alice's): record.editing by cloud after "
            f"{time.monotonic() - t0:.2f} s",
        )
        try:
            res = bob.save(session, {"notes": "allergic to penicillin (entered in the cloud)"})
        finally:
            bob.close(session)
        t0 = time.monotonic()
        n.say(f"bob saves in the cloud: version {res.get('version')}")
        ok = wait_until(
            lambda: "penicillin" in str(get_record(site.api_url, alice.token, TABLE, rid)["notes"]),
            45,
        )
        n.check(ok, f"the local API shows bob's note after {time.monotonic() - t0:.1f} s")
        if watcher.find(lambda e: e.get("record_id") == str(rid), 0.1):
            n.say(
                f"cloud WebSocket events for the record: "
                f"{sorted({e['type'] for e in watcher.events if e.get('record_id') == str(rid)})}"
            )

        outage(sup, w, n, alice, bob, watcher)
        sync_off(w, n, alice, bob)
        status_step(w, n)
    finally:
        watcher.stop()
        clinic_watcher.stop()


def outage(
    sup: Supervisor,
    w: World,
    n: Narrator,
    alice: Editor,
    bob: Editor,
    watcher: EventWatcher,
) -> None:
    site = w.sites[0]
    assert site.seeded is not None
    rid = site.seeded.patients[1]
    n.step("The lock server is unreachable: offline edit offered, taken, conflict, resolved")
    sup.stop("lockd")
    sup.stop(f"{site.name}-replicator")
    n.say(f"{site.name}'s link to the cloud is down (lockd and the replicator stopped)")
    bob.edit(TABLE, rid, {"phone": "010-3333-4444"})
    n.say(f"meanwhile bob edits patient {rid} in the cloud (phone 010-3333-4444)")
    try:
        alice.open(TABLE, rid)
        n.check(False, "alice's edit reports the lock service unreachable")
        return
    except LockUnreachable as exc:
        n.check(
            exc.body.get("offline_edit_allowed") is True,
            f"alice's edit: HTTP 503 {exc.body.get('error')}, "
            f"offline_edit_allowed={exc.body.get('offline_edit_allowed')} — edit offline? [yes]",
        )
    session = alice.open(TABLE, rid, offline=True)
    saved = alice.save(session, {"phone": "010-5555-6666"})
    alice.close(session)
    row = get_record(site.api_url, alice.token, TABLE, rid)
    n.check(
        session.get("unfenced") is True
        and saved.get("offline") is True
        and row.get("phone") == "010-5555-6666",
        f"alice's offline (unfenced) session saved version {saved.get('version')} locally",
    )
    _start_site_lockd(sup, w)
    _start_replicator(sup, w, site)
    n.say("the link is back: lockd and the replicator run again")
    conflicts: list[dict[str, Any]] = []

    def has_conflict() -> bool:
        items = http("GET", w.cloud_api + "/v1/conflicts", token=bob.token)["items"]
        conflicts[:] = [c for c in items if str(c.get("record_id")) == str(rid)]
        return bool(conflicts)

    ok = wait_until(has_conflict, 60, 0.3)
    n.check(ok, f"the cloud API shows the conflict on patient {rid}: both versions kept")
    if not ok:
        return
    cid = conflicts[0]["id"]
    detail = http("GET", f"{w.cloud_api}/v1/conflicts/{cid}", token=bob.token)
    n.say(
        f"conflict {cid}: local phone {_phone(detail, 'local')} / cloud phone "
        f"{_phone(detail, 'cloud')}"
    )
    n.say(f"$ scsync conflicts resolve {cid} --keep local --side cloud --by it-admin")
    out = run_cli(
        "conflicts",
        "resolve",
        str(cid),
        "--keep",
        "local",
        "--side",
        "cloud",
        "--url",
        w.cloud_admin_url,
        "--by",
        "it-admin",
    )
    n.say(out.strip())

    def converged() -> bool:
        c = get_record(w.cloud_api, bob.token, TABLE, rid)
        loc = get_record(site.api_url, alice.token, TABLE, rid)
        return (
            c["phone"] == loc["phone"] == "010-5555-6666"
            and not c.get("in_conflict")
            and not loc.get("in_conflict")
        )

    n.check(wait_until(converged, 60, 0.3), "resolved: both sides hold alice's version")


def _phone(detail: dict[str, Any], side: str) -> Any:
    row = detail.get(f"{side}_row") or {}
    return row.get("phone") if isinstance(row, dict) else None


def status_step(w: World, n: Narrator) -> None:
    site = w.sites[0]
    cfg = str(site_config(w, site))
    n.step("What the operator sees: scsync status")
    n.say(f"$ scsync status --config {cfg} --cloud-url <operator URL>")
    text = run_cli("status", "--config", cfg, "--cloud-url", w.cloud_admin_url)
    print("\n".join("     " + line for line in text.rstrip().splitlines()))
    f = json.loads(run_cli("status", "--config", cfg, "--cloud-url", w.cloud_admin_url, "--json"))
    lanes, bf = f["lanes"], f["backfill"]
    n.check(
        all(lanes[x]["rows_moved"] > 0 and lanes[x]["last_applied_at"] for x in ("push", "pull"))
        and all(isinstance(lanes[x]["lag_s"], float) for x in ("push", "pull")),
        f"lanes: push moved {lanes['push']['rows_moved']} rows, pull {lanes['pull']['rows_moved']}",
    )
    n.check(
        bf["state"] == "done" and bf["rows_done"] == bf["rows_total"] > 0,
        f"backfill {bf['state']}: {bf['rows_done']}/{bf['rows_total']} rows",
    )
    n.check(
        all(
            isinstance(f[k][side], int)
            for k in ("outbox_depth", "parked", "conflicts_open")
            for side in ("local", "cloud")
        )
        and isinstance(f["leases"].get("live"), int),
        f"outbox depth {f['outbox_depth']}, parked {f['parked']}, conflicts "
        f"{f['conflicts_open']}, leases {f['leases']['live']}",
    )
    figures = {
        "cloud API": (w.cloud_api + "/metrics", "scsync_websocket_clients"),
        f"{site.name} API": (site.api_url + "/metrics", "scsync_outbox_depth"),
        f"{site.name} replicator": (
            f"http://127.0.0.1:{site.metrics_port}/metrics",
            "scsync_replication_rows_total",
        ),
    }
    for what, (url, name) in figures.items():
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                text = resp.read().decode()
        except OSError as exc:
            text = str(exc)
        n.check(name in text, f"{what} serves Prometheus {url} ({name} …)")
    n.say(f"$ scsync status --side cloud --url {w.cloud_admin_url}")
    text = run_cli("status", "--side", "cloud", "--url", w.cloud_admin_url)
    print("\n".join("     " + line for line in text.rstrip().splitlines()))
    n.check(all(s.name in text for s in w.sites), "the cloud view lists both sites")


def sync_off(w: World, n: Narrator, alice: Editor, bob: Editor) -> None:
    site = w.sites[0]
    assert site.seeded is not None
    rid = site.seeded.patients[2]
    n.step("Sync turned off for one record: the cloud copy is deleted")
    http("PUT", f"{site.api_url}/v1/records/{TABLE}/{rid}/sync", {"enabled": False}, alice.token)
    n.say(f"alice turns sync off for patient {rid} at {site.name}")

    def gone() -> bool:
        try:
            row = get_record(w.cloud_api, bob.token, TABLE, rid)
        except HttpError as exc:
            return exc.status == 404
        return row.get("lifecycle") == "deleted" or bool(row.get("deleted"))

    n.check(wait_until(gone, 45, 0.3), "the cloud copy is marked deleted (the local one stays)")
    local = get_record(site.api_url, alice.token, TABLE, rid)
    n.check(local.get("sync_enabled") is False, "locally the record stays, sync off")


# -- entry point ---------------------------------------------------------------------------


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a demo started in the background of a script inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(opts: DemoOptions) -> int:
    """Build the world, run the scenario; 0 when every check passed."""
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="scsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    w = World(workdir=workdir, secret=secrets.token_urlsafe(36))
    sup = Supervisor(workdir / "logs")
    n = Narrator()
    started = time.monotonic()
    print(f"scsync demo: working directory {workdir} (service logs in {workdir / 'logs'})")
    if opts.once:
        print(f"--once: a {opts.volume_mb} MiB volume instead of tens of MB, to stay fast")
    try:
        with _sigterm_as_interrupt():
            try:
                build(sup, w, opts, n)
                run_backfill(sup, w, n)
                check_backfill(w, n)
                check_sign_ins(w, n)
                scenario(sup, w, n)
            except (DemoError, HttpError, OSError) as exc:
                n.check(False, f"the demo could not go on: {exc}")
            print(
                f"\n{n.passed} checks passed, {len(n.failures)} failed "
                f"({time.monotonic() - started:.0f} s)"
            )
            for f in n.failures:
                print(f"   FAILED: {f}")
            if opts.once:
                return 0 if not n.failures else 1
            serve(sup, w)
            return 0 if not n.failures else 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 130 if not opts.once else 1
    finally:
        sup.stop_all()
        if w.s3 is not None:
            with contextlib.suppress(Exception):
                w.s3.stop()
        if opts.workdir is None and not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def serve(sup: Supervisor, w: World) -> None:
    print("\nserving — open the status pages:")
    print(f"   cloud            {w.cloud_api}/   (metrics {w.cloud_api}/metrics)")
    for site in w.sites:
        print(
            f"   {site.name:16} {site.api_url}/   (metrics {site.api_url}/metrics,"
            f" replicator http://127.0.0.1:{site.metrics_port}/metrics)"
        )
    print("   sign in (page: clinic field, user / password):")
    for hint in sign_in_hints(w):
        clinic = f"clinic {hint.clinic!r}" if hint.clinic else "no clinic"
        if hint.page.startswith(w.cloud_api) and not hint.clinic:
            clinic = "clinic left empty (vendor account)"
        print(f"     {hint.page:28} {clinic:38} {hint.user} / {hint.password}")
    print(f"   try: scsync status --config {site_config(w, w.sites[0])}")
    print(f"        scsync status --side cloud --url {w.cloud_admin_url}")
    print("Ctrl-C stops every process.", flush=True)
    while True:
        time.sleep(1)
        dead = [name for name in sup.order if sup.procs[name].popen.poll() not in (None, 0)]
        for name in dead:
            if not name.endswith("-backfill"):
                print(
                    f"{name} exited ({sup.procs[name].popen.returncode}); log:\n"
                    f"{sup.procs[name].tail()}"
                )
                sup.order.remove(name)
