"""The demo's world and how it is built: a cloud (PostgreSQL, S3, schema, the cloud API,
lockd, blob endpoints) and two clinics (PostgreSQL with years of history, a local API and a
replicator each), every service a child process of the supervisor; the clinics' config
files; the sign-ins the world offers."""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scsync.demo.client import SignIn, answers, status_of
from scsync.demo.data import PASSWORDS, VENDOR, MiB, Seeded, seed_history
from scsync.demo.narration import Narrator
from scsync.demo.processes import DemoError, Supervisor, run_cli, scsync_argv
from scsync.embedded_pg import free_port


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
    # Prometheus' bearer token for every API's /metrics (setting metrics_token).
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))


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
                "metrics_token": w.metrics_token,
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
    w.cloud_lockd = _mounted_or_own(
        sup,
        n,
        what="lockd for cloud clients",
        mounted=w.cloud_api + "/v1/locks",
        answers_at=lambda base: status_of(base + "/health") == 200,
        start=lambda port: (
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
            {"SCSYNC_JWT_SECRET": w.secret},
            f"http://127.0.0.1:{port}/v1/locks",
        ),
        process="lockd-cloud",
    )
    w.lockd_port = free_port()
    w.site_lockd = f"http://127.0.0.1:{w.lockd_port}/v1/locks"
    start_site_lockd(sup, w)
    n.say(
        f"lockd the sites reach: {w.site_lockd} (a process of its own, so that the demo"
        " can stop it while the cloud API keeps serving)"
    )
    w.blobs_url = _mounted_or_own(
        sup,
        n,
        what="blob endpoints",
        mounted=w.cloud_api + "/v1/blobs",
        # 401: the endpoint is there and wants a token.
        answers_at=lambda base: status_of(base + "/sites/1/requests") == 401,
        start=lambda port: (
            [sys.executable, "-m", "api.blobs", "--port", str(port)],
            {
                "SCSYNC_CLOUD_DB_URL": w.cloud_admin_url,
                "SCSYNC_JWT_SECRET": w.secret,
                "SCSYNC_S3_BUCKET": w.bucket,
                "SCSYNC_S3_ENDPOINT_URL": w.s3.url,
                "SCSYNC_S3_ACCESS_KEY": "testing",
                "SCSYNC_S3_SECRET_KEY": "testing",
                "SCSYNC_S3_MULTIPART_THRESHOLD": str(16 * MiB),
                "SCSYNC_S3_PART_SIZE": str(8 * MiB),
            },
            f"http://127.0.0.1:{port}/v1/blobs",
        ),
        process="blobs",
    )

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
        start_replicator(sup, w, site)
        n.say(f"{site.name}: local API {site.api_url}, replicator running ({cfg.name})")


def _mounted_or_own(
    sup: Supervisor,
    n: Narrator,
    *,
    what: str,
    mounted: str,
    answers_at: Callable[[str], bool],
    start: Callable[[int], tuple[list[str], dict[str, str], str]],
    process: str,
) -> str:
    """Where the cloud's `what` answers: mounted by the cloud API at `mounted`, or else a
    process of its own (``start(port)`` gives its argv, environment and base URL)."""
    if answers_at(mounted):
        n.say(f"{what}: mounted by the cloud API at {urlsplit(mounted).path}")
        return mounted
    port = free_port()
    argv, env, base = start(port)
    sup.start(process, argv, env=env)
    sup.wait_for(process, lambda: answers_at(base), 30, "answer")
    n.say(f"{what}: {base} (not mounted by the cloud API)")
    return base


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


def start_site_lockd(sup: Supervisor, w: World) -> None:
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
        "metrics_token": w.metrics_token,
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


def start_replicator(sup: Supervisor, w: World, site: SiteInfo) -> None:
    cfg = site_config(w, site)
    sup.start(
        f"{site.name}-replicator",
        scsync_argv("replicator", "run", "--config", str(cfg), "--poll-s", "0.5"),
    )


def sign_in_hints(w: World) -> list[SignIn]:
    """Working credentials for every page the demo lists (printed, and checked)."""
    hints = [SignIn(s.api_url + "/", "", u, p) for s in w.sites for u, p in PASSWORDS.items()]
    hints += [
        SignIn(w.cloud_api + "/", s.name, u, p) for s in w.sites for u, p in PASSWORDS.items()
    ]
    hints.append(SignIn(w.cloud_api + "/", "", *VENDOR))
    return hints
