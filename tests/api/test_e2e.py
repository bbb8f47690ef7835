"""End to end with real processes: the cloud API (lockd mounted), two local APIs and
two replicators. A local edit shows as "Editing by local" on a cloud client's WebSocket
within 1 s, a cloud editor is refused with the holder named, the save goes Saved ->
Synced on both sides; and the mirror case from the cloud. Site 2 sees none of it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from replicator.sites import register_site
from schema.auth import site_token
from scsync.embedded_pg import free_port
from tests.api.conftest import SECRET, ApiProcess, auth, ctoken, start_api, token, write_config
from tests.pg import TestDatabase
from tests.polling import until_marker_async

WS = aiohttp.ClientWebSocketResponse


def _replicator(tmp_path: Path, local: TestDatabase, cloud_url: str, site: int) -> ApiProcess:
    """A site's replicator, to the cloud API process (its sync endpoints) only."""
    values = {
        "local_db_url": local.url,
        "cloud_api_url": cloud_url,
        "site_token": site_token(SECRET, site),
        "site_id": site,
        "poll_interval_s": 0.5,
        "backoff_max_s": 1.0,
        "dead_letter_initial_s": 0.5,
        "dead_letter_max_s": 1.0,
    }
    cfg = tmp_path / f"replicator-{site}.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    with open(tmp_path / f"replicator-{site}.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", "replicator", "run", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ),
        )
    return ApiProcess(proc, "")


async def _ws(http: aiohttp.ClientSession, base: str, tok: str, site: int) -> WS:
    ws = await http.ws_connect(base + "/ws", params={"token": tok})
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    await ws.send_json({"type": "subscribe", "site": site})
    assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
    return ws


async def _until(ws: WS, pred: Any, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ev: dict[str, Any] = await ws.receive_json(timeout=max(0.01, deadline - loop.time()))
        if pred(ev):
            return ev


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, tok: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=auth(tok)) as resp:
        return resp.status, await resp.json()


async def _wait_record(
    http: aiohttp.ClientSession, url: str, tok: str, pred: Any, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await _call(http, "GET", url, tok)
        if status == 200 and pred(body):
            return dict(body)
        assert time.monotonic() < deadline, (status, body)
        await asyncio.sleep(0.2)


def _about(rid: str, *types: str, **data: Any) -> Any:
    def pred(ev: dict[str, Any]) -> bool:
        if ev.get("record_id") != rid or ev.get("type") not in types:
            return False
        return all(ev.get("data", {}).get(k) == v for k, v in data.items())

    return pred


async def test_edit_flow_across_cloud_and_sites(
    tmp_path: Path,
    cloud_db: TestDatabase,
    local_db: TestDatabase,
    local_db2: TestDatabase,
    processes: list[ApiProcess],
) -> None:
    creds = [
        await cloud_db.acall(register_site, "clinic-one"),
        await cloud_db.acall(register_site, "clinic-two"),
    ]
    cloud = start_api("cloud", write_config(tmp_path / "cloud.toml", cloud_db, free_port()))
    processes.append(cloud)
    apis = []
    for db, c in zip((local_db, local_db2), creds, strict=True):
        cfg = write_config(
            tmp_path / f"local-{c.site_id}.toml",
            db,
            free_port(),
            lockd_url=cloud.url + "/v1/locks",
            lockd_token=site_token(SECRET, c.site_id),
            cloud_url=cloud.url,
        )
        apis.append(start_api("local", cfg))
        processes.append(apis[-1])
        processes.append(_replicator(tmp_path, db, cloud.url, c.site_id))
    local, local2 = apis[0].url, apis[1].url
    alice = token("editor", site=1, name="alice")  # a local client of site 1
    bob = ctoken("editor", site=1, name="bob")  # a cloud client of site 1
    async with aiohttp.ClientSession() as http:
        status, p = await _call(
            http,
            "POST",
            local + "/v1/records/patients",
            alice,
            {"patient_code": "E", "name": "Kim"},
        )
        assert status == 201, p
        rid = p["id"]
        await _wait_record(http, f"{cloud.url}/v1/records/patients/{rid}", bob, lambda r: True)
        await _wait_record(http, f"{local}/v1/records/patients/{rid}", alice, lambda r: r["synced"])
        cloud_ws = await _ws(http, cloud.url, ctoken("viewer", site=1, name="carol"), 1)
        local_ws = await _ws(http, local, token("viewer", site=1, name="lee"), 1)
        other_ws = await _ws(http, local2, token("viewer", site=2, name="sam"), 2)

        # --- a local client edits ------------------------------------------------------
        t0 = time.monotonic()
        status, session = await _call(
            http, "POST", f"{local}/v1/records/patients/{rid}/edit", alice
        )
        assert status == 200, session
        await _until(cloud_ws, _about(rid, "record.editing", by="local"), 1.0)
        assert time.monotonic() - t0 < 1.0
        status, refused = await _call(
            http, "POST", f"{cloud.url}/v1/records/patients/{rid}/edit", bob
        )
        assert status == 409 and refused["holder"] == "local:1/alice", refused
        status, saved = await _call(
            http,
            "POST",
            local + "/v1/edit-sessions/save",
            alice,
            {"session": session["session"], "changes": {"name": "Kim Min"}},
        )
        assert status == 200 and saved["version"] == "2.0", saved
        await _until(local_ws, _about(rid, "record.saved"), 2)
        await _until(local_ws, _about(rid, "record.sync", state="synced"), 15)
        await _until(
            cloud_ws,
            lambda e: (
                _about(rid, "remote.changed", sync_state="synced")(e)
                or _about(rid, "record.sync", state="synced")(e)
            ),
            15,
        )
        cloud_copy = await _wait_record(
            http, f"{cloud.url}/v1/records/patients/{rid}", bob, lambda r: r["name"] == "Kim Min"
        )
        assert cloud_copy["version_major"] == 2
        await _call(
            http, "POST", local + "/v1/edit-sessions/close", alice, {"session": session["session"]}
        )
        await _until(cloud_ws, _about(rid, "record.released"), 2)

        # --- the mirror case: a cloud client edits -------------------------------------
        t0 = time.monotonic()
        status, session = await _call(
            http, "POST", f"{cloud.url}/v1/records/patients/{rid}/edit", bob
        )
        assert status == 200, session
        await _until(local_ws, _about(rid, "record.editing", by="cloud"), 1.0)
        assert time.monotonic() - t0 < 1.0
        status, refused = await _call(
            http, "POST", f"{local}/v1/records/patients/{rid}/edit", alice
        )
        assert status == 409 and refused["holder"] == "cloud:1/bob", refused
        status, saved = await _call(
            http,
            "POST",
            cloud.url + "/v1/edit-sessions/save",
            bob,
            {"session": session["session"], "changes": {"name": "Kim Min-ji"}},
        )
        assert status == 200 and saved["version"] == "3.0", saved
        await _until(cloud_ws, _about(rid, "record.saved"), 2)
        await _until(local_ws, _about(rid, "remote.changed", sync_state="synced"), 15)
        local_copy = await _wait_record(
            http, f"{local}/v1/records/patients/{rid}", alice, lambda r: r["name"] == "Kim Min-ji"
        )
        assert (local_copy["version_major"], local_copy["synced"]) == (3, True)
        await _until(cloud_ws, _about(rid, "record.sync", state="synced"), 15)
        await _call(
            http,
            "POST",
            cloud.url + "/v1/edit-sessions/close",
            bob,
            {"session": session["session"]},
        )
        await _until(local_ws, _about(rid, "record.released", by="cloud"), 2)

        # Site 2's clients saw nothing of site 1. The marker: a cloud change of site 2,
        # committed after all of site 1's, comes down the same pull to the same socket.
        status, marker = await _call(
            http,
            "POST",
            cloud.url + "/v1/records/doctors",
            ctoken("editor", site=2, name="mia"),
            {"name": "Dr. Marker"},
        )
        assert status == 201, marker
        before = await until_marker_async(
            lambda left: other_ws.receive_json(timeout=left),
            _about(marker["id"], "remote.changed"),
            15,
            "site 2's marker change",
        )
        assert [e for e in before if e.get("site") != 2] == []
        for ws in (cloud_ws, local_ws, other_ws):
            await ws.close()
