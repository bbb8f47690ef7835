"""The PostgreSQL the tests run against, and per-test databases made from templates.

One server per test session: the embedded PostgreSQL 18 by default, any server
given by ``SCSYNC_TEST_PG_URL`` (an admin URL, e.g. the machine's PostgreSQL 15),
or, where Docker runs, ``SCSYNC_TEST_PG=testcontainers``. Each side's schema is
migrated once into a template database; every test gets a fresh database cloned
from it and dropped WITH (FORCE) afterwards. Transaction-rollback isolation is not
used: NOTIFY fires only on commit.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Concatenate, Literal, ParamSpec, TypeVar

import psycopg
from psycopg import sql
from sqlalchemy import Engine

from schema import database, migrate
from schema import db as schema_db
from schema.database import Conn
from schema.tables import Side
from schema.urls import create_engine, libpq_url, sqlalchemy_url

P = ParamSpec("P")
T = TypeVar("T")

Backend = Literal["embedded", "url", "testcontainers"]


# Advisory locks held in the current database. pg_locks is cluster-wide, and other
# tests (another xdist worker on a shared server) take advisory locks of their own.
ADVISORY_LOCKS_HERE = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def select_backend(env: dict[str, str] | os._Environ[str]) -> Backend:
    """Which server the session uses, from the environment (tested on its own)."""
    if env.get("SCSYNC_TEST_PG_URL"):
        return "url"
    choice = env.get("SCSYNC_TEST_PG", "embedded")
    if choice not in ("embedded", "testcontainers"):
        raise ValueError(f"SCSYNC_TEST_PG must be 'embedded' or 'testcontainers', not {choice!r}")
    return choice  # type: ignore[return-value]


@dataclass
class TestDatabase:
    """One database of a test: its URLs and a SQLAlchemy engine (psycopg)."""

    __test__ = False  # not a test class, despite the name

    name: str
    url: str  # SQLAlchemy URL, psycopg driver
    side: Side
    site_id: int | None
    node_id: int
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def libpq_url(self) -> str:
        return libpq_url(self.url)

    def url_with(self, driver: str) -> str:
        return sqlalchemy_url(self.url, driver)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.url)
        return self._engine

    def connect(self, **kwargs: object) -> psycopg.Connection[tuple[object, ...]]:
        """A plain psycopg connection (for LISTEN, COPY, concurrency tests)."""
        return psycopg.connect(self.libpq_url, **kwargs)  # type: ignore[arg-type]

    def aconnect(self) -> AbstractAsyncContextManager[Conn]:
        """An autocommit connection of the runtime layer (schema.database)."""
        return database.connect(self.url, database.SCHEMA, name="scsync-tests")

    async def acall(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kw: P.kwargs
    ) -> T:
        """Await one helper of the runtime layer (schema.database) on a fresh autocommit
        connection to this database."""
        async with self.aconnect() as conn:
            return await fn(conn, *args, **kw)

    def call(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kw: P.kwargs
    ) -> T:
        """:meth:`acall` from synchronous code: a fixture, a sync helper of an async test
        (a loop already running in this thread: the call gets a thread and loop of its
        own)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.acall(fn, *args, **kw))
        with ThreadPoolExecutor(1) as one:
            return one.submit(asyncio.run, self.acall(fn, *args, **kw)).result()

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class PgCluster:
    """A server plus the admin operations the harness needs."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = libpq_url(admin_url)
        self.prefix = f"scsync_t{os.getpid()}_"
        self._templates: dict[Side, str] = {}

    def url_for(self, dbname: str) -> str:
        from sqlalchemy.engine import make_url

        return sqlalchemy_url(
            make_url(self.admin_url).set(database=dbname).render_as_string(hide_password=False)
        )

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_url, autocommit=True)

    def logical_wal(self) -> bool:
        """Whether the server can have replication slots (wal_level = logical)."""
        with self._admin() as conn:
            row = conn.execute("SHOW wal_level").fetchone()
        return row is not None and row[0] == "logical"

    def create_database(self, name: str, template: str | None = None) -> None:
        with self._admin() as conn:
            if template:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            # A database with a replication slot (a site's WAL capture) cannot be
            # dropped: its slots go first, their streaming sessions ended.
            for _ in range(50):
                slots = conn.execute(
                    "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
                    (name,),
                ).fetchall()
                if not slots:
                    break
                for slot, pid in slots:
                    if pid is not None:
                        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    with suppress(psycopg.Error):
                        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                time.sleep(0.05)
            row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (name,)).fetchone()
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            if row is not None:
                self._drop_origins(conn, int(str(row[0])))

    @staticmethod
    def _drop_origins(conn: psycopg.Connection[tuple[object, ...]], oid: int) -> None:
        """The lanes' replication origins of a dropped database (scsync_<lane>_<oid>):
        origins are the cluster's and outlive it, and a server tracks few of them
        (PostgreSQL 18: max_active_replication_origins)."""
        for _ in range(50):
            left = 0
            names = conn.execute(
                "SELECT roname FROM pg_replication_origin WHERE roname LIKE %s",
                (f"scsync\\_%\\_{oid}",),
            ).fetchall()
            for (origin,) in names:
                try:
                    conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))
                except psycopg.Error:
                    left += 1  # still held by a session that is ending
            if not left:
                return
            time.sleep(0.05)

    def template(self, side: Side) -> str:
        """The migrated template of a side, made on first use in the session."""
        if side not in self._templates:
            name = f"{self.prefix}tpl_{side}"
            self.drop_database(name)
            self.create_database(name)
            migrate.upgrade(self.url_for(name), side)
            self._templates[side] = name
        return self._templates[side]

    def new_database(
        self, side: Side, *, node_id: int, site_id: int | None, migrated: bool = True
    ) -> TestDatabase:
        name = f"{self.prefix}{side}_{uuid.uuid4().hex[:10]}"
        self.create_database(name, self.template(side) if migrated else None)
        tdb = TestDatabase(
            name=name, url=self.url_for(name), side=side, site_id=site_id, node_id=node_id
        )
        if migrated:
            tdb.call(schema_db.set_node, node_id, side, site_id)
        return tdb

    def remove(self, tdb: TestDatabase) -> None:
        tdb.dispose()
        self.drop_database(tdb.name)

    def drop_all(self) -> None:
        with self._admin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE %s",
                    (self.prefix + "%",),
                )
            ]
        for name in names:
            with suppress(psycopg.Error):
                self.drop_database(str(name))


@contextmanager
def cluster_for_session() -> Iterator[PgCluster]:
    backend = select_backend(os.environ)
    if backend == "url":
        cluster = PgCluster(os.environ["SCSYNC_TEST_PG_URL"])
        try:
            yield cluster
        finally:
            cluster.drop_all()
        return
    if backend == "testcontainers":
        with _testcontainers_server() as url:
            yield PgCluster(url)
        return
    from scsync.embedded_pg import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="scsync-pg-"))
    server = EmbeddedPostgres(workdir / "data")
    server.start()
    try:
        yield PgCluster(server.url)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def _testcontainers_server() -> Iterator[str]:
    """PostgreSQL in Docker, for machines that have it (the design card lists it)."""
    try:
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]
    except ImportError as exc:
        raise RuntimeError(
            "SCSYNC_TEST_PG=testcontainers needs `pip install testcontainers[postgres]` and Docker"
        ) from exc
    with PostgresContainer("postgres:16", driver=None) as container:
        yield str(container.get_connection_url())
