"""Saves by local clients: fenced by lockd, written on the local DB; and explicit
offline (unfenced) sessions when lockd is unreachable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from lockd.client import LockClient
from lockd.errors import (
    Forbidden,
    LeaseExpired,
    LeaseNotHeld,
    LockServiceUnreachable,
    OfflineSessionError,
    VersionConflict,
)
from lockd.local import save_locally
from lockd.manager import LeaseManager, Owner
from lockd.models import SaveGrant
from lockd.offline import close_offline, open_offline, open_offline_sessions, save_offline
from scsync.embedded_pg import free_port
from tests.lockd.conftest import age_leases, row_of
from tests.pg import TestDatabase

pytestmark = pytest.mark.dblevel


def mirror_patient(local_db: TestDatabase, cloud_db: TestDatabase, name: str) -> int:
    """A patient created locally and already replicated to the cloud (same revision)."""
    with local_db.connect(autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'L1', %s)"
            " RETURNING id, revision",
            (name,),
        ).fetchone()
        assert row is not None
        conn.execute("UPDATE patients SET synced_revision = revision WHERE id = %s", (row[0],))
    push(local_db, cloud_db, int(str(row[0])))
    return int(str(row[0]))


def push(local_db: TestDatabase, cloud_db: TestDatabase, rid: int) -> None:
    """What the replicator's push does for one row (fast-forward, marked replicating)."""
    cols = [
        "id",
        "site_id",
        "patient_code",
        "name",
        "notes",
        "phone",
        "birth_date",
        "version_major",
        "version_minor",
        "revision",
    ]
    with local_db.connect() as conn:
        row = conn.execute(
            "SELECT id, site_id, patient_code, name, notes, phone, birth_date, version_major,"
            " version_minor, revision FROM patients WHERE id = %s",
            (rid,),
        ).fetchone()
    assert row is not None
    values = dict(zip(cols, row, strict=True))
    with cloud_db.connect() as conn:
        conn.execute("SET LOCAL scsync.replicating = 'on'")
        conn.execute(
            "INSERT INTO patients (id, site_id, patient_code, name, notes, phone, birth_date,"
            " version_major, version_minor, revision, synced_revision)"
            " VALUES (%(id)s, %(site_id)s, %(patient_code)s, %(name)s, %(notes)s, %(phone)s,"
            " %(birth_date)s, %(version_major)s, %(version_minor)s, %(revision)s, %(revision)s)"
            " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, notes = EXCLUDED.notes,"
            " phone = EXCLUDED.phone, birth_date = EXCLUDED.birth_date,"
            " version_major = EXCLUDED.version_major, version_minor = EXCLUDED.version_minor,"
            " revision = EXCLUDED.revision, synced_revision = EXCLUDED.revision",
            values,
        )
        conn.commit()


@pytest.fixture
async def local_conn(local_db: TestDatabase) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(local_db.libpq_url, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


class SiteFence:
    """The manager as a site sees it (owner = the site), like LockClient over HTTP."""

    def __init__(self, manager: LeaseManager, site_id: int) -> None:
        self.manager = manager
        self.owner = Owner.site(site_id)

    async def begin_save(self, lease_id: uuid.UUID, token: int, base_revision: int) -> SaveGrant:
        return await self.manager.begin_save(lease_id, token, base_revision, owner=self.owner)

    async def end_save(
        self, lease_id: uuid.UUID, token: int, new_revision: int, changed: bool
    ) -> None:
        await self.manager.end_save(lease_id, token, new_revision, changed, owner=self.owner)


async def test_fenced_local_saves_version_and_fast_forward(
    manager: LeaseManager,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    local_conn: psycopg.AsyncConnection[Any],
) -> None:
    rid = mirror_patient(local_db, cloud_db, "Local patient")
    fence = SiteFence(manager, 1)
    lease = await manager.acquire("patients", rid, "local:1/alice", scope_site=1, ttl_s=5)
    first = await save_locally(
        local_conn, fence, lease.lease_id, lease.token, "patients", rid, {"notes": "a"}
    )
    assert first.recorded and first.applied.changed
    assert (first.applied.version_major, first.applied.version_minor) == (2, 0)
    # Before the push the cloud is still at the acquisition revision: a second save is fine.
    second = await save_locally(
        local_conn, fence, lease.lease_id, lease.token, "patients", rid, {"notes": "b"}
    )
    assert (second.applied.version_major, second.applied.version_minor) == (2, 1)
    push(local_db, cloud_db, rid)  # the replicator catches up: the cloud has our revision
    third = await save_locally(
        local_conn, fence, lease.lease_id, lease.token, "patients", rid, {"notes": "c"}
    )
    assert (third.applied.version_major, third.applied.version_minor) == (2, 2)
    state = (await manager.get("patients", rid)).raw
    assert state["saves"] == 3 and state["saved_revision"] == third.applied.revision
    # Drift on the cloud by another path: the next local save is refused, nothing written.
    with cloud_db.connect() as conn:
        conn.execute("UPDATE patients SET phone = '1' WHERE id = %s", (rid,))
        conn.commit()
    before = row_of(local_db, rid)
    with pytest.raises(VersionConflict):
        await save_locally(
            local_conn, fence, lease.lease_id, lease.token, "patients", rid, {"notes": "d"}
        )
    assert row_of(local_db, rid) == before


async def test_local_save_without_a_live_lease_writes_nothing(
    manager: LeaseManager,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    local_conn: psycopg.AsyncConnection[Any],
) -> None:
    rid = mirror_patient(local_db, cloud_db, "Local patient")
    fence = SiteFence(manager, 1)
    lease = await manager.acquire("patients", rid, "local:1/alice", ttl_s=0.3)
    before = row_of(local_db, rid)
    # Another site cannot use this lease.
    with pytest.raises(LeaseNotHeld):
        await save_locally(
            local_conn,
            SiteFence(manager, 2),
            lease.lease_id,
            lease.token,
            "patients",
            rid,
            {"notes": "x"},
        )
    # The grant runs out (by the DB clock) before this process could commit.
    with pytest.raises(LeaseExpired):
        await save_locally(
            local_conn,
            fence,
            lease.lease_id,
            lease.token,
            "patients",
            rid,
            {"notes": "x"},
            margin_s=0.5,
        )
    age_leases(cloud_db, 0.4)  # the DB clock moves past the 0.3 s grant
    with pytest.raises(LeaseExpired):
        await save_locally(
            local_conn, fence, lease.lease_id, lease.token, "patients", rid, {"notes": "x"}
        )
    assert row_of(local_db, rid) == before


async def test_offline_session_when_lockd_is_unreachable(
    local_db: TestDatabase, local_conn: psycopg.AsyncConnection[Any]
) -> None:
    with local_db.connect(autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'O1', 'Off')"
            " RETURNING id, revision"
        ).fetchone()
    assert row is not None
    rid, base = int(str(row[0])), int(str(row[1]))
    async with LockClient(f"http://127.0.0.1:{free_port()}/v1/locks", "t", timeout_s=0.5) as c:
        with pytest.raises(LockServiceUnreachable):
            await c.acquire("patients", rid, "local:1/alice")
    with pytest.raises(Forbidden):
        await open_offline(local_conn, "patients", rid, "local:2/eve")
    session = await open_offline(local_conn, "patients", rid, "local:1/alice")
    assert session.unfenced and session.status == "open"
    assert session.base_revision == base and (session.base_version_major, session.saves) == (1, 0)
    a = await save_offline(local_conn, session.session_id, {"notes": "offline 1"})
    b = await save_offline(local_conn, session.session_id, {"notes": "offline 2"})
    assert (a.version_major, a.version_minor, b.version_major, b.version_minor) == (2, 0, 2, 1)
    [listed] = await open_offline_sessions(local_conn)
    assert listed.session_id == session.session_id and listed.saves == 2
    assert listed.last_saved_revision == b.revision
    # The saves are ordinary local changes, queued for the replicator with their base.
    with local_db.connect() as conn:
        outbox = conn.execute(
            "SELECT revision FROM scsync_outbox WHERE row_id = %s ORDER BY seq", (rid,)
        ).fetchall()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "UPDATE scsync_offline_sessions SET unfenced = false WHERE session_id = %s",
                (session.session_id,),
            )
    assert [r[0] for r in outbox][-2:] == [a.revision, b.revision]
    await close_offline(local_conn, session.session_id)
    assert await open_offline_sessions(local_conn) == []
    with pytest.raises(OfflineSessionError):
        await save_offline(local_conn, session.session_id, {"notes": "late"})
