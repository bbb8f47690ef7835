"""Shared fixtures: one PostgreSQL per session, a fresh database per test, S3 over HTTP."""

from __future__ import annotations

import faulthandler
import os
import tempfile
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.pg import PgCluster, TestDatabase, cluster_for_session
from tests.world import CloudApi, World, cloud_api, make_world

SITE_1 = 1
SITE_2 = 2
CLOUD_NODE = 0

# pytest-timeout stops its timer when a test fails (pytest_exception_interact; pytest's
# faulthandler plugin cancels its own there too), so a teardown that hangs after a
# failure would hang the run until CI's own limit. This guard covers a test's whole
# protocol: past it, every thread's stack goes to a file and the worker exits; xdist
# reports the crash naming the test and goes on with a new worker.
HANG_S = float(os.environ.get("SCSYNC_TEST_HANG_S", "480"))
HANG_DIR = Path(tempfile.gettempdir()) / "scsync-test-hangs"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    def hung() -> None:
        HANG_DIR.mkdir(exist_ok=True)
        with open(HANG_DIR / f"{os.getpid()}.txt", "w") as stacks:
            stacks.write(f"{item.nodeid} did not finish within {HANG_S} s\n")
            faulthandler.dump_traceback(stacks, all_threads=True)
        os.write(2, f"\n{item.nodeid} hung; stacks in {HANG_DIR}\n".encode())
        os._exit(70)

    guard = threading.Timer(HANG_S, hung)
    guard.daemon = True
    guard.start()
    try:
        yield
    finally:
        guard.cancel()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with cluster_for_session() as cluster:
        # The replicator captures from the WAL by default; a server that cannot (the
        # machine's PostgreSQL 15 runs wal_level = replica) is captured by the triggers,
        # in this process's replicators and in those it starts.
        if not cluster.logical_wal():
            os.environ["SCSYNC_CAPTURE"] = "triggers"
        yield cluster


def _database(
    cluster: PgCluster, side: str, node_id: int, site_id: int | None
) -> Iterator[TestDatabase]:
    tdb = cluster.new_database(side, node_id=node_id, site_id=site_id)  # type: ignore[arg-type]
    try:
        yield tdb
    finally:
        cluster.remove(tdb)


@pytest.fixture
def local_db(pg_cluster: PgCluster) -> Iterator[TestDatabase]:
    """Site 1's local database (node 1)."""
    yield from _database(pg_cluster, "local", node_id=1, site_id=SITE_1)


@pytest.fixture
def local_db2(pg_cluster: PgCluster) -> Iterator[TestDatabase]:
    """Site 2's local database (node 2)."""
    yield from _database(pg_cluster, "local", node_id=2, site_id=SITE_2)


@pytest.fixture
def cloud_db(pg_cluster: PgCluster) -> Iterator[TestDatabase]:
    """The cloud database (node 0)."""
    yield from _database(pg_cluster, "cloud", node_id=CLOUD_NODE, site_id=None)


@pytest.fixture
def world(
    cloud_db: TestDatabase, local_db: TestDatabase, local_db2: TestDatabase
) -> Iterator[World]:
    """The cloud, its sync API and two sites, both registered (tests/world.py)."""
    with make_world(cloud_db, local_db, local_db2) as w:
        yield w


@pytest.fixture
def sync_api(cloud_db: TestDatabase) -> Iterator[CloudApi]:
    """The cloud API's sync endpoints for cloud_db (sites registered by the test)."""
    with cloud_api(cloud_db) as api:
        yield api


@pytest.fixture
def empty_db(pg_cluster: PgCluster) -> Iterator[TestDatabase]:
    """A database with nothing in it, for migration tests."""
    tdb = pg_cluster.new_database("local", node_id=1, site_id=SITE_1, migrated=False)
    try:
        yield tdb
    finally:
        pg_cluster.remove(tdb)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[object]:
    """moto in server mode, a real HTTP endpoint on a free loopback port."""
    from scsync.s3_server import S3Endpoint

    endpoint = S3Endpoint()
    endpoint.start()
    try:
        yield endpoint
    finally:
        endpoint.stop()
