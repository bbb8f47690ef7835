"""Fixtures of the API tests: apps on per-test databases, users, tokens, processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from api.passwords import hash_password
from api.settings import Settings, load_settings
from schema.auth import Side, issue_token
from tests.pg import TestDatabase

# Each side has its own secret, as in a real installation: SECRET is the cloud's (site
# tokens, lockd, blobs), LOCAL_SECRET a clinic's local API's.
SECRET = "test-secret-of-at-least-thirty-two-bytes!"
LOCAL_SECRET = "local-test-secret-of-at-least-32-bytes!!"
SECRETS = {"local": LOCAL_SECRET, "cloud": SECRET}
# The API's scrape credential for GET /metrics (no user's or site's token).
METRICS_TOKEN = "tests-metrics-scrape-token-0123456789abcdef"
PASSWORD = "correct horse battery"
_HASH = hash_password(PASSWORD)  # scrypt is slow on purpose: hash once per session


def add_user(
    tdb: TestDatabase, username: str, role: str = "editor", site_id: int | None = None
) -> int:
    site = tdb.site_id if site_id is None else site_id
    with tdb.connect() as conn:
        row = conn.execute(
            "INSERT INTO user_accounts (site_id, username, password_hash, role)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (site, username, _HASH, role),
        ).fetchone()
        conn.commit()
    assert row is not None and isinstance(row[0], int)
    return row[0]


def token(
    role: str = "editor",
    site: int | None = 1,
    name: str = "alice",
    ttl: int = 600,
    side: Side = "local",
) -> str:
    """A user's token as the API of `side` issues it (the local API's by default)."""
    return issue_token(
        SECRETS[side],
        side=side,
        subject=f"user:{name}",
        kind="user",
        role=role,
        site_id=site,
        ttl_s=ttl,
    )


def ctoken(role: str = "editor", site: int | None = 1, name: str = "alice", ttl: int = 600) -> str:
    """A user's token of the cloud API."""
    return token(role, site, name, ttl, side="cloud")


def auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def settings_for(tdb: TestDatabase, side: str, **over: Any) -> Settings:
    over.setdefault("jwt_secret", SECRETS[side])
    over.setdefault("metrics_token", METRICS_TOKEN)
    return load_settings(side, None, env={}, db_url=tdb.libpq_url, **over)


@dataclass
class Api:
    client: TestClient[Any, Any]
    db: TestDatabase
    side: str

    async def create(self, table: str, body: dict[str, Any], tok: str, **params: Any) -> Any:
        resp = await self.client.post(
            f"/v1/records/{table}", json=body, headers=auth(tok), params=params
        )
        data = await resp.json()
        assert resp.status == 201, data
        return data


@asynccontextmanager
async def _client(tdb: TestDatabase, side: str, **over: Any) -> AsyncIterator[Api]:
    """A context manager, not a bare generator: a failing test body still closes the
    app (an unclosed generator left its pool's tasks to hang the loop's teardown)."""
    app = make_app(side, settings_for(tdb, side, **over))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, tdb, side)
    finally:
        await client.close()


@pytest.fixture
async def local_api(local_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(local_db, "local") as api:
        yield api


@pytest.fixture
async def cloud_api(cloud_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(cloud_db, "cloud") as api:
        yield api


# --- real processes -------------------------------------------------------------------


@dataclass
class ApiProcess:
    proc: subprocess.Popen[str]
    url: str
    # stderr goes to a file: an unread pipe would block a process that logs a lot.
    log_path: Path | None = None

    def log_text(self) -> str:
        return "" if self.log_path is None else self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def start_api(
    side: str, config: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> ApiProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SCSYNC_API_")}
    full_env.update(env or {})
    fd, name = tempfile.mkstemp(prefix=f"scsync-api-{side}-", suffix=".log")
    log_path = Path(name)
    with os.fdopen(fd, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", "api", "run", "--side", side, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env=full_env,
        )
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            code = proc.wait()
            raise RuntimeError(f"api process exited: {code} {log_path.read_text()}")
        if line.startswith("{"):
            url = json.loads(line)["listening"]
            return ApiProcess(proc, url, log_path)
    proc.kill()
    raise RuntimeError("api process did not start in time")


def write_config(path: Path, tdb: TestDatabase, port: int, **extra: Any) -> Path:
    lines = [
        f'db_url = "{tdb.libpq_url}"',
        f'jwt_secret = "{SECRETS[tdb.side]}"',
        f"port = {port}",
    ]
    for key, value in extra.items():
        lines.append(f"{key} = {json.dumps(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def processes() -> Iterator[list[ApiProcess]]:
    started: list[ApiProcess] = []
    yield started
    for p in reversed(started):  # clients of a service stop before it
        p.stop()
        if p.log_path is not None:
            p.log_path.unlink(missing_ok=True)
