"""The per-record sync switch (SPEC: Sync scope and lifecycle): while a record's sync is
off, none of its changes (content, delete, file) crosses, in either lane; turning it on
again sends the current version once, as a normal edit. Issue #18, item 1.

Behaviour through the APIs, the CLI and the lanes (tests/world.py), not through the
capture's tables, so that it holds whatever captures the changes."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from tests.api.conftest import Api, auth, token
from tests.world import World, rows, sync


def _alice(api: Api) -> str:  # a clinic user, on either API
    return token("editor", site=1, name="alice", side="cloud" if api.side == "cloud" else "local")


async def _call(api: Api, method: str, path: str, body: Any = None) -> Any:
    resp = await api.client.request(method, path, json=body, headers=auth(_alice(api)))
    data = await resp.json()
    assert resp.status in (200, 201), (method, path, resp.status, data)
    return data


async def _switch(api: Api, pid: str, enabled: bool) -> Any:
    return await _call(api, "PUT", f"/v1/records/patients/{pid}/sync", {"enabled": enabled})


async def _patch(api: Api, pid: str, **changes: Any) -> Any:
    return await _call(api, "PATCH", f"/v1/records/patients/{pid}", changes)


async def _new_patient(world: World, local_api: Api) -> str:
    p = await local_api.create("patients", {"patient_code": "S1", "name": "Ann"}, _alice(local_api))
    await sync(world.site1)
    assert rows(world.cloud, "patients")[int(p["id"])]["name"] == "Ann"
    return str(p["id"])


def _history_has(db: Any, pid: str, text: str) -> bool:
    with db.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM scsync_history WHERE row_id = %s AND row_data::text LIKE %s",
            (int(pid), f"%{text}%"),
        ).fetchone()
    assert row is not None
    return bool(row[0])


async def test_local_switch_off_keeps_every_later_change_home(world: World, local_api: Api) -> None:
    pid = await _new_patient(world, local_api)
    await _switch(local_api, pid, False)
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (cloud["lifecycle"], cloud["sync_enabled"], cloud["notes"]) == ("deleted", False, None)

    await _patch(local_api, pid, notes="private")
    await _patch(local_api, pid, name="Ann Private")
    await sync(world.site1)
    after = rows(world.cloud, "patients")[int(pid)]
    assert (after["notes"], after["name"], after["revision"]) == (None, "Ann", cloud["revision"])
    assert not _history_has(world.cloud, pid, "private")
    # A soft delete (the local API's) and a hard delete (a legacy app's) stay home too.
    await _call(local_api, "DELETE", f"/v1/records/patients/{pid}")
    await sync(world.site1)
    assert rows(world.cloud, "patients")[int(pid)]["deleted"] is False

    # Switched on again: the current version crosses once, as a normal edit.
    await _call(local_api, "PUT", f"/v1/records/patients/{pid}/sync", {"enabled": True})
    await sync(world.site1)
    local = rows(world.site1.local, "patients")[int(pid)]
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (cloud["notes"], cloud["name"], cloud["deleted"]) == ("private", "Ann Private", True)
    assert (cloud["lifecycle"], cloud["revision"]) == ("deleted", local["revision"])
    assert local["synced"] and not local["in_conflict"] and not cloud["in_conflict"]


async def test_a_change_made_just_after_switching_off_does_not_ride_along(
    world: World, local_api: Api
) -> None:
    """The switch and the next edit are read in one batch: the cloud learns that sync is
    off, and nothing of the edit."""
    pid = await _new_patient(world, local_api)
    await _switch(local_api, pid, False)
    await _patch(local_api, pid, notes="private")
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'legacy private' WHERE id = %s", (int(pid),))
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (cloud["lifecycle"], cloud["sync_enabled"]) == ("deleted", False)
    assert (cloud["notes"], cloud["name"]) == (None, "Ann")
    assert not _history_has(world.cloud, pid, "private")
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("DELETE FROM patients WHERE id = %s", (int(pid),))
    await sync(world.site1)
    assert rows(world.cloud, "patients")[int(pid)]["lifecycle"] == "deleted"
    assert rows(world.cloud, "patients")[int(pid)]["name"] == "Ann"


async def test_a_record_never_sent_stays_home_while_off(world: World, local_api: Api) -> None:
    p = await local_api.create("patients", {"patient_code": "S2", "name": "Bo"}, _alice(local_api))
    await _switch(local_api, str(p["id"]), False)
    await _patch(local_api, str(p["id"]), notes="private")
    await sync(world.site1)
    assert int(p["id"]) not in rows(world.cloud, "patients")
    await _switch(local_api, str(p["id"]), True)
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[int(p["id"])]
    assert (cloud["notes"], cloud["lifecycle"]) == ("private", "active")


async def test_cloud_switch_off_keeps_cloud_changes_from_the_site(
    world: World, local_api: Api, cloud_api: Api
) -> None:
    pid = await _new_patient(world, local_api)
    await _switch(cloud_api, pid, False)
    await sync(world.site1)
    local = rows(world.site1.local, "patients")[int(pid)]
    assert local["sync_enabled"] is False and local["name"] == "Ann"
    assert rows(world.cloud, "patients")[int(pid)]["lifecycle"] == "deleted"

    await _patch(cloud_api, pid, notes="cloud private")
    await sync(world.site1)
    assert rows(world.site1.local, "patients")[int(pid)]["notes"] is None
    assert not _history_has(world.site1.local, pid, "cloud private")
    # Nor does the site send its own changes of the record meanwhile.
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'site private' WHERE id = %s", (int(pid),))
    await sync(world.site1)
    assert rows(world.cloud, "patients")[int(pid)]["name"] == "Ann"
    assert not _history_has(world.cloud, pid, "site private")


async def test_cloud_switch_on_again_brings_the_cloud_version_down(
    world: World, local_api: Api, cloud_api: Api
) -> None:
    pid = await _new_patient(world, local_api)
    await _switch(cloud_api, pid, False)
    await _patch(cloud_api, pid, notes="cloud private")
    await sync(world.site1)
    assert rows(world.site1.local, "patients")[int(pid)]["notes"] is None
    await _switch(cloud_api, pid, True)
    await sync(world.site1)
    local = rows(world.site1.local, "patients")[int(pid)]
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (local["notes"], local["sync_enabled"]) == ("cloud private", True)
    assert (cloud["lifecycle"], cloud["revision"]) == ("active", local["revision"])
    assert local["synced"] and cloud["synced"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("SCSYNC_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "scsync", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_cli_switch_through_the_cloud_api_keeps_later_changes_home(
    world: World, local_api: Api
) -> None:
    pid = await _new_patient(world, local_api)
    # The site's settings: the cloud API and its token, no cloud database URL.
    env = {
        "SCSYNC_LOCAL_DB_URL": world.site1.local.url,
        "SCSYNC_CLOUD_API_URL": world.site1.cloud_api_url,
        "SCSYNC_SITE_TOKEN": world.site1.token,
        "SCSYNC_SITE_ID": str(world.site1.creds.site_id),
        "SCSYNC_CLOUD_DB_URL": "",
    }
    out = _cli("sync", "disable", "patients", pid, env=env)
    assert out.returncode == 0 and "cloud copy marked deleted" in out.stdout, out.stderr
    await _patch(local_api, pid, notes="private")
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (cloud["notes"], cloud["lifecycle"], cloud["sync_enabled"]) == (None, "deleted", False)
    assert not _history_has(world.cloud, pid, "private")
    assert _cli("sync", "enable", "patients", pid, env=env).returncode == 0
    await sync(world.site1)
    cloud = rows(world.cloud, "patients")[int(pid)]
    assert (cloud["notes"], cloud["lifecycle"]) == ("private", "active")
