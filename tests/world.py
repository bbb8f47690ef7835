"""Two clinics and the cloud as the tests see them: each site's local database and the
cloud as that site's own role, with helpers to sync in-process and read rows. Shared by
the replicator and lockd tests; the ``world`` fixture is in tests/conftest.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import sql

from replicator.lane import Lane
from replicator.settings import Settings, load_settings
from replicator.sites import SiteCredentials, register_site
from tests.pg import TestDatabase


@dataclass
class Site:
    local: TestDatabase
    creds: SiteCredentials
    cloud_url: str  # as the site's role

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "local_db_url": self.local.url,
            "cloud_db_url": self.cloud_url,
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


async def drain(settings: Settings, rounds: int = 1) -> None:
    """Push then pull, `rounds` times, each lane until its outbox is drained (in-process)."""
    for _ in range(rounds):
        for name in ("push", "pull"):
            lane = Lane(name, settings)
            await lane.open()
            try:
                await lane.drain()
            finally:
                await lane.close()


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


def make_world(cloud_db: TestDatabase, local_db: TestDatabase, local_db2: TestDatabase) -> World:
    """Register both sites on the cloud (their roles, their node ids)."""
    with cloud_db.engine.begin() as conn:
        c1 = register_site(conn, "clinic-one")
        c2 = register_site(conn, "clinic-two")
    assert (c1.site_id, c2.site_id) == (local_db.site_id, local_db2.site_id)
    return World(
        cloud=cloud_db,
        site1=Site(local_db, c1, c1.cloud_url(cloud_db.url)),
        site2=Site(local_db2, c2, c2.cloud_url(cloud_db.url)),
    )
