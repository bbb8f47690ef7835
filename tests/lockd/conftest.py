"""Fixtures of the lockd tests: a cloud database with records of two sites, a lease
manager with short TTLs, and a listener for lease events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg
import pytest

from lockd.db import Pool, make_pool
from lockd.manager import LeaseManager, LockdConfig
from tests.pg import TestDatabase

FAST = LockdConfig(
    ttl_s=1.0, idle_warn_s=None, idle_close_s=None, sweep_interval_s=0.1, wait_poll_s=0.02
)


@dataclass
class Records:
    """Patients on the cloud: ``site1`` (two of them) and ``site2`` (one)."""

    db: TestDatabase
    site1: list[int] = field(default_factory=list)
    site2: list[int] = field(default_factory=list)


def age_leases(db: TestDatabase, seconds: float) -> None:
    """The database's clock moved ``seconds`` forward, as every lease sees it.

    The lease functions read no clock but the database's ``clock_timestamp()`` and
    compare it with these columns only; moving them back is that clock moving on, for
    the leases held now, without a sleep.
    """
    with db.connect(autocommit=True) as conn:
        conn.execute(
            "UPDATE scsync_leases SET acquired_at = acquired_at - %(d)s,"
            " renewed_at = renewed_at - %(d)s, expires_at = expires_at - %(d)s,"
            " last_activity_at = last_activity_at - %(d)s,"
            " idle_warned_at = idle_warned_at - %(d)s",
            {"d": timedelta(seconds=seconds)},
        )


async def until_queued(manager: LeaseManager, row_id: int, n: int, timeout: float = 5.0) -> None:
    """Until ``n`` acquires of patients/``row_id`` wait in ``manager``'s queue: the positive
    signal that a waiter found the record taken and lined up (no sleep to order them)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while manager.queued("patients", row_id) < n:
        assert loop.time() < deadline, f"{n} waiter(s) never queued for patients/{row_id}"
        await asyncio.sleep(0.002)


def add_patient(db: TestDatabase, site_id: int, code: str, name: str) -> int:
    with db.connect(autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, %s) RETURNING id",
            (site_id, code, name),
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


@pytest.fixture
def records(cloud_db: TestDatabase) -> Records:
    recs = Records(cloud_db)
    recs.site1 = [add_patient(cloud_db, 1, f"P{i}", f"Patient {i}") for i in range(2)]
    recs.site2 = [add_patient(cloud_db, 2, "Q0", "Other clinic")]
    return recs


@pytest.fixture
async def pool(cloud_db: TestDatabase) -> AsyncIterator[Pool]:
    p = make_pool(cloud_db.url, min_size=1, max_size=10)
    await p.open(wait=True)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def manager(pool: Pool) -> LeaseManager:
    return LeaseManager(pool, FAST)


def row_of(db: TestDatabase, row_id: int) -> dict[str, object]:
    with db.connect() as conn:
        row = conn.execute("SELECT to_jsonb(p) FROM patients p WHERE id = %s", (row_id,)).fetchone()
    assert row is not None
    assert isinstance(row[0], dict)
    return row[0]


def lease_rows(db: TestDatabase) -> list[tuple[object, ...]]:
    with db.connect() as conn:
        return conn.execute(
            "SELECT table_name, row_id, holder, token, lease_id FROM scsync_leases ORDER BY 1, 2"
        ).fetchall()


def history_count(db: TestDatabase, row_id: int) -> int:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM scsync_history WHERE row_id = %s", (row_id,)
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


class EventListener:
    """LISTEN scsync_lease on its own connection. A notification names the event (seq,
    kind, record) only; the listener reads the rest from the event log by seq, as a
    real listener would: ``events`` are those full events, ``payloads`` the raw
    notifications."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, object]] = []
        self.payloads: list[str] = []
        self._conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._reader: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self._reader = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        await self._conn.execute("LISTEN scsync_lease")
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._conn is not None and self._reader is not None
        async for n in self._conn.notifies():
            self.payloads.append(n.payload)
            seq = json.loads(n.payload)["seq"]
            cur = await self._reader.execute(
                "SELECT jsonb_build_object('seq', seq, 'event', event, 'table', table_name,"
                " 'row_id', row_id, 'site_id', site_id, 'holder', holder, 'token', token,"
                " 'lease_id', lease_id, 'at', at) || coalesce(detail, '{}')"
                " FROM scsync_lease_events WHERE seq = %s",
                (seq,),
            )
            row = await cur.fetchone()
            assert row is not None and isinstance(row[0], dict), n.payload
            self.events.append(row[0])

    def names(self) -> list[object]:
        return [e["event"] for e in self.events]

    async def wait_for(self, event: str, timeout: float = 5.0) -> dict[str, object]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            for e in self.events:
                if e["event"] == event:
                    return e
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event} event within {timeout}s; got {self.names()}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for conn in (self._conn, self._reader):
            if conn is not None:
                await conn.close()


@pytest.fixture
async def events(cloud_db: TestDatabase) -> AsyncIterator[EventListener]:
    listener = EventListener(cloud_db.libpq_url)
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
