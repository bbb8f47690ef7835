"""The issue's acceptance cases that need real processes, a cut connection or a
restarted server: races, SIGKILL, SIGSTOP, a COMMIT whose reply is lost, PG restart."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lockd.db import make_pool
from lockd.errors import LeaseBusy, LeaseNotHeld, LockdUnavailable
from lockd.manager import LeaseManager, LockdConfig
from lockd.models import Lease
from schema import db as schema_db
from schema import migrate
from tests.lockd.conftest import Records, add_patient, history_count, lease_rows, row_of
from tests.lockd.proxy import TcpProxy
from tests.pg import ADVISORY_LOCKS_HERE, TestDatabase

pytestmark = pytest.mark.dblevel

RACERS = 50


def _advisory_locks(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(ADVISORY_LOCKS_HERE).fetchone()
    assert row is not None
    return int(str(row[0]))


def _racer(url: str, rid: int, barrier: Any, busy_count: Any, results: Any) -> None:
    async def run() -> None:
        async with make_pool(url, min_size=1, max_size=1) as pool:
            manager = LeaseManager(pool, LockdConfig(ttl_s=10, wait_poll_s=0.01))
            await pool.wait()
            barrier.wait(30)
            first = await manager.try_acquire("patients", rid, f"cloud:1/racer{os.getpid()}")
            won = isinstance(first, Lease)
            if isinstance(first, Lease):
                # Hold it until every other racer has found it taken (a racer that the
                # scheduler delays must not find it already released).
                deadline = time.monotonic() + 60
                while busy_count.value < RACERS - 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                lease = first
            else:
                with busy_count.get_lock():
                    busy_count.value += 1
                lease = await manager.acquire(
                    "patients", rid, f"cloud:1/racer{os.getpid()}", wait_s=60
                )
            await manager.release(lease.lease_id, lease.token)
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                    " AND pid = pg_backend_pid()"
                )
                row = await cur.fetchone()
            results.put((won, lease.token, int(str(row[0])) if row else -1))

    asyncio.run(run())


def test_50_processes_race_for_one_record(records: Records) -> None:
    rid = records.site1[0]
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(RACERS)
    busy_count = ctx.Value("i", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_racer, args=(records.db.libpq_url, rid, barrier, busy_count, results))
        for _ in range(RACERS)
    ]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=120) for _ in range(RACERS)]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert busy_count.value == RACERS - 1
    winners = [g for g in got if g[0]]
    assert len(winners) == 1, got
    tokens = [g[1] for g in got]
    assert len(set(tokens)) == RACERS
    assert all(g[2] == 0 for g in got), "an advisory lock outlived its transaction"
    assert min(tokens) == winners[0][1]
    with records.db.connect() as conn:
        assert _advisory_locks(conn) == 0
        events = conn.execute(
            "SELECT event, token FROM scsync_lease_events WHERE row_id = %s ORDER BY seq", (rid,)
        ).fetchall()
    # Never two live leases: every acquisition is followed by its own release.
    assert [e[0] for e in events] == ["lease.acquired", "lease.released"] * RACERS
    assert all(events[i][1] == events[i + 1][1] for i in range(0, len(events), 2))
    assert lease_rows(records.db) == []


@pytest.fixture
def holder_proc(records: Records) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.lockd.holder",
            records.db.libpq_url,
            "patients",
            str(records.site1[0]),
            "1.0",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def _line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, "the holder process printed nothing"
    data = json.loads(line)
    assert isinstance(data, dict)
    return data


def _db_now(db: TestDatabase) -> Any:
    with db.connect() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


async def test_sigkilled_holder_keeps_the_lease_until_ttl(
    manager: LeaseManager, records: Records, holder_proc: subprocess.Popen[str]
) -> None:
    rid = records.site1[0]
    held = _line(holder_proc)["lease"]
    holder_proc.send_signal(signal.SIGKILL)
    holder_proc.wait(10)
    killed_at = _db_now(records.db)
    with pytest.raises(LeaseBusy):
        await manager.acquire("patients", rid, "cloud:1/next")
    [held_row] = lease_rows(records.db)
    assert held_row[3] == held["token"]
    with records.db.connect() as conn:
        r = conn.execute(
            "SELECT expires_at FROM scsync_leases WHERE row_id = %s", (rid,)
        ).fetchone()
    assert r is not None
    expires_at = r[0]
    assert isinstance(expires_at, datetime)
    assert expires_at > killed_at  # still leased after the holder died
    nxt = await manager.acquire("patients", rid, "cloud:1/next", wait_s=5)
    assert nxt.acquired_at is not None and nxt.acquired_at >= expires_at
    assert nxt.token > held["token"]


async def test_sigstopped_holder_is_fenced_after_its_ttl(
    manager: LeaseManager, records: Records, holder_proc: subprocess.Popen[str]
) -> None:
    rid = records.site1[0]
    held = _line(holder_proc)["lease"]
    holder_proc.send_signal(signal.SIGSTOP)
    try:
        nxt = await manager.acquire("patients", rid, "cloud:1/next", wait_s=5, ttl_s=10)
        saved = await manager.save(
            nxt.lease_id, nxt.token, {"notes": "new holder"}, expected_revision=nxt.revision
        )
    finally:
        holder_proc.send_signal(signal.SIGCONT)
    outcome = _line(holder_proc)
    assert outcome == {
        "renew": "lease_not_held",
        "save": "lease_not_held",
        "release": "lease_not_held",
    }
    assert nxt.token > held["token"]
    row = row_of(records.db, rid)
    assert row["notes"] == "new holder" and row["revision"] == saved.revision
    [lease] = lease_rows(records.db)
    assert lease[2] == "cloud:1/next" and lease[3] == nxt.token


async def test_commit_reply_lost_then_retry_applies_exactly_once(
    records: Records, manager: LeaseManager
) -> None:
    rid = records.site1[0]
    proxy = TcpProxy("127.0.0.1", int(records.db.engine.url.port or 5432))
    await proxy.start()
    url = records.db.engine.url.set(port=proxy.port).render_as_string(hide_password=False)
    pool = make_pool(url, min_size=1, max_size=1)
    await pool.open(wait=True)
    try:
        via_proxy = LeaseManager(pool, LockdConfig(ttl_s=10))
        lease = await via_proxy.acquire("patients", rid, "cloud:1/bob")
        save_id = uuid.uuid4()
        before = history_count(records.db, rid)
        proxy.cut_on_next_reply()
        with pytest.raises(LockdUnavailable):
            await via_proxy.save(
                lease.lease_id,
                lease.token,
                {"notes": "exactly once"},
                expected_revision=lease.revision,
                save_id=save_id,
            )
        assert proxy.cuts == 1
        # The reply was lost but the transaction had committed.
        assert history_count(records.db, rid) == before + 1
        retry = await via_proxy.save(
            lease.lease_id,
            lease.token,
            {"notes": "exactly once"},
            expected_revision=lease.revision,
            save_id=save_id,
        )
        assert retry.status == "replayed"
        assert history_count(records.db, rid) == before + 1
        row = row_of(records.db, rid)
        assert row["notes"] == "exactly once" and row["revision"] == retry.revision
        assert (row["version_major"], row["version_minor"]) == (2, 0)
        # Someone else gets the record; replaying the old request is now refused.
        await via_proxy.release(lease.lease_id, lease.token)
        other = await manager.acquire("patients", rid, "cloud:1/carol")
        await manager.save(other.lease_id, other.token, {"notes": "carol"})
        with pytest.raises(LeaseNotHeld):
            await via_proxy.save(
                lease.lease_id,
                lease.token,
                {"notes": "exactly once"},
                expected_revision=lease.revision,
                save_id=save_id,
            )
        assert row_of(records.db, rid)["notes"] == "carol"
    finally:
        await pool.close()
        await proxy.stop()


def test_postgres_restart_keeps_leases_and_tokens_grow() -> None:
    from scsync.embedded_pg import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix="lockd-restart-"))
    server = EmbeddedPostgres(workdir / "data", durable=True)
    server.start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE lockd_restart")
        url = server.url_for("lockd_restart")
        migrate.upgrade(url, "cloud")
        tdb = TestDatabase(
            "lockd_restart", url.replace("postgresql://", "postgresql+psycopg://"), "cloud", None, 0
        )
        tdb.call(schema_db.set_node, 0, "cloud", None)
        tdb.dispose()
        a = add_patient(tdb, 1, "R1", "Restart one")
        b = add_patient(tdb, 1, "R2", "Restart two")

        async def before() -> tuple[Any, Any]:
            async with make_pool(url, min_size=1, max_size=1) as pool:
                mgr = LeaseManager(pool, LockdConfig(ttl_s=120))
                la = await mgr.acquire("patients", a, "cloud:1/bob")
                lb = await mgr.acquire("patients", b, "cloud:1/carol")
                await mgr.release(lb.lease_id, lb.token)
                return la, lb

        la, lb = asyncio.run(before())
        server.stop(mode="immediate")  # a crash, not a clean shutdown
        server.start()

        async def after() -> None:
            async with make_pool(server.url_for("lockd_restart"), min_size=1, max_size=1) as pool:
                mgr = LeaseManager(pool, LockdConfig(ttl_s=120))
                state = await mgr.get("patients", a)
                assert state.status == "held" and state.token == la.token
                renewed = await mgr.renew(la.lease_id, la.token)  # the lease is still valid
                assert renewed.holder == "cloud:1/bob"
                with pytest.raises(LeaseBusy):
                    await mgr.acquire("patients", a, "cloud:1/eve")
                nb = await mgr.acquire("patients", b, "cloud:1/dave")
                assert nb.token > max(la.token, lb.token)

        asyncio.run(after())
        tdb.dispose()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_wall_clock_is_not_consulted(records: Records, monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces for the skew tests: lockd never reads this process's wall clock."""

    def no_wall_clock() -> float:
        raise AssertionError("lockd read the wall clock")

    async def run() -> None:
        async with make_pool(records.db.libpq_url, min_size=1, max_size=1) as pool:
            mgr = LeaseManager(pool, LockdConfig(ttl_s=0.3, wait_poll_s=0.02))
            monkeypatch.setattr(time, "time", no_wall_clock)
            lease = await mgr.acquire("patients", records.site1[0], "cloud:1/bob")
            await mgr.renew(lease.lease_id, lease.token)
            again = await mgr.acquire("patients", records.site1[0], "cloud:1/carol", wait_s=2)
            await mgr.sweep()
            monkeypatch.undo()
            assert again.token > lease.token

    asyncio.run(run())
