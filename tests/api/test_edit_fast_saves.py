"""Issue #18, item 2: every save of the holder of a live lease succeeds, in order,
however fast, while earlier saves of the same session are still on their way to the
cloud (SPEC: Editing, locks and versions). Local API -> lockd on the cloud API, and the
replicator's lanes in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from replicator.daemon import Daemon
from tests.api.conftest import Api, auth, token
from tests.api.test_edit import pair  # noqa: F401 - the fixture
from tests.world import World, rows, sync


def _alice() -> str:
    return token("editor", site=1, name="alice")


async def _save(local: Api, session: str, **changes: Any) -> dict[str, Any]:
    resp = await local.client.post(
        "/v1/edit-sessions/save",
        json={"session": session, "changes": changes},
        headers=auth(_alice()),
    )
    body: dict[str, Any] = await resp.json()
    assert resp.status == 200, body
    return body


@pytest.fixture
async def opened(world: World, pair: tuple[Api, Api]) -> AsyncIterator[tuple[Api, str, int]]:  # noqa: F811
    local, _ = pair
    p = await local.create("patients", {"patient_code": "F1", "name": "Kim"}, _alice())
    await sync(world.site1)
    resp = await local.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(_alice()))
    session = await resp.json()
    assert resp.status == 200, session
    yield local, session["session"], int(p["id"])


async def test_a_save_right_after_one_still_on_its_way_is_accepted(
    world: World, opened: tuple[Api, str, int]
) -> None:
    local, session, pid = opened
    first = await _save(local, session, name="one")
    await sync(world.site1)  # the cloud shows 2.0
    assert rows(world.cloud, "patients")[pid]["revision"] == int(first["revision"])
    second = await _save(local, session, name="two")
    # The cloud still holds 2.0: 2.1 is on its way. The next save goes through...
    third = await _save(local, session, name="three")
    assert (second["version"], third["version"]) == ("2.1", "2.2")
    # ... and so does one that changes nothing, as `unchanged`.
    same = await _save(local, session, name="three")
    assert (same["status"], same["version"]) == ("unchanged", "2.2")
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[pid]
    assert (cloud["name"], cloud["version_major"], cloud["version_minor"]) == ("three", 2, 2)
    assert cloud["revision"] == int(third["revision"])


async def test_twenty_saves_back_to_back_with_the_replicator_running(
    world: World, opened: tuple[Api, str, int]
) -> None:
    local, session, pid = opened
    daemon = Daemon(world.site1.settings(poll_interval_s=0.05))
    running = asyncio.create_task(daemon.serve())
    try:
        versions = []
        for i in range(20):
            saved = await _save(local, session, name=f"name {i}")
            versions.append(saved["version"])
        assert versions == [f"2.{i}" for i in range(20)]
        deadline = time.monotonic() + 20
        while True:
            cloud = rows(world.cloud, "patients")[pid]
            if cloud["revision"] == int(saved["revision"]):
                break
            assert time.monotonic() < deadline, cloud
            await asyncio.sleep(0.05)
        assert (cloud["name"], cloud["version_major"], cloud["version_minor"]) == (
            "name 19",
            2,
            19,
        )
        assert not cloud["in_conflict"]
    finally:
        daemon.stop()
        await running
