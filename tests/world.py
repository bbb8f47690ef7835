"""Two clinics and the cloud as the tests see them: each site's local database, the
cloud database, and the cloud API's sync endpoints (api/sync.py) that the sites' lanes
talk to with their site tokens, served on a loopback port by a thread of the test
process. Helpers sync in-process and read rows. Shared by the replicator and lockd
tests; the ``world`` fixture is in tests/conftest.py."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from psycopg import sql

from api.sync import SyncSettings, make_sync_app, sync_hints
from replicator.lane import Lane
from replicator.settings import Settings, load_settings
from replicator.sites import SiteCredentials, register_site
from schema.auth import site_token
from tests.pg import TestDatabase

JWT_SECRET = "world-test-secret-0123456789abcdef-0123456789"


class CloudApi:
    """The sync endpoints on 127.0.0.1 in a thread with its own event loop (so tests
    that block on psycopg or wait on processes never stall it)."""

    def __init__(
        self, db_url: str, lease_ttl_s: float = 30.0, jwt_secret: str = JWT_SECRET
    ) -> None:
        # Tests write the cloud's rows directly (no wake-up from an API transaction): a
        # held long poll finds them at its next outbox check, sooner than production's 1 s.
        self.settings = SyncSettings(
            db_url=db_url, jwt_secret=jwt_secret, lease_ttl_s=lease_ttl_s, hint_poll_s=0.2
        )
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CloudApi:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    async def _start(self) -> None:
        app = web.Application()
        self.sync_app = make_sync_app(self.settings)
        app.add_subapp("/v1/sync", self.sync_app)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    def hints_live(self) -> bool:
        """Change hints reach this API (its listener is connected: that connect answers
        every long poll held before it)."""
        return sync_hints(self.sync_app).live

    def long_poll_held(self, site_id: int) -> bool:
        """A pull/wait of this site waits for a hint here (its wake-up is registered)."""
        return site_id in sync_hints(self.sync_app).events

    def stop(self) -> None:
        """Idempotent: a test may stop the API itself before its fixture does."""
        if self._loop.is_closed():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def cloud_api(
    db: TestDatabase, lease_ttl_s: float = 30.0, jwt_secret: str = JWT_SECRET
) -> Iterator[CloudApi]:
    api = CloudApi(db.url, lease_ttl_s, jwt_secret).start()
    try:
        yield api
    finally:
        api.stop()


@dataclass
class Site:
    local: TestDatabase
    creds: SiteCredentials
    api: CloudApi

    @property
    def token(self) -> str:
        return site_token(JWT_SECRET, self.creds.site_id, ttl_s=24 * 3600)

    @property
    def cloud_api_url(self) -> str:
        return self.api.url

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "local_db_url": self.local.url,
            "cloud_api_url": self.api.url,
            "site_token": self.token,
            "site_id": self.creds.site_id,
            "dead_letter_initial_s": 0.2,
            "dead_letter_max_s": 1.0,
            "connect_timeout_s": 3,
            "schema_refresh_s": 0.01,
        }
        values.update(overrides)
        return load_settings(None, **values)


@dataclass
class World:
    cloud: TestDatabase
    site1: Site
    site2: Site
    api: CloudApi


async def drain(settings: Settings, rounds: int = 1) -> None:
    """Push then pull, `rounds` times, each lane until its outbox is drained (in-process)."""
    for _ in range(rounds):
        for name in ("push", "pull"):
            lane = Lane(name, settings)
            await lane.open()
            try:
                await lane.drain()
            finally:
                await lane.close(release=True)


async def sync(site: Site, rounds: int = 2, **overrides: Any) -> None:
    """Push then pull until both outboxes are drained (in-process lanes)."""
    await drain(site.settings(**overrides), rounds)


def rows(db: TestDatabase, table: str) -> dict[int, dict[str, Any]]:
    """id -> row (as a dict) of a synced table."""
    with db.connect() as conn:
        cur = conn.execute(
            sql.SQL("SELECT to_jsonb(t) FROM {} t ORDER BY id").format(sql.Identifier(table))
        )
        out: dict[int, dict[str, Any]] = {}
        for (row,) in cur.fetchall():
            assert isinstance(row, dict)
            out[int(row["id"])] = row
        return out


CONTENT = ("id", "site_id", "revision", "deleted", "name", "patient_code", "notes")


def content(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(c) for c in CONTENT)


@contextmanager
def make_world(
    cloud_db: TestDatabase, local_db: TestDatabase, local_db2: TestDatabase
) -> Iterator[World]:
    """Register both sites on the cloud (their node ids) and serve the sync API."""
    c1 = cloud_db.call(register_site, "clinic-one")
    c2 = cloud_db.call(register_site, "clinic-two")
    assert (c1.site_id, c2.site_id) == (local_db.site_id, local_db2.site_id)
    with cloud_api(cloud_db) as api:
        yield World(
            cloud=cloud_db,
            site1=Site(local_db, c1, api),
            site2=Site(local_db2, c2, api),
            api=api,
        )


def replicator_toml(local_url: str, api_url: str, site_id: int) -> str:
    """The [replicator] keys that connect a site (its database, the cloud API, its token)."""
    return (
        f"local_db_url = {json.dumps(local_url)}\n"
        f"cloud_api_url = {json.dumps(api_url)}\n"
        f"site_token = {json.dumps(site_token(JWT_SECRET, site_id, ttl_s=24 * 3600))}\n"
        f"site_id = {site_id}\n"
    )
