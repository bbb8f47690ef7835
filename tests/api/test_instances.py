"""Several cloud API instances (real processes) on one database: an event committed
through instance A reaches a WebSocket subscriber of instance B, exactly once, with
the PostgreSQL bus and with the RabbitMQ fan-out."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scsync.embedded_pg import free_port
from tests.api.conftest import ApiProcess, auth, start_api, token, write_config
from tests.pg import TestDatabase


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
    tok = token("editor", site=1)
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
        # Linger briefly: a duplicate would arrive now.
        try:
            while True:
                seen.append(json.loads((await ws.receive(timeout=0.5)).data))
        except TimeoutError:
            pass
    changed = [e["record_id"] for e in seen if e["type"] == "record.changed"]
    assert changed == created
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)) == 10  # changed + sync per record, each once
