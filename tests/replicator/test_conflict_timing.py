"""Issue #18, item 3: a conflict resolved at any moment relative to either lane converges
both sides with no conflict left open (SPEC: Change capture, apply rule: a revision the
destination already holds in its history is a duplicate; a resolution holds both
versions it decided between).

The clinic edits offline while a cloud user edits the same record. When the link comes
back one lane catches up before the other, so one side lists the conflict while the
other side's change is still on its way; a user resolves it then. In-process lanes."""

from __future__ import annotations

from typing import Literal

import pytest

from replicator.lane import Lane, LaneName
from schema import conflicts
from tests.world import World, rows, sync

Moment = Literal["before", "between_apply_and_ack", "after"]


def _patient(world: World) -> int:
    with world.site1.local.connect(autocommit=True) as c:
        row = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'T', 'base') "
            "RETURNING id"
        ).fetchone()
    assert row is not None
    return int(str(row[0]))


async def _lane_drain(world: World, name: LaneName) -> None:
    lane = Lane(name, world.site1.settings())
    await lane.open()
    try:
        await lane.drain()
    finally:
        await lane.close()


async def _open_conflicts(world: World) -> dict[str, list[conflicts.Conflict]]:
    out = {}
    for side, db in (("local", world.site1.local), ("cloud", world.cloud)):
        out[side] = await db.acall(conflicts.list_conflicts, site_id=1, status="open")
    return out


async def _resolve(world: World, on: str, keep: Literal["local", "cloud"]) -> None:
    db = world.cloud if on == "cloud" else world.site1.local
    (found,) = await db.acall(conflicts.list_conflicts, site_id=1, status="open")
    await db.acall(conflicts.resolve_conflict, found.id, keep=keep, by="dr.lee")


@pytest.mark.parametrize("moment", ["before", "between_apply_and_ack", "after"])
@pytest.mark.parametrize("keep", ["local", "cloud"])
@pytest.mark.parametrize("resolved_on", ["cloud", "local"])
async def test_an_early_resolution_converges_with_no_conflict_left_open(
    world: World, moment: Moment, keep: Literal["local", "cloud"], resolved_on: str
) -> None:
    pid = _patient(world)
    await sync(world.site1)
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'clinic version' WHERE id = %s", (pid,))
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'cloud version' WHERE id = %s", (pid,))
    # The lane toward the resolving side catches up first: that side lists the conflict
    # while the other side's change (the late lane) has not arrived yet.
    first: LaneName = "pull" if resolved_on == "cloud" else "push"
    late: LaneName = "push" if resolved_on == "cloud" else "pull"
    await _lane_drain(world, first)
    assert len((await _open_conflicts(world))[resolved_on]) == 1

    if moment == "before":
        await _resolve(world, resolved_on, keep)
        await _lane_drain(world, late)
    elif moment == "between_apply_and_ack":
        lane = Lane(late, world.site1.settings())
        await lane.open()
        try:
            batch = await lane.read()
            result, failures = await lane._apply(batch)
            await _resolve(world, resolved_on, keep)
            await lane._ack(batch, result, failures)
        finally:
            await lane.close()
    else:
        await _lane_drain(world, late)
        await _resolve(world, resolved_on, keep)

    await sync(world.site1, rounds=3)
    local, cloud = rows(world.site1.local, "patients")[pid], rows(world.cloud, "patients")[pid]
    wanted = "clinic version" if keep == "local" else "cloud version"
    assert (local["name"], cloud["name"]) == (wanted, wanted)
    assert local["revision"] == cloud["revision"]
    assert not local["in_conflict"] and not cloud["in_conflict"]
    assert local["synced"] and cloud["synced"]
    assert await _open_conflicts(world) == {"local": [], "cloud": []}


@pytest.mark.parametrize("moment", ["before", "between_apply_and_ack", "after"])
@pytest.mark.parametrize("keep", ["local", "cloud"])
async def test_an_offline_deletion_resolved_early_on_the_cloud_converges(
    world: World, moment: Moment, keep: Literal["local", "cloud"]
) -> None:
    pid = _patient(world)
    await sync(world.site1)
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("DELETE FROM patients WHERE id = %s", (pid,))
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'cloud version' WHERE id = %s", (pid,))
    await _lane_drain(world, "pull")
    assert len((await _open_conflicts(world))["cloud"]) == 1
    if moment == "before":
        await _resolve(world, "cloud", keep)
        await _lane_drain(world, "push")
    elif moment == "between_apply_and_ack":
        lane = Lane("push", world.site1.settings())
        await lane.open()
        try:
            batch = await lane.read()
            result, failures = await lane._apply(batch)
            await _resolve(world, "cloud", keep)
            await lane._ack(batch, result, failures)
        finally:
            await lane.close()
    else:
        await _lane_drain(world, "push")
        await _resolve(world, "cloud", keep)
    await sync(world.site1, rounds=3)
    local = rows(world.site1.local, "patients").get(pid)
    cloud = rows(world.cloud, "patients")[pid]
    if keep == "local":
        assert cloud["deleted"] and cloud["lifecycle"] == "deleted"
        # Gone at the clinic, or back as the resolution's (deleted) revision.
        assert local is None or (local["deleted"] and local["revision"] == cloud["revision"])
    else:
        assert local is not None and local["name"] == cloud["name"] == "cloud version"
        assert local["revision"] == cloud["revision"] and local["synced"]
        assert not cloud["deleted"]
    assert not cloud["in_conflict"]
    assert await _open_conflicts(world) == {"local": [], "cloud": []}
