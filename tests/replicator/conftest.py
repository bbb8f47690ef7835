"""A cloud and two sites, each site reaching the cloud as its own role."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
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


@pytest.fixture
def world(cloud_db: TestDatabase, local_db: TestDatabase, local_db2: TestDatabase) -> World:
    with cloud_db.engine.begin() as conn:
        c1 = register_site(conn, "clinic-one")
        c2 = register_site(conn, "clinic-two")
    assert (c1.site_id, c2.site_id) == (local_db.site_id, local_db2.site_id)
    return World(
        cloud=cloud_db,
        site1=Site(local_db, c1, c1.cloud_url(cloud_db.url)),
        site2=Site(local_db2, c2, c2.cloud_url(cloud_db.url)),
    )


async def sync(site: Site, rounds: int = 2, **overrides: Any) -> None:
    """Push then pull until both outboxes are drained (in-process lanes)."""
    settings = site.settings(**overrides)
    for _ in range(rounds):
        for name in ("push", "pull"):
            lane = Lane(name, settings)
            await lane.open()
            try:
                await lane.drain()
            finally:
                await lane.close()


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


class Replicators:
    """`scsync replicator run` as real processes; all of them killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, site: Site, env: dict[str, str] | None = None, **overrides: Any
    ) -> subprocess.Popen[bytes]:
        values: dict[str, Any] = {
            "local_db_url": site.local.url,
            "cloud_db_url": site.cloud_url,
            "poll_interval_s": 1.0,
            "listener_probe_s": 2.0,
            "op_timeout_s": 10.0,
            "connect_timeout_s": 3,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 2.0,
            "dead_letter_initial_s": 0.5,
            "dead_letter_max_s": 2.0,
            "log_level": "INFO",
        }
        values.update(overrides)
        config = self.tmp_path / f"replicator-{site.creds.site_id}-{len(self.procs)}.toml"
        config.write_text(
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8"
        )
        log = open(  # noqa: SIM115 - the process owns it until it exits
            self.tmp_path / f"replicator-{len(self.procs)}.log", "wb"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", "replicator", "run", "--config", str(config)],
            env={
                **os.environ,
                "SCSYNC_SITE_ID": str(site.creds.site_id),  # settings from env vars too
                **(env or {}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_of(self, index: int) -> str:
        return (self.tmp_path / f"replicator-{index}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def replicators(tmp_path: Path) -> Iterator[Replicators]:
    reps = Replicators(tmp_path)
    try:
        yield reps
    finally:
        reps.kill_all()
