"""Edit sessions through lockd: live "Editing by local/cloud" on both sides, refusal
naming the holder, fenced saves with A.B versions, release; lockd unreachable on the
local side gives 503 with the offline offer, and offline=true an unfenced session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from api import state
from schema.auth import site_token
from scsync.embedded_pg import free_port
from tests.api.conftest import SECRET, Api, _client, auth, ctoken, token
from tests.api.test_ws import next_of, recv
from tests.pg import TestDatabase


def replicate(row: dict[str, Any], dst: TestDatabase) -> None:
    """Put a local patient row into the cloud as the replicator would."""
    with dst.connect() as conn:
        conn.execute("SET LOCAL scsync.replicating = 'on'")
        conn.execute(
            "INSERT INTO patients (id, site_id, patient_code, name, revision, synced_revision)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (
                int(row["id"]),
                row["site_id"],
                row["patient_code"],
                row["name"],
                int(row["revision"]),
                int(row["revision"]),
            ),
        )
        conn.commit()


@pytest.fixture
async def pair(local_db: TestDatabase, cloud_api: Api) -> AsyncIterator[tuple[Api, Api]]:
    url = str(cloud_api.client.make_url("/v1/locks"))
    async with _client(
        local_db,
        "local",
        lockd_url=url,
        lockd_token=site_token(SECRET, 1),
        cloud_url=str(cloud_api.client.make_url("/")),
    ) as local:
        # The local API follows the cloud's events of its site: wait for that link.
        assert cloud_api.client.app is not None
        hub = cloud_api.client.app[state.HUB]
        for _ in range(200):
            if any(s.principal.is_site and s.sites for s in hub.subscribers):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the local API did not subscribe to the cloud's events")
        yield local, cloud_api


async def _ws(api: Api, tok: str) -> aiohttp.ClientWebSocketResponse:
    ws = await api.client.ws_connect("/ws", params={"token": tok})
    await recv(ws)
    await ws.send_json({"type": "subscribe", "site": 1})
    await next_of(ws, "subscribed")
    return ws


async def test_local_edit_shows_on_cloud_refuses_cloud_editor_and_saves(
    pair: tuple[Api, Api],
) -> None:
    local, cloud = pair
    alice = token("editor", site=1, name="alice")
    p = await local.create("patients", {"patient_code": "P1", "name": "Kim"}, alice)
    replicate(p, cloud.db)
    cloud_ws = await _ws(cloud, ctoken("viewer", site=1, name="carol"))
    local_ws = await _ws(local, token("viewer", site=1, name="lee"))
    started = time.monotonic()
    resp = await local.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(alice))
    session = await resp.json()
    assert resp.status == 200, session
    assert session["holder"] == "local:1/alice" and session["unfenced"] is False
    seen_cloud = await next_of(cloud_ws, "record.editing", timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert seen_cloud["data"]["by"] == "local" and seen_cloud["record_id"] == p["id"]
    assert "lease_id" not in seen_cloud["data"]
    assert (await next_of(local_ws, "record.editing"))["data"]["by"] == "local"
    # A cloud client is refused, told who holds it.
    bob = ctoken("editor", site=1, name="bob")
    resp = await cloud.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(bob))
    body = await resp.json()
    assert resp.status == 409 and body["error"] == "lease_busy"
    assert body["holder"] == "local:1/alice" and body["editing_by"] == "local"
    # Fenced local saves: (A+1).0 then A.(B+1).
    for name, version in (("Kim Min", "2.0"), ("Kim Min-ji", "2.1")):
        resp = await local.client.post(
            "/v1/edit-sessions/save",
            json={"session": session["session"], "changes": {"name": name}},
            headers=auth(alice),
        )
        saved = await resp.json()
        assert resp.status == 200, saved
        assert saved["version"] == version and saved["status"] == "saved"
        ev = await next_of(local_ws, "record.saved")
        assert ev["data"]["version"] == version
    # Someone else cannot use alice's session.
    resp = await local.client.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"name": "x"}},
        headers=auth(token("editor", site=1, name="mallory")),
    )
    assert resp.status == 403
    resp = await local.client.post(
        "/v1/edit-sessions/close", json={"session": session["session"]}, headers=auth(alice)
    )
    assert resp.status == 200
    assert (await next_of(cloud_ws, "record.released"))["data"]["by"] == "local"
    assert (await next_of(local_ws, "record.released"))["record_id"] == p["id"]
    await cloud_ws.close()
    await local_ws.close()


async def test_cloud_edit_mirror_case(pair: tuple[Api, Api]) -> None:
    local, cloud = pair
    alice = token("editor", site=1, name="alice")
    p = await local.create("patients", {"patient_code": "P2", "name": "Lee"}, alice)
    replicate(p, cloud.db)
    cloud_ws = await _ws(cloud, ctoken("viewer", site=1, name="carol"))
    local_ws = await _ws(local, token("viewer", site=1, name="lee"))
    bob = ctoken("editor", site=1, name="bob")
    started = time.monotonic()
    resp = await cloud.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(bob))
    session = await resp.json()
    assert resp.status == 200, session
    assert (await next_of(cloud_ws, "record.editing", timeout=1.0))["data"]["by"] == "cloud"
    # The local clients see it too, relayed from the cloud.
    seen_local = await next_of(local_ws, "record.editing", timeout=1.0)
    assert time.monotonic() - started < 1.5
    assert seen_local["data"]["by"] == "cloud" and seen_local["data"]["holder"] == "cloud:1/bob"
    resp = await local.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(alice))
    body = await resp.json()
    assert resp.status == 409 and body["holder"] == "cloud:1/bob" and body["editing_by"] == "cloud"
    # Plain writes are refused too while the lease is live, on both sides.
    for api, who in ((local, alice), (cloud, ctoken("editor", site=1, name="carl"))):
        resp = await api.client.patch(
            f"/v1/records/patients/{p['id']}", json={"notes": "sneaky"}, headers=auth(who)
        )
        body = await resp.json()
        assert resp.status == 409 and body["holder"] == "cloud:1/bob", body
    for action in ("heartbeat", "activity"):
        resp = await cloud.client.post(
            f"/v1/edit-sessions/{action}", json={"session": session["session"]}, headers=auth(bob)
        )
        assert resp.status == 200 and (await resp.json())["expires_in_ms"] > 0
    resp = await cloud.client.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"notes": "checked"}},
        headers=auth(bob),
    )
    saved = await resp.json()
    assert resp.status == 200 and saved["version"] == "2.0", saved
    assert (await next_of(cloud_ws, "record.saved"))["data"]["by"] == "cloud"
    resp = await cloud.client.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"revision": "1"}},
        headers=auth(bob),
    )
    assert resp.status == 400 and (await resp.json())["field"] == "revision"
    resp = await cloud.client.post(
        "/v1/edit-sessions/close", json={"session": session["session"]}, headers=auth(bob)
    )
    assert resp.status == 200
    assert (await next_of(cloud_ws, "record.released"))["data"]["holder"] == "cloud:1/bob"
    assert (await next_of(local_ws, "record.released"))["data"]["by"] == "cloud"
    await local_ws.close()
    # The lease is gone: a save with the old session is refused, nothing written.
    resp = await cloud.client.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"notes": "late"}},
        headers=auth(bob),
    )
    assert resp.status == 409 and (await resp.json())["error"] in (
        "lease_not_held",
        "lease_expired",
    )
    await cloud_ws.close()


@pytest.fixture
async def lonely_local(local_db: TestDatabase) -> AsyncIterator[Api]:
    dead = f"http://127.0.0.1:{free_port()}/v1/locks"
    async with _client(
        local_db, "local", lockd_url=dead, lockd_token=site_token(SECRET, 1), lockd_timeout_s=1.0
    ) as api:
        yield api


async def test_lock_service_unreachable_offers_offline_edit(lonely_local: Api) -> None:
    c = lonely_local.client
    alice = token("editor", site=1, name="alice")
    p = await lonely_local.create("patients", {"patient_code": "P3", "name": "Park"}, alice)
    resp = await c.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(alice))
    body = await resp.json()
    assert resp.status == 503
    assert body["error"] == "lock_service_unreachable" and body["offline_edit_allowed"] is True
    ws = await _ws(lonely_local, token("viewer", site=1, name="lee"))
    resp = await c.post(
        f"/v1/records/patients/{p['id']}/edit", json={"offline": True}, headers=auth(alice)
    )
    session = await resp.json()
    assert resp.status == 200 and session["offline"] is True and session["unfenced"] is True
    ev = await next_of(ws, "record.editing")
    assert ev["data"]["offline"] is True and ev["data"]["unfenced"] is True
    resp = await c.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"name": "Park J"}},
        headers=auth(alice),
    )
    saved = await resp.json()
    assert resp.status == 200 and saved["version"] == "2.0" and saved["offline"] is True
    with lonely_local.db.connect() as conn:
        row = conn.execute(
            "SELECT unfenced, saves FROM scsync_offline_sessions WHERE row_id = %s", (int(p["id"]),)
        ).fetchone()
    assert row == (True, 1)
    resp = await c.post(
        "/v1/edit-sessions/close", json={"session": session["session"]}, headers=auth(alice)
    )
    assert resp.status == 200
    assert (await next_of(ws, "record.released"))["data"]["offline"] is True
    await ws.close()


@pytest.fixture
async def short_leases(cloud_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(cloud_db, "cloud", lease_ttl_s=1.0) as api:
        yield api


async def test_lease_running_out_is_pushed_as_lease_expired(short_leases: Api) -> None:
    api = short_leases
    bob = ctoken("editor", site=1, name="bob")
    p = await api.create("patients", {"patient_code": "T", "name": "Ttl"}, bob)
    ws = await _ws(api, ctoken("viewer", site=1, name="carol"))
    resp = await api.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(bob))
    session = await resp.json()
    assert resp.status == 200 and session["ttl_ms"] == 1000
    assert (await next_of(ws, "record.editing"))["data"]["by"] == "cloud"
    # No heartbeat: lockd's sweeper (mounted) ends the lease; the editor is told to close.
    expired = await next_of(ws, "lease.expired", timeout=6)
    assert expired["record_id"] == p["id"] and expired["data"]["holder"] == "cloud:1/bob"
    resp = await api.client.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"name": "late"}},
        headers=auth(bob),
    )
    assert resp.status == 409
    await ws.close()


@pytest.fixture
async def idle_policy(cloud_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(cloud_db, "cloud", idle_warn_s=1.0, idle_close_s=1.0) as api:
        yield api


async def test_idle_editor_is_warned_then_closed(idle_policy: Api) -> None:
    api = idle_policy
    bob = ctoken("editor", site=1, name="bob")
    p = await api.create("patients", {"patient_code": "I", "name": "Idle"}, bob)
    ws = await _ws(api, ctoken("viewer", site=1, name="carol"))
    resp = await api.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(bob))
    assert resp.status == 200
    warning = await next_of(ws, "lease.idle_warning", timeout=6)
    assert warning["record_id"] == p["id"] and warning["data"]["close_in_ms"] == 1000
    closed = await next_of(ws, "lease.expired", timeout=6)
    assert closed["data"]["lease_event"] == "lease.idle_closed" and closed["data"]["close"] is True
    await ws.close()
