"""WebSocket /ws: events from the database, subscriptions, the tenant wall, replay by
last_event_id, first-message auth, and a slow client cut off without stalling others."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg
import pytest

from api import state
from api.events import Event
from schema.tables import Side
from tests.api.conftest import Api, _client, ctoken, token
from tests.pg import TestDatabase

WS = aiohttp.ClientWebSocketResponse


async def recv(ws: WS, timeout: float = 5.0) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    data: dict[str, Any] = json.loads(msg.data)
    return data


async def next_of(ws: WS, *types: str, timeout: float = 5.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - loop.time()))
        if msg["type"] in types:
            return msg


async def subscribe(ws: WS, **what: Any) -> dict[str, Any]:
    await ws.send_json({"type": "subscribe", **what})
    return await next_of(ws, "subscribed", "error")


async def resubscribe(ws: WS, **what: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """After the hello of a socket opened with last_event_id: subscribe; the replayed
    events and the closing `subscribed` message."""
    await recv(ws)
    await ws.send_json({"type": "subscribe", **what})
    replayed = []
    while (msg := await recv(ws))["type"] != "subscribed":
        replayed.append(msg)
    return replayed, msg


async def test_site_subscriber_gets_record_events_with_growing_ids(local_api: Api) -> None:
    c = local_api.client
    async with c.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        hello = await recv(ws)
        assert hello["type"] == "hello" and hello["site_id"] == 1
        assert (await subscribe(ws, site=1))["sites"] == [1]
        p = await local_api.create("patients", {"patient_code": "P", "name": "A"}, token())
        changed = await next_of(ws, "record.changed")
        sync = await next_of(ws, "record.sync")
        assert changed["record_id"] == p["id"] and changed["table"] == "patients"
        assert changed["data"]["version"] == "1.0" and changed["data"]["origin"] == "local"
        assert sync["data"]["state"] == "uploading" and sync["id"] > changed["id"]
        # The replicator's bookkeeping marks the row synced: the badge moves.
        with local_api.db.connect() as conn:
            conn.execute(
                "UPDATE patients SET synced_revision = revision WHERE id = %s", (int(p["id"]),)
            )
            conn.commit()
        synced = await next_of(ws, "record.sync")
        assert synced["data"]["state"] == "synced" and synced["id"] > sync["id"]


@pytest.mark.parametrize("side", ["local", "cloud"])
async def test_remote_changed_names_the_side_where_the_change_was_made(
    side: str, local_db: TestDatabase, cloud_db: TestDatabase
) -> None:
    """Issue #18: `origin` of remote.changed named the side that applied the change
    (a cloud change arriving at the clinic said "local")."""
    db = local_db if side == "local" else cloud_db
    other = "cloud" if side == "local" else "local"
    async with _client(db, side) as api:
        tok_side: Side = "cloud" if side == "cloud" else "local"
        viewer = token("viewer", side=tok_side)
        async with api.client.ws_connect("/ws", params={"token": viewer}) as ws:
            await recv(ws)
            await subscribe(ws, site=1)
            with db.connect() as conn:  # as the replicator applies a change of the other side
                conn.execute("SET LOCAL scsync.replicating = 'on'")
                conn.execute(
                    "INSERT INTO patients (site_id, patient_code, name, revision)"
                    " VALUES (1, 'R', 'remote', 42)"
                )
                conn.commit()
            remote = await next_of(ws, "remote.changed")
            assert remote["data"]["origin"] == other
            p = await api.create(
                "patients", {"patient_code": "H", "name": "here"}, token(side=tok_side)
            )
            here = await next_of(ws, "record.changed")
            assert here["record_id"] == p["id"] and here["data"]["origin"] == side


async def test_tenant_wall_holds_for_every_subscription_kind(cloud_api: Api) -> None:
    c = cloud_api.client
    theirs = await cloud_api.create("patients", {"patient_code": "S1", "name": "A"}, ctoken(site=1))
    async with c.ws_connect("/ws", params={"token": ctoken("viewer", site=2)}) as ws:
        await recv(ws)
        refused = await subscribe(ws, site=1)
        assert refused["type"] == "error" and refused["error"] == "forbidden"
        # Asking by another site's ids is accepted but can never match.
        await subscribe(
            ws, patient_id=theirs["id"], records=[{"table": "patients", "id": theirs["id"]}]
        )
        await subscribe(ws, site=2)
        await c.patch(
            f"/v1/records/patients/{theirs['id']}",
            json={"name": "B"},
            headers={"Authorization": f"Bearer {ctoken(site=1)}"},
        )
        mine = await cloud_api.create(
            "patients", {"patient_code": "S2", "name": "C"}, ctoken(site=2)
        )
        ev = await next_of(ws, "record.changed")
        assert ev["record_id"] == mine["id"] and ev["site"] == 2


async def test_reconnect_with_last_event_id_replays_what_was_missed(local_api: Api) -> None:
    c = local_api.client
    async with c.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        await recv(ws)
        await subscribe(ws, site=1)
        await local_api.create("doctors", {"name": "first"}, token())
        last_seen = (await next_of(ws, "record.sync"))["id"]
    missed = [await local_api.create("doctors", {"name": f"d{i}"}, token()) for i in range(3)]
    async with c.ws_connect(
        "/ws", params={"token": token("viewer"), "last_event_id": str(last_seen)}
    ) as ws:
        replayed, msg = await resubscribe(ws, site=1)
        assert msg["replayed"] == 6 and msg["truncated"] is False  # changed + sync each
        assert len(replayed) == 6
        assert [e["id"] for e in replayed] == sorted(e["id"] for e in replayed)
        assert [e["record_id"] for e in replayed if e["type"] == "record.changed"] == [
            d["id"] for d in missed
        ]
        # Live events keep coming after the replay.
        live = await local_api.create("doctors", {"name": "live"}, token())
        assert (await next_of(ws, "record.changed"))["record_id"] == live["id"]


async def test_replay_finds_an_event_that_committed_late_below_last_event_id(
    local_api: Api,
) -> None:
    """Ids are taken at insert: a transaction holding a lower id commits after the client
    saw a higher one and left. Resuming from the higher id must still deliver it."""
    c = local_api.client
    async with await psycopg.AsyncConnection.connect(local_api.db.libpq_url) as slow:
        cur = await slow.execute(
            "SELECT scsync_api_publish(1, 'sync.progress', NULL, NULL, NULL,"
            " '{\"late\": true}'::jsonb)"
        )
        row = await cur.fetchone()
        assert row is not None
        # A client's id of an event row of its own is the row id << 20 (the low bits
        # number the records of a batch row: baseline_capture.sql).
        late_id = int(row[0]) << 20
        async with c.ws_connect("/ws", params={"token": token("viewer")}) as ws:
            await recv(ws)
            await subscribe(ws, site=1)
            await local_api.create("doctors", {"name": "after"}, token())
            last_seen = (await next_of(ws, "record.sync"))["id"]
        await slow.commit()
    assert late_id < last_seen
    async with c.ws_connect(
        "/ws", params={"token": token("viewer"), "last_event_id": str(last_seen)}
    ) as ws:
        replayed, msg = await resubscribe(ws, site=1)
    # Exactly the late event: the seen transaction's own events (changed + sync of the
    # doctor) are not sent again.
    assert [(e["id"], e["type"], e["data"]) for e in replayed] == [
        (late_id, "sync.progress", {"late": True})
    ]
    assert msg["replayed"] == 1


@pytest.fixture
async def small_api(local_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(local_db, "local", ws_replay_limit=2, ws_queue_size=8) as api:
        yield api


async def test_replay_is_bounded(small_api: Api) -> None:
    for i in range(3):
        await small_api.create("doctors", {"name": f"d{i}"}, token())
    async with small_api.client.ws_connect(
        "/ws", params={"token": token("viewer"), "last_event_id": "0"}
    ) as ws:
        await recv(ws)
        await ws.send_json({"type": "subscribe", "site": 1})
        assert (await next_of(ws, "replay.truncated"))["limit"] == 2
        ack = await next_of(ws, "subscribed")
        assert ack["truncated"] is True and ack["replayed"] == 2


async def test_token_in_first_message_and_bad_tokens(local_api: Api) -> None:
    c = local_api.client
    async with c.ws_connect("/ws") as ws:
        await ws.send_json({"type": "auth", "token": token("viewer")})
        assert (await recv(ws))["type"] == "hello"
    async with c.ws_connect("/ws") as ws:
        await ws.send_json({"type": "auth", "token": token("viewer", ttl=-60)})
        msg = await ws.receive(timeout=5)
        # The close frame's code (ws.close_code may read 1006 if the server drops the
        # connection right after its frame).
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, msg
        assert "expired" in str(msg.extra)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await c.ws_connect("/ws", params={"token": "not.a.jwt"})
    assert err.value.status == 401


def _raw_ws_that_never_reads(host: str, port: int, path: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that never reads: a slow client."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert b" 101 " in head.split(b"\r\n", 1)[0]
    return s


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def test_slow_client_is_disconnected_and_others_keep_receiving(small_api: Api) -> None:
    c = small_api.client
    host, port = c.host, c.port
    assert port is not None
    # In a thread: the server answers the handshake on this very event loop.
    slow = await asyncio.to_thread(
        _raw_ws_that_never_reads, host, port, f"/ws?token={token('viewer')}"
    )
    try:
        slow.sendall(_masked_text(json.dumps({"type": "subscribe", "site": 1}).encode()))
        hub = c.app[state.HUB] if c.app is not None else None
        assert hub is not None
        async with c.ws_connect("/ws", params={"token": token("viewer")}) as fast:
            await recv(fast)
            await subscribe(fast, site=1)
            while len(hub.subscribers) < 2:
                await asyncio.sleep(0.01)
            big = {"blob": "x" * 4000}
            received = 0
            for i in range(1, 5000):
                hub.dispatch(Event(i, "record.changed", 1, "doctors", str(i), None, "now", big))
                # The fast client reads everything as it comes.
                while received < i:
                    ev = await next_of(fast, "record.changed")
                    received += 1
                    assert ev["id"] == received
                if any(s.overflowed for s in hub.subscribers):
                    break
            overflowed = [s for s in hub.subscribers if s.overflowed]
            assert len(overflowed) == 1, "the slow client never overflowed"
            # The fast one still gets the next event promptly.
            hub.dispatch(Event(i + 1, "record.changed", 1, "doctors", "x", None, "now", {}))
            assert (await next_of(fast, "record.changed"))["id"] == i + 1
            # The slow one was told why before its socket was closed.
            loop = asyncio.get_running_loop()
            slow.setblocking(False)
            data = b""
            deadline = loop.time() + 10
            while b"slow consumer" not in data and loop.time() < deadline:
                try:
                    chunk = slow.recv(1 << 20)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
                    continue
                if not chunk:
                    break
                data += chunk
            assert b"slow consumer" in data
            assert (4008).to_bytes(2, "big") + b"slow consumer" in data
    finally:
        slow.close()


async def test_events_filter_limits_the_types_delivered(local_api: Api) -> None:
    async with local_api.client.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        await recv(ws)
        ack = await subscribe(ws, site=1, events=["record.sync"])
        assert ack["events"] == ["record.sync"]
        await local_api.create("doctors", {"name": "a"}, token())
        first = await next_of(ws, "record.sync", "record.changed")
        assert first["type"] == "record.sync"
        bad = await subscribe(ws, events="record.sync")
        assert bad["type"] == "error" and "events" in bad["message"]


async def test_listener_connection_lost_then_caught_up(local_api: Api) -> None:
    async with local_api.client.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        await recv(ws)
        await subscribe(ws, site=1, events=["record.changed"])
        with local_api.db.connect(autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'scsync-api-listen' AND datname = current_database()"
            ).fetchone()
        assert killed == (1,)
        # Committed while no listener is connected: found by id after the reconnect.
        d = await local_api.create("doctors", {"name": "while deaf"}, token())
        assert (await next_of(ws, "record.changed", timeout=10))["record_id"] == d["id"]


async def test_socket_closes_when_its_token_expires(local_api: Api) -> None:
    async with local_api.client.ws_connect("/ws", params={"token": token("viewer", ttl=2)}) as ws:
        await recv(ws)
        await subscribe(ws, site=1)
        msg = await ws.receive(timeout=10)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == 4401 and "token expired" in str(msg.extra), msg


async def test_hello_reports_the_latest_event_id_of_a_fresh_instance(
    local_db: TestDatabase,
) -> None:
    with local_db.connect() as conn:
        conn.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'before start')")
        conn.commit()
        newest = conn.execute("SELECT scsync_api_events_newest()").fetchone()
    assert newest is not None and isinstance(newest[0], int) and newest[0] > 0
    async with (
        _client(local_db, "local") as api,
        api.client.ws_connect("/ws", params={"token": token("viewer")}) as ws,
    ):
        assert (await recv(ws))["last_event_id"] == newest[0]


async def test_events_published_by_other_packages_reach_subscribers(local_api: Api) -> None:
    """scsync_api_publish is the interface of the replicator/files (sync.progress)."""
    async with local_api.client.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        await recv(ws)
        await subscribe(ws, site=1)
        with local_api.db.connect() as conn:
            conn.execute(
                "SELECT scsync_api_publish(1, 'sync.progress', NULL, NULL, NULL, %s::jsonb)",
                ('{"state": "running", "rows_done": 5, "rows_total": 9}',),
            )
            conn.execute(
                "SELECT scsync_api_publish(2, 'sync.progress', NULL, NULL, NULL, '{}'::jsonb)"
            )
            big = "x" * 9000  # past a notification's size: listeners read the row by id
            conn.execute(
                "SELECT scsync_api_publish(1, 'sync.progress', NULL, NULL, NULL, %s::jsonb)",
                ('{"note": "' + big + '"}',),
            )
            conn.commit()
        first = await next_of(ws, "sync.progress")
        assert first["site"] == 1 and first["data"]["rows_done"] == 5
        second = await next_of(ws, "sync.progress")
        assert second["site"] == 1 and second["data"]["note"] == big


async def test_events_are_not_read_for_nobody_and_a_new_client_still_starts_after_them(
    local_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no WebSocket client the listener reads no event from the log (it would fan
    out every replicated batch for no one), yet the hello of a client that connects
    later reports the newest id, and live events reach it."""
    import api.events as events_module

    reads: list[int] = []
    original = events_module.events_after

    async def counted(pool: Any, after: int, site: int | None, limit: int) -> list[Event]:
        reads.append(after)
        return await original(pool, after, site, limit)

    monkeypatch.setattr(events_module, "events_after", counted)
    hub = local_api.client.app[state.HUB]
    created = [await local_api.create("doctors", {"name": f"d{i}"}, token()) for i in range(3)]
    with local_api.db.connect() as conn:
        newest = conn.execute("SELECT scsync_api_events_newest()").fetchone()
    assert newest is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while hub.last_id < newest[0]:  # the positive marker: the newest id was heard
        assert loop.time() < deadline, (hub.last_id, newest[0])
        await asyncio.sleep(0.02)
    assert reads == [] and created
    async with local_api.client.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        assert (await recv(ws))["last_event_id"] == newest[0]
        await subscribe(ws, site=1)
        live = await local_api.create("doctors", {"name": "live"}, token())
        assert (await next_of(ws, "record.changed"))["record_id"] == live["id"]
    assert reads, "a subscriber's events were not read"
