"""Throwaway PostgreSQL for benchmarks: a server (the embedded one, or the admin URL in
``SCSYNC_BENCH_PG_URL`` / ``SCSYNC_TEST_PG_URL``) and migrated databases of either
side, each removed when the caller's ExitStack closes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from schema import database, migrate
from schema import db as schema_db
from schema.tables import Side
from schema.urls import libpq_url

if TYPE_CHECKING:
    from replicator.sites import SiteCredentials


def admin_url(stack: ExitStack, prefix: str = "scsync-bench-") -> str:
    """An admin URL of a server to make databases on; an embedded one when none is given."""
    url = os.environ.get("SCSYNC_BENCH_PG_URL") or os.environ.get("SCSYNC_TEST_PG_URL")
    if url:
        return url
    from scsync.embedded_pg import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    stack.callback(shutil.rmtree, workdir, True)
    server = EmbeddedPostgres(workdir / "data")
    server.start()
    stack.callback(server.stop)
    return server.url


def _drop(admin: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def new_database(
    stack: ExitStack, admin: str, name: str, side: str, node_id: int, site_id: int | None
) -> str:
    """A database of ``side`` migrated to head with its node set; its libpq URL."""
    _drop(admin, name)
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    stack.callback(_drop, admin, name)
    url = make_url(libpq_url(admin)).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url, side)
    set_node(url, node_id, migrate.check_side(side), site_id)
    return url


def set_node(url: str, node_id: int, side: Side, site_id: int | None) -> None:
    """``scsync db set-node`` for a bench's database."""

    async def go() -> None:
        async with database.connect(url, database.SCHEMA, name="scsync-devdb") as conn:
            await schema_db.set_node(conn, node_id, side, site_id)

    database.run(go)


def register_sites(url: str, names: Sequence[str]) -> list[SiteCredentials]:
    """``scsync site register`` for each name, on a bench's cloud database."""
    from replicator.sites import register_site

    async def go() -> list[SiteCredentials]:
        async with database.connect(url, database.SCHEMA, name="scsync-devdb") as conn:
            return [await register_site(conn, name) for name in names]

    return database.run(go)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank rule; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
