"""The lease library against a real cloud database: acquire, renew, touch, release,
break, sweep, events, and what each refuses."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from lockd.db import Pool
from lockd.errors import (
    BadRequest,
    Forbidden,
    LeaseBusy,
    LeaseExpired,
    LeaseNotHeld,
    NoLease,
    RecordNotFound,
)
from lockd.manager import LeaseManager, LockdConfig, Owner
from lockd.models import Lease
from tests.lockd.conftest import EventListener, Records, age_leases, lease_rows, until_queued

pytestmark = pytest.mark.dblevel


async def test_acquire_records_version_and_blocks_others(
    manager: LeaseManager, records: Records, events: EventListener
) -> None:
    rid = records.site1[0]
    lease = await manager.acquire("patients", rid, "local:1/alice", scope_site=1)
    assert (lease.version_major, lease.version_minor) == (1, 0)
    assert lease.holder == "local:1/alice" and lease.site_id == 1
    assert 0 < lease.expires_in_ms <= 1000
    with pytest.raises(LeaseBusy) as busy:
        await manager.acquire("patients", rid, "cloud:1/bob")
    assert busy.value.extra["holder"] == "local:1/alice"
    assert busy.value.extra["editing_by"] == "local"
    state = await manager.get("patients", rid)
    assert state.status == "held" and state.editing_by == "local" and state.token == lease.token
    assert "lease_id" not in state.raw
    acquired = await events.wait_for("lease.acquired")
    assert acquired["holder"] == "local:1/alice"
    assert acquired["token"] == lease.token and acquired["lease_id"] == str(lease.lease_id)
    assert acquired["table"] == "patients" and acquired["row_id"] == rid
    assert acquired["site_id"] == 1


async def test_release_is_owner_checked_and_frees_the_record(
    manager: LeaseManager, records: Records, events: EventListener
) -> None:
    rid = records.site1[0]
    lease = await manager.acquire("patients", rid, "cloud:1/bob")
    with pytest.raises(LeaseNotHeld):
        await manager.release(lease.lease_id, lease.token + 1)
    with pytest.raises(LeaseNotHeld):
        await manager.release(lease.lease_id, lease.token, owner=Owner.holder("cloud:1/eve"))
    with pytest.raises(LeaseNotHeld):
        await manager.release(lease.lease_id, lease.token, owner=Owner.site(1))
    assert len(lease_rows(records.db)) == 1
    await manager.release(lease.lease_id, lease.token, owner=Owner.holder("cloud:1/bob"))
    assert lease_rows(records.db) == []
    await events.wait_for("lease.released")
    # A late (replayed) release never frees the next holder's lease.
    nxt = await manager.acquire("patients", rid, "local:1/carol")
    with pytest.raises(LeaseNotHeld):
        await manager.release(lease.lease_id, lease.token)
    assert nxt.token > lease.token
    assert [r[2] for r in lease_rows(records.db)] == ["local:1/carol"]


async def test_site_owner_prefix_covers_its_users_only(
    manager: LeaseManager, records: Records
) -> None:
    lease = await manager.acquire("patients", records.site1[0], "local:1/alice")
    with pytest.raises(LeaseNotHeld):
        await manager.renew(lease.lease_id, lease.token, owner=Owner.site(2))
    renewed = await manager.renew(lease.lease_id, lease.token, owner=Owner.site(1))
    assert renewed.token == lease.token


async def test_scope_unknown_and_bad_input(manager: LeaseManager, records: Records) -> None:
    with pytest.raises(Forbidden):
        await manager.acquire("patients", records.site2[0], "local:1/alice", scope_site=1)
    with pytest.raises(RecordNotFound):
        await manager.acquire("patients", 12345, "local:1/alice", scope_site=1)
    with pytest.raises(RecordNotFound):
        await manager.acquire("no_such_table", 1, "local:1/alice")
    with pytest.raises(BadRequest) as bad:
        await manager.acquire("patients", records.site1[0], "mallory")
    assert bad.value.field == "holder"
    with pytest.raises(BadRequest) as bad:
        await manager.acquire("patients", -1, "cloud:1/x")
    assert bad.value.field == "row_id"
    assert lease_rows(records.db) == []


async def test_renew_extends_touch_resets_idle(manager: LeaseManager, records: Records) -> None:
    lease = await manager.acquire("patients", records.site1[0], "cloud:1/bob", ttl_s=60)
    age_leases(records.db, 30)
    renewed = await manager.renew(lease.lease_id, lease.token)
    assert renewed.expires_at is not None and lease.expires_at is not None
    assert renewed.expires_at > lease.expires_at
    assert lease.last_activity_at is not None
    # A heartbeat is not activity: the last activity stays 30 s (of the DB clock) ago.
    assert renewed.last_activity_at == lease.last_activity_at - timedelta(seconds=30)
    touched = await manager.touch(lease.lease_id, lease.token)
    assert touched.last_activity_at is not None and lease.last_activity_at is not None
    assert touched.last_activity_at > lease.last_activity_at


async def test_expired_lease_refuses_renew_and_is_taken_over_with_a_greater_token(
    manager: LeaseManager, records: Records, events: EventListener
) -> None:
    rid = records.site1[0]
    lease = await manager.acquire("patients", rid, "cloud:1/bob", ttl_s=60)
    age_leases(records.db, 61)
    with pytest.raises(LeaseExpired):
        await manager.renew(lease.lease_id, lease.token)
    nxt = await manager.acquire("patients", rid, "local:1/alice")
    assert nxt.token > lease.token
    expired = await events.wait_for("lease.expired")
    assert expired["token"] == lease.token
    with pytest.raises(LeaseNotHeld):
        await manager.renew(lease.lease_id, lease.token)


async def test_wait_acquire_gets_the_record_when_released(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    first = await manager.acquire("patients", rid, "cloud:1/bob", ttl_s=5)
    waiting = asyncio.create_task(manager.acquire("patients", rid, "cloud:1/carol", wait_s=3))
    await until_queued(manager, rid, 1)
    await manager.release(first.lease_id, first.token)
    second = await waiting
    assert second.token > first.token and second.holder == "cloud:1/carol"
    with pytest.raises(LeaseBusy):
        await manager.acquire("patients", rid, "cloud:1/dave", wait_s=0.15)


async def test_sweeper_expires_and_publishes(
    manager: LeaseManager, records: Records, events: EventListener
) -> None:
    lease = await manager.acquire("patients", records.site1[0], "cloud:1/bob", ttl_s=60)
    assert (await manager.sweep())["expired"] == 0
    age_leases(records.db, 61)
    counts = await manager.sweep()
    assert counts["expired"] == 1
    assert lease_rows(records.db) == []
    ev = await events.wait_for("lease.expired")
    assert ev["lease_id"] == str(lease.lease_id)
    logged = await manager.events_since(0, site_id=1)
    assert [e.event for e in logged] == ["lease.acquired", "lease.expired"]
    assert await manager.events_since(0, site_id=2) == []


async def test_idle_policy_warns_then_closes_despite_heartbeats(
    pool: Pool, records: Records, events: EventListener
) -> None:
    mgr = LeaseManager(pool, LockdConfig(ttl_s=60, idle_warn_s=30, idle_close_s=30))
    lease = await mgr.acquire("patients", records.site1[0], "local:1/alice")
    counts = []
    for _ in range(3):
        await mgr.renew(lease.lease_id, lease.token)  # a heartbeat, no user activity
        counts.append(await mgr.sweep())
        age_leases(records.db, 31)
    assert [(c["idle_warned"], c["idle_closed"]) for c in counts] == [(0, 0), (1, 0), (0, 1)]
    warning = await events.wait_for("lease.idle_warning")
    assert warning["close_in_ms"] == 30_000
    close = await events.wait_for("lease.idle_closed")
    assert close["close"] is True and close["token"] == lease.token
    assert events.names().index("lease.idle_warning") < events.names().index("lease.idle_closed")
    with pytest.raises(LeaseNotHeld):
        await mgr.renew(lease.lease_id, lease.token)


async def test_touch_keeps_an_active_editor(pool: Pool, records: Records) -> None:
    mgr = LeaseManager(pool, LockdConfig(ttl_s=60, idle_warn_s=30, idle_close_s=30))
    lease = await mgr.acquire("patients", records.site1[0], "local:1/alice")
    for _ in range(4):  # 80 s in all, never 30 s without activity
        age_leases(records.db, 20)
        await mgr.touch(lease.lease_id, lease.token)
        counts = await mgr.sweep()
        assert counts["idle_warned"] == 0 and counts["idle_closed"] == 0


async def test_force_break_bumps_the_token(
    manager: LeaseManager, records: Records, events: EventListener
) -> None:
    rid = records.site1[0]
    with pytest.raises(NoLease):
        await manager.force_break("patients", rid, by="cloud:1/admin")
    lease = await manager.acquire("patients", rid, "local:1/alice")
    with pytest.raises(Forbidden):
        await manager.force_break("patients", rid, by="cloud:1/admin2", scope_site=2)
    out = await manager.force_break("patients", rid, by="cloud:1/admin", reason="stuck")
    assert out["bumped_token"] > lease.token and out["holder"] == "local:1/alice"
    ev = await events.wait_for("lease.broken")
    assert ev["broken_by"] == "cloud:1/admin" and ev["reason"] == "stuck" and ev["close"] is True
    with pytest.raises(LeaseNotHeld):
        await manager.save(lease.lease_id, lease.token, {"name": "x"})
    nxt = await manager.acquire("patients", rid, "cloud:1/bob")
    assert nxt.token > out["bumped_token"]


class _SkewedClock:
    def __init__(self, offset_s: float) -> None:
        self.offset_s = offset_s

    def __call__(self) -> float:
        import time

        return time.monotonic() + self.offset_s


@pytest.mark.parametrize("skew_s", [-3600.0, 3600.0])
async def test_client_clock_skew_moves_nothing(
    pool: Pool, records: Records, skew_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + skew_s)
    mgr = LeaseManager(pool, LockdConfig(ttl_s=0.5), monotonic=_SkewedClock(skew_s))
    lease = await mgr.acquire("patients", records.site1[0], "cloud:1/bob")
    assert isinstance(lease, Lease)
    assert lease.acquired_at is not None and lease.expires_at is not None
    assert (lease.expires_at - lease.acquired_at).total_seconds() == pytest.approx(0.5, abs=1e-3)
    # The grant is relative to the database clock, whatever this process believes.
    with records.db.connect() as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    db_now = row[0]
    assert abs((lease.expires_at - db_now).total_seconds()) < 1.0  # type: ignore[operator]
    with pytest.raises(LeaseBusy):
        await mgr.acquire("patients", records.site1[0], "cloud:1/carol", wait_s=0.1)
    age_leases(records.db, 0.6)
    other = await mgr.acquire("patients", records.site1[0], "cloud:1/carol")
    assert other.token > lease.token


async def test_lease_id_must_be_a_uuid(manager: LeaseManager) -> None:
    with pytest.raises(BadRequest):
        await manager.renew("nope", 1)  # type: ignore[arg-type]
    with pytest.raises(LeaseNotHeld):
        await manager.renew(uuid.uuid4(), 1)


async def test_a_release_hands_the_record_to_the_first_waiter(pool: Pool, records: Records) -> None:
    # Polling is made far too slow to matter: only the hand-off can wake the waiters.
    mgr = LeaseManager(pool, LockdConfig(ttl_s=30, wait_poll_s=20))
    rid = records.site1[0]
    first = await mgr.acquire("patients", rid, "cloud:1/a")
    order: list[str] = []

    async def wait_for_it(name: str) -> Lease:
        lease = await mgr.acquire("patients", rid, f"cloud:1/{name}", wait_s=10)
        order.append(name)
        return lease

    w1 = asyncio.create_task(wait_for_it("b"))
    await until_queued(mgr, rid, 1)
    w2 = asyncio.create_task(wait_for_it("c"))
    await until_queued(mgr, rid, 2)
    loop = asyncio.get_running_loop()
    released_at = loop.time()
    await mgr.release(first.lease_id, first.token)
    got_b = await asyncio.wait_for(w1, 5)
    assert loop.time() - released_at < 5  # far below the 20 s poll: woken, not polled
    assert not w2.done()
    await mgr.release(got_b.lease_id, got_b.token)
    got_c = await asyncio.wait_for(w2, 5)
    assert order == ["b", "c"] and got_c.token > got_b.token > first.token


async def test_a_release_elsewhere_wakes_a_waiter_through_notify(
    pool: Pool, records: Records
) -> None:
    from lockd.db import make_pool

    rid = records.site1[0]
    holder_side = LeaseManager(pool, LockdConfig(ttl_s=30))
    async with make_pool(records.db.url, min_size=1, max_size=2) as other_pool:
        waiter_side = LeaseManager(other_pool, LockdConfig(ttl_s=30, wait_poll_s=20))
        stop, ready = asyncio.Event(), asyncio.Event()
        listener = asyncio.create_task(
            waiter_side.listen_for_releases(records.db.libpq_url, stop, ready)
        )
        try:
            first = await holder_side.acquire("patients", rid, "cloud:1/a")
            await asyncio.wait_for(ready.wait(), 10)
            waiting = asyncio.create_task(
                waiter_side.acquire("patients", rid, "cloud:1/b", wait_s=10)
            )
            await until_queued(waiter_side, rid, 1)  # the waiter found it taken and queued
            loop = asyncio.get_running_loop()
            released_at = loop.time()
            await holder_side.release(first.lease_id, first.token)
            got = await asyncio.wait_for(waiting, 8)
            assert loop.time() - released_at < 5  # woken by the notification, not the poll
            assert got.token > first.token
        finally:
            stop.set()
            await asyncio.wait_for(listener, 5)


async def test_lease_events_reach_the_api_log_with_the_records_patient(
    manager: LeaseManager, records: Records
) -> None:
    """Every lease event becomes an API event naming the record's patient: a patient is
    its own, an image names its patient_id, a doctor (no patient) names none."""
    db = records.db
    patient = records.site1[0]
    with db.connect(autocommit=True) as conn:
        image = conn.execute(
            "INSERT INTO images (site_id, patient_id, modality) VALUES (1, %s, 'CT') RETURNING id",
            (patient,),
        ).fetchone()
        doctor = conn.execute(
            "INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Kim') RETURNING id"
        ).fetchone()
    assert image is not None and doctor is not None
    image_id, doctor_id = int(str(image[0])), int(str(doctor[0]))
    for table, rid in (("patients", patient), ("images", image_id), ("doctors", doctor_id)):
        lease = await manager.acquire(table, rid, "local:1/alice", scope_site=1)
        await manager.release(lease.lease_id, lease.token)
    with db.connect() as conn:
        rows = conn.execute(
            "SELECT type, table_name, row_id, patient_id, payload FROM scsync_api_events"
            " WHERE type IN ('record.editing', 'record.released') ORDER BY id"
        ).fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("record.editing", "patients", patient, patient),
        ("record.released", "patients", patient, patient),
        ("record.editing", "images", image_id, patient),
        ("record.released", "images", image_id, patient),
        ("record.editing", "doctors", doctor_id, None),
        ("record.released", "doctors", doctor_id, None),
    ]
    payloads = [r[4] for r in rows]
    assert all(isinstance(p, dict) for p in payloads)
    assert all(
        p["by"] == "local" and p["holder"] == "local:1/alice" and "lease_id" not in p
        for p in payloads
        if isinstance(p, dict)
    )
