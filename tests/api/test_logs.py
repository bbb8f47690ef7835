"""No token, password or Authorization header in any log (SPEC: Security): the APIs run
as processes at DEBUG, are probed with good and bad tokens (headers, query strings,
the WebSocket), good and bad passwords, and their logs are searched for all of them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import yarl

from schema.auth import site_token
from scsync.embedded_pg import free_port
from tests.api.conftest import (
    LOCAL_SECRET,
    PASSWORD,
    SECRET,
    ApiProcess,
    add_user,
    start_api,
    write_config,
)
from tests.pg import TestDatabase

WRONG_PASSWORD = "wrong horse battery staple"
GARBAGE = "garbage-token-MARKER-7f3a9c"


async def _probe(http: aiohttp.ClientSession, base: str, site: int | None) -> list[str]:
    """Every way a credential reaches the API; the credentials used."""
    sign_in: dict[str, object] = {"username": "kim", "password": WRONG_PASSWORD}
    if site is not None:
        sign_in["site_id"] = site
    async with http.post(base + "/v1/auth/token", json=sign_in) as resp:
        assert resp.status == 401
    async with http.post(base + "/v1/auth/token", json={**sign_in, "password": PASSWORD}) as resp:
        assert resp.status == 200, await resp.text()
        tok = str((await resp.json())["token"])
    # A malformed body that carries the password, and one with it in a field name.
    broken = '{"username": "kim", "password": "' + PASSWORD + '"'
    async with http.post(base + "/v1/auth/token", data=broken) as resp:
        assert resp.status == 400
    async with http.post(base + "/v1/auth/token", json={PASSWORD: 1}) as resp:
        assert resp.status == 400
    bearer = {"Authorization": f"Bearer {tok}"}
    for headers, status in (
        (bearer, 200),
        ({"Authorization": f"Bearer {GARBAGE}"}, 401),
        ({"Authorization": f"Basic {GARBAGE}"}, 401),
        ({"Authorization": f"Bearer {tok}x"}, 401),
    ):
        async with http.get(base + "/v1/me", headers=headers) as resp:
            assert resp.status == status
    # Query-string tokens (which the REST API ignores) and the WebSocket's ?token=.
    for path in ("/v1/me", "/v1/records/patients"):
        async with http.get(base + path, params={"token": tok, "access_token": tok}) as resp:
            assert resp.status == 401
        async with http.get(base + path, params={"token": tok}, headers=bearer) as resp:
            assert resp.status == 200
    async with http.ws_connect(base + "/ws", params={"token": tok}) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
    async with http.get(base + "/ws", params={"token": GARBAGE}) as resp:
        assert resp.status == 401
    async with http.ws_connect(base + "/ws") as ws:
        await ws.send_json({"type": "auth", "token": GARBAGE})
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
    # A request aiohttp's parser refuses, its bad header carrying a token.
    u = yarl.URL(base)
    reader, writer = await asyncio.open_connection(u.host, u.port)
    writer.write(
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() + b"\x01\r\n\r\n"
    )
    await writer.drain()
    assert b" 400 " in (await reader.read(100)).split(b"\r\n")[0]
    writer.close()
    # lockd (mounted in the cloud API) with good and bad tokens.
    if site is not None:
        for headers in (bearer, {"Authorization": f"Bearer {GARBAGE}"}):
            async with http.post(
                base + "/v1/locks/acquire", data=b'{"table": "patients"', headers=headers
            ) as resp:
                assert resp.status in (400, 401)
    return [tok, tok + "x"]


def _wait_for(proc: ApiProcess, marker: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while marker not in proc.log_text():
        assert time.monotonic() < deadline, f"no {marker!r} in the log:\n{proc.log_text()}"
        time.sleep(0.1)


async def test_logs_hold_no_token_password_or_authorization_header(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    tmp_path: Path,
    processes: list[ApiProcess],
) -> None:
    add_user(local_db, "kim", "admin")
    add_user(cloud_db, "kim", "admin", site_id=1)
    cloud = start_api(
        "cloud", write_config(tmp_path / "cloud.toml", cloud_db, free_port(), log_level="DEBUG")
    )
    processes.append(cloud)
    # The local API's site token is refused by the cloud (another secret): its link to
    # the cloud's events fails and says so in the log, which must not hold the token.
    bad_site_token = site_token(LOCAL_SECRET, 1)
    local = start_api(
        "local",
        write_config(
            tmp_path / "local.toml",
            local_db,
            free_port(),
            log_level="DEBUG",
            cloud_url=cloud.url,
            lockd_url=cloud.url + "/v1/locks",
            lockd_token=bad_site_token,
        ),
    )
    processes.append(local)
    secrets = [PASSWORD, WRONG_PASSWORD, GARBAGE, bad_site_token, LOCAL_SECRET, SECRET]
    async with aiohttp.ClientSession() as http:
        local_tokens = await _probe(http, local.url, None)
        secrets += local_tokens + await _probe(http, cloud.url, 1)
        # The local API asks the cloud's lockd with its (refused) site token.
        kim = {"Authorization": f"Bearer {local_tokens[0]}"}
        async with http.post(
            local.url + "/v1/records/patients", json={"patient_code": "P", "name": "A"}, headers=kim
        ) as resp:
            assert resp.status == 201
            rid = (await resp.json())["id"]
        async with http.post(f"{local.url}/v1/records/patients/{rid}/edit", headers=kim) as resp:
            assert resp.status in (404, 503), await resp.text()
    await asyncio.to_thread(_wait_for, local, "event link to the cloud failed")
    # The access log is on (a request per line) and names no query string.
    await asyncio.to_thread(_wait_for, cloud, "GET /v1/me 200")
    for proc in (local, cloud):
        proc.stop()
    for name, proc in (("local", local), ("cloud", cloud)):
        text = proc.log_text()
        assert "GET /v1/me 200" in text, name
        for secret in secrets:
            assert secret not in text, (name, secret[:12])
        for word in ("Authorization", "authorization", "Bearer ", "bearer ", "token="):
            assert word not in text, (name, word, _around(text, word))


def _around(text: str, word: str) -> str:
    i = text.find(word)
    return text[max(0, i - 200) : i + 200]
