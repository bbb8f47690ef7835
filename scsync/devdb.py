"""Throwaway PostgreSQL for benchmarks: a server (the embedded one, or the admin URL in
``SCSYNC_BENCH_PG_URL`` / ``SCSYNC_TEST_PG_URL``) and migrated databases of either
side, each removed when the caller's ExitStack closes."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from schema import db as schema_db
from schema import migrate
from schema.urls import create_engine, libpq_url


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
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            schema_db.set_node(conn, node_id, migrate.check_side(side), site_id)
    finally:
        engine.dispose()
    return url


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank rule; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
