"""The apply rule's conflict branch, resolution from either side, redelivery."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from replicator.lane import Lane
from schema import conflicts
from schema.database import SCHEMA, connect
from tests.pg import TestDatabase
from tests.world import World, rows, sync


def _one_patient(world: World) -> int:
    with world.site1.local.connect(autocommit=True) as c:
        row = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'P', 'base') "
            "RETURNING id"
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


async def _offline_edits(world: World) -> tuple[int, dict[str, Any], dict[str, Any]]:
    pid = _one_patient(world)
    await sync(world.site1)
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'local version' WHERE id = %s", (pid,))
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'cloud version' WHERE id = %s", (pid,))
    local_before = rows(world.site1.local, "patients")[pid]
    cloud_before = rows(world.cloud, "patients")[pid]
    await sync(world.site1)
    return pid, local_before, cloud_before


async def test_concurrent_edit_is_kept_on_both_sides_and_resolved_by_keep_cloud(
    world: World,
) -> None:
    pid, local_before, cloud_before = await _offline_edits(world)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    # Neither side overwritten, both marked.
    assert (local["name"], local["revision"]) == ("local version", local_before["revision"])
    assert (cloud["name"], cloud["revision"]) == ("cloud version", cloud_before["revision"])
    assert local["in_conflict"] and cloud["in_conflict"]
    # One conflict record on each side, the same id, both versions retrievable.
    async with world.site1.local.aconnect() as lc, world.cloud.aconnect() as cc:
        on_local = await conflicts.list_conflicts(lc, site_id=1)
        on_cloud = await conflicts.list_conflicts(cc, site_id=1)
        assert len(on_local) == 1 and len(on_cloud) == 1
        assert on_local[0].id == on_cloud[0].id
        full = await conflicts.get_conflict(lc, on_local[0].id)
    assert full.local_row is not None and full.local_row["name"] == "local version"
    assert full.cloud_row is not None and full.cloud_row["name"] == "cloud version"
    assert full.local_revision == local_before["revision"]
    assert full.cloud_revision == cloud_before["revision"]

    # More syncing changes nothing while the conflict is open.
    await sync(world.site1)
    assert rows(world.cloud, "patients")[pid]["name"] == "cloud version"
    assert rows(world.site1.local, "patients")[pid]["name"] == "local version"

    # Resolved at the site, keeping the cloud's version: both sides converge.
    async with world.site1.local.aconnect() as lc:
        new_rev = await conflicts.resolve_conflict(lc, full.id, keep="cloud", by="dr.kim")
    await sync(world.site1)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    assert local["name"] == cloud["name"] == "cloud version"
    assert local["revision"] == cloud["revision"] == new_rev
    assert not local["in_conflict"] and not cloud["in_conflict"]
    assert local["synced"] and cloud["synced"]
    async with world.site1.local.aconnect() as lc, world.cloud.aconnect() as cc:
        for conn in (lc, cc):
            done = await conflicts.get_conflict(conn, full.id)
            assert (done.status, done.resolution, done.resolved_by) == (
                "resolved",
                "cloud",
                "dr.kim",
            )
        with pytest.raises(conflicts.ConflictError):
            await conflicts.resolve_conflict(cc, full.id, keep="local", by="x")
    # Later edits flow normally again.
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET notes = 'after' WHERE id = %s", (pid,))
    await sync(world.site1)
    assert rows(world.site1.local, "patients")[pid]["notes"] == "after"


async def test_keep_local_resolved_on_the_cloud(world: World) -> None:
    pid, _, _ = await _offline_edits(world)
    # Given a pg8000 URL this time: the runtime layer reaches the same database (libpq).
    async with connect(world.cloud.url_with("pg8000"), SCHEMA) as cc:
        (found,) = await conflicts.list_conflicts(cc, site_id=1)
        assert (await conflicts.get_conflict(cc, found.id)).cloud_row is not None
        await conflicts.resolve_conflict(cc, found.id, keep="local", by="cloud-admin")
    await sync(world.site1)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    assert local["name"] == cloud["name"] == "local version"
    assert local["revision"] == cloud["revision"]
    assert not local["in_conflict"] and not cloud["in_conflict"]
    async with world.site1.local.aconnect() as lc:
        assert await conflicts.list_conflicts(lc) == []


async def test_local_delete_against_cloud_edit_conflicts_and_keep_cloud_restores(
    world: World,
) -> None:
    pid = _one_patient(world)
    await sync(world.site1)
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("DELETE FROM patients WHERE id = %s", (pid,))
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'edited in cloud' WHERE id = %s", (pid,))
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[pid]
    assert cloud["name"] == "edited in cloud" and not cloud["deleted"] and cloud["in_conflict"]
    assert pid not in rows(world.site1.local, "patients")
    async with world.site1.local.aconnect() as lc:
        (found,) = await conflicts.list_conflicts(lc)
        assert found.local_revision is not None
        assert (await conflicts.get_conflict(lc, found.id)).local_row is None  # the deletion
        await conflicts.resolve_conflict(lc, found.id, keep="cloud", by="dr.kim")
    await sync(world.site1)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    assert local["name"] == cloud["name"] == "edited in cloud"
    assert local["revision"] == cloud["revision"]


async def test_redelivered_batch_is_a_duplicate_not_a_conflict(world: World) -> None:
    """Killed after the cloud applied a batch, before the site heard of it; meanwhile a
    cloud user edits one of those rows. The old change is a duplicate; the edit stays."""
    pid = _one_patient(world)
    settings = world.site1.settings()
    lane = Lane("push", settings)
    await lane.open()
    batch = await lane.read()
    result, _ = await lane._apply(batch)  # applied and recorded in the cloud's inbox ...
    assert result.applied == 1
    await lane.close()  # ... and the ack never happens
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'cloud edit' WHERE id = %s", (pid,))
        assert c.execute("SELECT count(*) FROM scsync_inbox").fetchone() == (1,)

    await sync(world.site1)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    assert local["name"] == cloud["name"] == "cloud edit"
    assert not local["in_conflict"] and not cloud["in_conflict"]
    for db in (world.site1.local, world.cloud):
        with db.connect() as c:
            assert c.execute("SELECT count(*) FROM scsync_conflicts").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM scsync_inbox").fetchone() == (0,)
    # A second delivery of the very same batch (the worst case) is a duplicate too.
    lane = Lane("push", settings)
    await lane.open()
    try:
        again, _ = await lane._apply(batch)
    finally:
        await lane.close()
    assert (again.applied, again.duplicates, again.conflicts) == (0, 1, 0)


@pytest.mark.parametrize(
    ("op", "revision", "base", "dest", "in_history", "resolved", "expected"),
    [
        ("U", 5, 3, 3, False, False, "apply"),
        ("I", 5, None, None, False, False, "apply"),
        ("U", 5, 3, 5, True, False, "duplicate"),
        ("U", 5, 3, 7, True, False, "duplicate"),
        ("U", 5, 3, 7, False, False, "conflict"),
        ("U", 5, 3, None, False, False, "conflict"),
        ("D", 5, 3, 3, False, False, "apply"),
        ("D", 5, 3, None, False, False, "duplicate"),
        ("D", 5, 3, 8, False, False, "conflict"),
        # A deletion that a resolution at the destination already decided on, arriving
        # late (its lane had not caught up when the user resolved): nothing to decide.
        ("D", 5, 3, 8, False, True, "duplicate"),
    ],
)
def test_the_apply_rule_in_sql_follows_the_spec(
    cloud_db: TestDatabase,
    op: Any,
    revision: int,
    base: int | None,
    dest: int | None,
    in_history: bool,
    resolved: bool,
    expected: str,
) -> None:
    """Each case of the SPEC's table through the apply that production runs
    (scsync_replicator_apply, at a cloud destination set up as the case says)."""
    row_id = 7
    with cloud_db.connect() as c:
        c.execute("SELECT set_config('scsync.replicating', 'on', true)")
        if dest is not None:
            c.execute(
                "INSERT INTO patients (id, site_id, name, patient_code, revision,"
                " synced_revision) VALUES (%s, 1, 'dest', 'p', %s, %s)",
                (row_id, dest, dest),
            )
        if in_history:
            c.execute(
                "INSERT INTO scsync_history (table_name, row_id, site_id, revision,"
                " version_major, version_minor, op, row_data, origin)"
                " VALUES ('patients', %s, 1, %s, 1, 0, 'U', '{}', 'replicated')"
                " ON CONFLICT DO NOTHING",
                (row_id, revision),
            )
        if resolved:
            c.execute(
                "INSERT INTO scsync_conflicts (table_name, row_id, site_id, base_revision,"
                " local_revision, cloud_revision, local_row, cloud_row, detected_on, status,"
                " resolution, resolved_by, resolved_at) VALUES ('patients', %s, 1, %s, %s, %s,"
                " NULL, '{}', 'cloud', 'resolved', 'cloud', 'test', clock_timestamp())",
                (row_id, base, revision, dest),
            )
        content = {
            "id": row_id,
            "site_id": 1,
            "name": "sent",
            "patient_code": "p",
            "revision": revision,
        }
        batch = [
            {
                "ord": 1,
                "table_name": "patients",
                "row_id": row_id,
                "op": "U" if op == "I" else op,
                "revision": revision,
                "base": base,
                "row_data": None if op == "D" else content,
                "resolution": None,
            }
        ]
        got = c.execute(
            "SELECT outcome FROM scsync_replicator_apply('cloud', %s, %s)",
            (json.dumps({"patients": list(content)}), json.dumps(batch)),
        ).fetchall()
        c.rollback()
    assert [r[0] for r in got] == [expected]


def _conflict_ids(world: World, pid: int) -> tuple[list[int], list[int]]:
    """Every conflict row (open or not) of one record, on the site and on the cloud."""
    out: list[list[int]] = []
    for db in (world.site1.local, world.cloud):
        with db.connect() as c:
            got = c.execute(
                "SELECT id FROM scsync_conflicts WHERE table_name = 'patients' AND row_id = %s"
                " ORDER BY id",
                (pid,),
            ).fetchall()
        out.append([int(str(r[0])) for r in got])
    return out[0], out[1]


async def test_a_clash_met_by_both_lanes_at_once_is_one_conflict(world: World) -> None:
    """Push and pull run at the same moment, each meeting the same clash from its side:
    still one conflict per clash, under one id on both sides."""
    settings = world.site1.settings()
    for attempt in range(6):
        pid = _one_patient(world)
        await sync(world.site1)
        with world.site1.local.connect(autocommit=True) as c:
            c.execute("UPDATE patients SET name = %s WHERE id = %s", (f"local {attempt}", pid))
        with world.cloud.connect(autocommit=True) as c:
            c.execute("UPDATE patients SET name = %s WHERE id = %s", (f"cloud {attempt}", pid))
        push, pull = Lane("push", settings), Lane("pull", settings)
        await asyncio.gather(push.open(), pull.open())
        try:
            await asyncio.gather(push.drain(), pull.drain())
        finally:
            await asyncio.gather(push.close(), pull.close())
        on_local, on_cloud = _conflict_ids(world, pid)
        assert len(on_local) == 1 and on_local == on_cloud, (attempt, on_local, on_cloud)
        await sync(world.site1)  # more rounds change nothing
        assert _conflict_ids(world, pid) == (on_local, on_cloud)
        async with world.site1.local.aconnect() as lc, world.cloud.aconnect() as cc:
            (shown,) = [x for x in await conflicts.list_conflicts(lc, site_id=1) if x.row_id == pid]
            assert [
                x.id for x in await conflicts.list_conflicts(cc, site_id=1) if x.row_id == pid
            ] == [shown.id]
            full = await conflicts.get_conflict(lc, shown.id)
        assert full.local_row is not None and full.local_row["name"] == f"local {attempt}"
        assert full.cloud_row is not None and full.cloud_row["name"] == f"cloud {attempt}"
