"""Edit sessions: fenced saves, A.B versions, drift, history and rollback."""

from __future__ import annotations

import uuid

import pytest

from lockd.errors import InvalidChange, LeaseNotHeld, VersionConflict
from lockd.manager import LeaseManager
from lockd.sessions import EditSession
from tests.lockd.conftest import Records, history_count, row_of

pytestmark = pytest.mark.dblevel


async def test_versions_follow_the_session_rules(manager: LeaseManager, records: Records) -> None:
    rid = records.site1[0]
    s1 = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    assert s1.version == (1, 0)
    unchanged = await s1.save({"name": "Patient 0"})  # same content: nothing happens
    assert unchanged.status == "unchanged" and unchanged.version == "1.0"
    first = await s1.save({"name": "Renamed", "notes": "n1"})
    assert first.status == "saved" and first.version == "2.0"
    second = await s1.save({"notes": "n2"})
    assert second.version == "2.1"
    again = await s1.save({"notes": "n2"})
    assert again.version == "2.1" and again.revision == second.revision
    third = await s1.save({"birth_date": "1990-04-01"})
    assert third.version == "2.2"
    await s1.close()
    row = row_of(records.db, rid)
    assert (row["version_major"], row["version_minor"]) == (2, 2)
    assert row["birth_date"] == "1990-04-01" and row["notes"] == "n2"
    # A session that saves nothing leaves the version alone; the next real one is 3.0.
    s2 = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    await s2.close()
    s3 = await EditSession.open(manager, "patients", rid, "local:1/alice")
    assert (await s3.save({"notes": "n3"})).version == "3.0"
    await s3.close()


async def test_drift_is_refused_and_nothing_is_written(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    session = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    # Another path (the replicator applying a local change) writes the record.
    with records.db.connect() as conn:
        conn.execute("UPDATE patients SET phone = '555' WHERE id = %s", (rid,))
        conn.commit()
    before = row_of(records.db, rid)
    hist = history_count(records.db, rid)
    with pytest.raises(VersionConflict):
        await session.save({"name": "Mine", "notes": "x"})
    assert row_of(records.db, rid) == before
    assert history_count(records.db, rid) == hist
    lease = (await manager.get("patients", rid)).raw
    assert lease["saves"] == 0  # the session did not advance either


async def test_a_stale_request_of_the_session_is_refused(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    session = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    base = session.revision
    await session.save({"notes": "one"})
    with pytest.raises(VersionConflict):
        await manager.save(
            session.lease.lease_id, session.lease.token, {"notes": "old"}, expected_revision=base
        )
    assert row_of(records.db, rid)["notes"] == "one"


async def test_bad_changes_are_refused_before_anything_is_written(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    session = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    before = row_of(records.db, rid)
    for changes, field in (
        ({"revision": 1}, "changes.revision"),
        ({"site_id": 2}, "changes.site_id"),
        ({"nope": 1}, "changes.nope"),
        ({"birth_date": "not a date"}, "changes"),
        ({"name": None}, "changes"),
    ):
        with pytest.raises(InvalidChange) as err:
            await session.save(changes)
        assert err.value.field == field
        # Without the table hint, the database names the column itself.
        with pytest.raises(InvalidChange) as err:
            await manager.save(session.lease.lease_id, session.lease.token, changes)
        assert err.value.field == field
    assert row_of(records.db, rid) == before
    assert (await session.save({"notes": "fine"})).version == "2.0"


async def test_retry_with_the_same_save_id_applies_once(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    session = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    save_id = uuid.uuid4()
    base = session.revision
    first = await manager.save(
        session.lease.lease_id,
        session.lease.token,
        {"notes": "once"},
        expected_revision=base,
        save_id=save_id,
    )
    hist = history_count(records.db, rid)
    replay = await manager.save(
        session.lease.lease_id,
        session.lease.token,
        {"notes": "once"},
        expected_revision=base,
        save_id=save_id,
    )
    assert replay.status == "replayed" and replay.revision == first.revision
    assert history_count(records.db, rid) == hist
    await session.close()
    with pytest.raises(LeaseNotHeld):
        await manager.save(
            session.lease.lease_id,
            session.lease.token,
            {"notes": "once"},
            expected_revision=base,
            save_id=save_id,
        )


async def test_rollback_restores_an_older_revision_as_a_new_save(
    manager: LeaseManager, records: Records
) -> None:
    rid = records.site1[0]
    session = await EditSession.open(manager, "patients", rid, "cloud:1/bob")
    original = session.revision
    await session.save({"name": "B", "notes": "b"})
    await session.save({"name": "C"})
    restored = await session.rollback_to(original)
    assert restored.version == "2.2" and restored.revision not in (original,)
    row = row_of(records.db, rid)
    assert row["name"] == "Patient 0" and row["notes"] is None
    with records.db.connect() as conn:
        versions = conn.execute(
            "SELECT version_major, version_minor FROM scsync_history"
            " WHERE row_id = %s ORDER BY seq",
            (rid,),
        ).fetchall()
    assert versions == [(1, 0), (2, 0), (2, 1), (2, 2)]
