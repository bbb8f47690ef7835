"""Several cloud API instances (real processes) on one database: an event committed
through instance A reaches a WebSocket subscriber of instance B, exactly once, with
the PostgreSQL bus and with the RabbitMQ fan-out."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scsync.embedded_pg import free_port
from tests.api.conftest import ApiProcess, auth, ctoken, start_api, write_config
from tests.pg import TestDatabase
from tests.polling import until_async, until_marker_async


def _rabbit_answers() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), 1).close()
    except OSError:
        return False
    return True


BUSES = [
    "postgres",
    pytest.param(
        "rabbitmq",
        marks=pytest.mark.skipif(not _rabbit_answers(), reason="no RabbitMQ at 127.0.0.1:5672"),
    ),
]


@pytest.mark.parametrize("bus", BUSES)
async def test_event_via_instance_a_reaches_subscriber_on_b_once(
    tmp_path: Path, cloud_db: TestDatabase, processes: list[ApiProcess], bus: str
) -> None:
    extra: dict[str, Any] = {"bus": bus, "amqp_exchange": f"scsync.test.{uuid.uuid4().hex[:8]}"}
    a = start_api("cloud", write_config(tmp_path / "a.toml", cloud_db, free_port(), **extra))
    processes.append(a)
    b = start_api("cloud", write_config(tmp_path / "b.toml", cloud_db, free_port(), **extra))
    processes.append(b)
    tok = ctoken("editor", site=1)
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(b.url + "/ws", params={"token": tok}) as ws,
    ):
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
        await ws.send_json({"type": "subscribe", "site": 1})
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "subscribed"
        created = []
        for i in range(5):
            async with http.post(
                a.url + "/v1/records/doctors", json={"name": f"d{i}"}, headers=auth(tok)
            ) as resp:
                assert resp.status == 201
                created.append((await resp.json())["id"])
        seen: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:
            changed = [e["record_id"] for e in seen if e["type"] == "record.changed"]
            if sorted(changed) == sorted(created):
                break
            msg = await ws.receive(timeout=max(0.01, deadline - loop.time()))
            seen.append(json.loads(msg.data))
        # A duplicate would come before the marker: a record created after the others,
        # whose events come through the same bus to the same socket.
        async with http.post(
            a.url + "/v1/records/doctors", json={"name": "marker"}, headers=auth(tok)
        ) as resp:
            assert resp.status == 201
            marker = (await resp.json())["id"]

        async def receive(left: float) -> dict[str, Any]:
            return dict(json.loads((await ws.receive(timeout=left)).data))

        seen += await until_marker_async(
            receive,
            lambda e: e["type"] == "record.changed" and e["record_id"] == marker,
            10,
            "the marker record's event",
        )
    changed = [e["record_id"] for e in seen if e["type"] == "record.changed"]
    assert changed == created
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)) == 10  # changed + sync per record, each once


@pytest.mark.skipif(not _rabbit_answers(), reason="no RabbitMQ at 127.0.0.1:5672")
async def test_rabbitmq_relay_moves_to_a_survivor_when_the_leader_dies(
    tmp_path: Path, cloud_db: TestDatabase, processes: list[ApiProcess]
) -> None:
    extra: dict[str, Any] = {
        "bus": "rabbitmq",
        "amqp_exchange": f"scsync.test.{uuid.uuid4().hex[:8]}",
    }
    procs = [
        start_api("cloud", write_config(tmp_path / f"{n}.toml", cloud_db, free_port(), **extra))
        for n in ("a", "b")
    ]
    processes.extend(procs)
    tok = ctoken("editor", site=1)
    async with aiohttp.ClientSession() as http:

        async def leader_of(p: ApiProcess) -> bool:
            async with http.get(p.url + "/v1/status", headers=auth(tok)) as resp:
                return bool((await resp.json())["relay_leader"])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        leaders: list[bool] = []
        while loop.time() < deadline:
            leaders = [await leader_of(p) for p in procs]
            if any(leaders):
                break
            await asyncio.sleep(0.1)
        assert leaders.count(True) == 1, leaders
        leader, survivor = (procs[0], procs[1]) if leaders[0] else (procs[1], procs[0])
        leader.stop(signal.SIGKILL)
        async with http.ws_connect(survivor.url + "/ws", params={"token": tok}) as ws:
            await ws.receive(timeout=5)
            await ws.send_json({"type": "subscribe", "site": 1, "events": ["record.changed"]})
            await ws.receive(timeout=5)
            async with http.post(
                survivor.url + "/v1/records/doctors", json={"name": "after"}, headers=auth(tok)
            ) as resp:
                created = await resp.json()
            # The survivor takes the advisory lock once the dead leader's session is gone.
            msg = json.loads((await ws.receive(timeout=20)).data)
            assert msg["type"] == "record.changed" and msg["record_id"] == created["id"]
        assert await leader_of(survivor)


@pytest.mark.parametrize("bus", BUSES)
async def test_a_cloud_change_wakes_the_sites_long_poll_held_at_another_instance(
    tmp_path: Path, cloud_db: TestDatabase, processes: list[ApiProcess], bus: str
) -> None:
    """Issue #14's wake-ups: a site's replicator holds its pull/wait at instance B; a
    change of that site committed on the cloud answers it at once. With RabbitMQ the
    hint comes over the bus from the relay's one listener (no instance LISTENs for the
    sync endpoints itself); with the PostgreSQL bus, from each instance's own listener."""
    from replicator.sites import register_site
    from schema.auth import site_token
    from tests.api.conftest import SECRET

    site = (await cloud_db.acall(register_site, "clinic-one")).site_id
    extra: dict[str, Any] = {"bus": bus, "amqp_exchange": f"scsync.test.{uuid.uuid4().hex[:8]}"}
    a = start_api("cloud", write_config(tmp_path / "a.toml", cloud_db, free_port(), **extra))
    processes.append(a)
    b = start_api("cloud", write_config(tmp_path / "b.toml", cloud_db, free_port(), **extra))
    processes.append(b)
    headers = {"Authorization": f"Bearer {site_token(SECRET, site)}", "X-Scsync-Holder": "h/1"}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:

        async def wait(mark: str | None) -> dict[str, Any]:
            async with http.post(
                b.url + "/v1/sync/pull/wait", json={"timeout_s": 20, "mark": mark}, headers=headers
            ) as resp:
                assert resp.status == 200, await resp.text()
                got: dict[str, Any] = await resp.json()
                return got

        async def long_polls() -> dict[str, Any]:
            async with http.get(b.url + "/v1/status", headers=auth(status_tok)) as resp:
                assert resp.status == 200, await resp.text()
                got: dict[str, Any] = (await resp.json())["sync_long_polls"]
                return got

        async def hints_live() -> bool:
            return bool((await long_polls())["hints_live"])

        async def poll_held() -> bool:
            return int((await long_polls())["sites_waiting"]) == 1

        # Positive markers instead of a settling sleep: hints reach B (its listener's
        # connect, which answers every poll held before it, is behind us), then B holds
        # this site's poll.
        status_tok = ctoken("editor", site=site)
        await until_async(hints_live, 15, "hints to reach instance B")
        held = asyncio.create_task(wait(None))
        await until_async(poll_held, 10, "instance B to hold the long poll")
        assert not held.done(), "the long poll answered before any change"
        tok = ctoken("editor", site=site)
        t0 = loop.time()
        async with http.post(
            a.url + "/v1/records/doctors", json={"name": "d"}, headers=auth(tok)
        ) as resp:
            assert resp.status == 201, await resp.text()
        got = await asyncio.wait_for(held, 10)
        woke_s = loop.time() - t0
    assert got["changed"] is True, got
    assert woke_s < 3, f"the change woke the long poll after {woke_s:.1f} s"
    with cloud_db.connect() as conn:
        listeners = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scsync-sync-listen'"
        ).fetchone()
    assert listeners is not None
    assert listeners[0] == (0 if bus == "rabbitmq" else 2), listeners
