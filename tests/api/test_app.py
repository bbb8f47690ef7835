"""The app itself: settings, JSON errors, limits, OpenAPI, the real process."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from api.errors import ConfigError
from api.settings import load_settings
from scsync.embedded_pg import free_port
from tests.api.conftest import (
    PASSWORD,
    SECRET,
    Api,
    ApiProcess,
    add_user,
    auth,
    ctoken,
    start_api,
    token,
    write_config,
)
from tests.pg import TestDatabase
from tests.polling import queued_datagrams


def test_settings_name_the_key_at_fault(tmp_path: Path) -> None:
    cfg = tmp_path / "api.toml"
    cfg.write_text('db_url = "postgresql://x@127.0.0.1/db"\njwt_secret = "short"\n')
    with pytest.raises(ConfigError, match="'jwt_secret' must be at least 32 bytes"):
        load_settings("local", cfg, env={})
    with pytest.raises(ConfigError, match="'SCSYNC_API_PORT' must be an integer"):
        load_settings("local", cfg, env={"SCSYNC_API_PORT": "eighty"})
    cfg.write_text('db_url = "postgresql://x@127.0.0.1/db"\nportt = 1\n')
    with pytest.raises(ConfigError, match="unknown setting 'portt'"):
        load_settings("local", cfg, env={})
    with pytest.raises(ConfigError, match="'jwt_secret' is required"):
        load_settings("local", None, env={"SCSYNC_LOCAL_DB_URL": "postgresql://x@h/db"})
    s = load_settings(
        "cloud",
        None,
        env={
            "SCSYNC_CLOUD_DB_URL": "postgresql://x@127.0.0.1/db",
            "SCSYNC_API_JWT_SECRET": SECRET,
            "SCSYNC_API_PORT": "9001",
        },
    )
    assert (s.port, s.side, s.db_url) == (9001, "cloud", "postgresql://x@127.0.0.1/db")
    with pytest.raises(ConfigError, match="'lease_ttl_s' must be"):
        load_settings(
            "cloud", None, env={"SCSYNC_API_LEASE_TTL_S": "0"}, db_url=s.db_url, jwt_secret=SECRET
        )
    with pytest.raises(ConfigError, match="rabbitmq is for the cloud side only"):
        load_settings("local", None, env={}, db_url=s.db_url, jwt_secret=SECRET, bus="rabbitmq")
    with pytest.raises(ConfigError, match="'s3_verify_by' must be one of checksum, copy, read"):
        load_settings(
            "cloud",
            None,
            env={"SCSYNC_API_S3_VERIFY_BY": "trust"},
            db_url=s.db_url,
            jwt_secret=SECRET,
        )


@pytest.mark.parametrize("mode", [None, "read"])
def test_blob_endpoints_verify_as_configured(mode: str | None) -> None:
    """s3_verify_by reaches the mounted blob endpoints; checksum when not set."""
    from aiohttp.web_urldispatcher import PrefixedSubAppResource

    from api.app import make_app
    from api.blobs.resources import _SETTINGS

    env = {"SCSYNC_API_S3_VERIFY_BY": mode} if mode else {}
    settings = load_settings(
        "cloud",
        None,
        env=env,
        db_url="postgresql://x@127.0.0.1/db",
        jwt_secret=SECRET,
        s3_bucket="b",
        mount_lockd=False,
    )
    app = make_app("cloud", settings)
    mounted = [
        r._app
        for r in app.router.resources()
        if isinstance(r, PrefixedSubAppResource) and r.canonical == "/v1/blobs"
    ]
    assert [m[_SETTINGS].verify_by for m in mounted] == [mode or "checksum"]


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_openapi_document_is_valid(side: str) -> None:
    from api.openapi import document

    validate(document(side))  # type: ignore[arg-type]


async def test_sign_in_gives_a_token_that_works(local_api: Api) -> None:
    add_user(local_api.db, "alice", "editor")
    c = local_api.client
    resp = await c.post("/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["role"] == "editor" and body["site_id"] == 1
    me = await c.get("/v1/me", headers=auth(body["token"]))
    assert (await me.json())["actor"] == "local:1/alice"
    bad = await c.post("/v1/auth/token", json={"username": "alice", "password": "wrong-one"})
    assert bad.status == 401
    assert (await bad.json())["error"] == "unauthorized"
    nobody = await c.post("/v1/auth/token", json={"username": "bob", "password": PASSWORD})
    assert nobody.status == 401


async def test_errors_are_json_with_code_message_field(local_api: Api) -> None:
    c = local_api.client
    tok = token()
    resp = await c.get("/v1/nothing-here", headers=auth(tok))
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    resp = await c.put("/v1/me", headers=auth(tok))
    assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
    resp = await c.post(
        "/v1/records/patients",
        data=b'{"name": "x",',
        headers=auth(tok) | {"Content-Type": "application/json"},
    )
    body = await resp.json()
    assert resp.status == 400 and body["error"] == "malformed_json"
    assert "line 1 column" in body["message"]
    resp = await c.post(
        "/v1/records/patients", json={"name": 5, "patient_code": "P1"}, headers=auth(tok)
    )
    body = await resp.json()
    assert resp.status == 400 and body["field"] == "name", body
    resp = await c.post(
        "/v1/records/patients", json={"name": "x", "colour": "red"}, headers=auth(tok)
    )
    assert (await resp.json())["field"] == "colour"
    resp = await c.post("/v1/records/patients", json={"name": "x"}, headers=auth(tok))
    assert (await resp.json())["field"] == "patient_code"


async def test_oversized_body_is_413(local_api: Api) -> None:
    big = json.dumps({"name": "x" * (2 * 1024 * 1024), "patient_code": "P"})
    resp = await local_api.client.post(
        "/v1/records/patients",
        data=big,
        headers=auth(token()) | {"Content-Type": "application/json"},
    )
    assert resp.status == 413
    assert (await resp.json())["error"] == "payload_too_large"


async def test_openapi_served_and_status_page(local_api: Api) -> None:
    resp = await local_api.client.get("/openapi.json")
    doc: dict[str, Any] = await resp.json()
    validate(doc)
    assert "/v1/records/images/{id}/history" in doc["paths"]
    page = await local_api.client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    # Only the page's own script (by hash) may run; it may talk to this origin only.
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in csp and "connect-src 'self'" in csp


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_api_run_is_a_real_process_that_stops_on_sigterm(
    tmp_path: Path, local_db: TestDatabase, processes: list[ApiProcess]
) -> None:
    cfg = write_config(tmp_path / "local.toml", local_db, free_port())
    proc = start_api("local", cfg)
    processes.append(proc)
    assert _get(proc.url + "/health") == {"status": "ok", "side": "local"}
    assert proc.stop(signal.SIGTERM) == 0


def test_a_local_api_without_the_cloud_relay_says_so_once(
    tmp_path: Path, local_db: TestDatabase, processes: list[ApiProcess]
) -> None:
    """Issue #18, item 4: without [api] cloud_url the local API never relays the cloud's
    lease events ("Editing by cloud"); it says so at start, naming the key."""
    cfg = write_config(tmp_path / "local.toml", local_db, free_port())
    proc = start_api("local", cfg)
    processes.append(proc)
    assert _get(proc.url + "/health")["status"] == "ok"
    assert proc.stop(signal.SIGTERM) == 0
    err = proc.log_text()
    assert err.count("cloud relay is off") == 1, err
    assert "'cloud_url'" in err
    relayed = write_config(
        tmp_path / "relayed.toml",
        local_db,
        free_port(),
        cloud_url=f"http://127.0.0.1:{free_port()}",
        lockd_token="a-site-token",
    )
    proc = start_api("local", relayed)
    processes.append(proc)
    assert _get(proc.url + "/health")["status"] == "ok"
    assert proc.stop(signal.SIGTERM) == 0
    # The process has exited: its log is whole (the first one shows the warning lands there).
    assert "cloud relay is off" not in proc.log_text()


def test_api_run_refuses_a_bad_setting_naming_it(tmp_path: Path, local_db: TestDatabase) -> None:
    cfg = write_config(tmp_path / "local.toml", local_db, free_port())
    with pytest.raises(RuntimeError, match="pool_max"):
        start_api("local", cfg, env={"SCSYNC_API_POOL_MAX": "0"})


async def test_vendor_admin_sees_every_site_and_issues_site_tokens(cloud_api: Api) -> None:
    from replicator.sites import register_site
    from schema.auth import verify_token

    c = cloud_api.client
    add_user(cloud_api.db, "vendor", "vendor_admin", site_id=0)
    resp = await c.post("/v1/auth/token", json={"username": "vendor", "password": PASSWORD})
    body = await resp.json()
    assert resp.status == 200 and body["site_id"] is None and body["role"] == "vendor_admin"
    vendor = body["token"]
    for site in (1, 2):
        await cloud_api.create(
            "patients", {"patient_code": f"S{site}", "name": "x"}, ctoken("editor", site=site)
        )
    listed = await (await c.get("/v1/records/patients", headers=auth(vendor))).json()
    assert sorted(p["site_id"] for p in listed["items"]) == [1, 2]
    only2 = await (
        await c.get("/v1/records/patients", params={"site_id": "2"}, headers=auth(vendor))
    ).json()
    assert [p["site_id"] for p in only2["items"]] == [2]
    # A vendor admin creates for a named site only.
    resp = await c.post("/v1/records/doctors", json={"name": "d"}, headers=auth(vendor))
    assert resp.status == 400 and (await resp.json())["field"] == "site_id"
    # Site tokens, for registered sites, by vendor admins only.
    creds = await cloud_api.db.acall(register_site, "clinic-one")
    resp = await c.post(f"/v1/sites/{creds.site_id}/token", json={}, headers=auth(vendor))
    issued = await resp.json()
    assert resp.status == 200, issued
    principal = verify_token(SECRET, issued["token"], side="cloud")
    assert (principal.kind, principal.site_id) == ("site", creds.site_id)
    resp = await c.post(f"/v1/sites/{creds.site_id}/token", json={}, headers=auth(ctoken("admin")))
    assert resp.status == 403
    resp = await c.post("/v1/sites/99/token", json={}, headers=auth(vendor))
    assert resp.status == 404
    # A vendor account cannot sign in to a clinic's site, nor as a local user.
    resp = await c.post(
        "/v1/auth/token", json={"username": "vendor", "password": PASSWORD, "site_id": 1}
    )
    assert resp.status == 401


def test_cli_hash_password_matches_the_api_check() -> None:
    import subprocess
    import sys

    from api.passwords import verify_password

    out = subprocess.run(
        [sys.executable, "-m", "scsync", "api", "hash-password", "--stdin"],
        input="s3cret pass\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.startswith("scrypt$")
    assert verify_password("s3cret pass", out) and not verify_password("s3cret pas", out)


def test_api_run_speaks_systemd_notify(
    tmp_path: Path, local_db: TestDatabase, processes: list[ApiProcess]
) -> None:
    import socket

    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(20)
        cfg = write_config(tmp_path / "local.toml", local_db, free_port())
        proc = start_api("local", cfg, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        processes.append(proc)
        got = [sock.recv(256).decode() for _ in range(3)]
        assert "READY=1" in got and "WATCHDOG=1" in got
        assert proc.stop(signal.SIGTERM) == 0
        assert b"STOPPING=1" in queued_datagrams(sock)  # it exited: all it sent is here


async def test_blob_errors_have_the_one_error_body_mounted_or_alone(
    cloud_db: TestDatabase, s3_endpoint: Any
) -> None:
    """Issue #18: a download of a blob that is not uploaded was a 404 whose message was
    itself a JSON string when the cloud API mounted the blob endpoints."""
    import uuid

    from scsync.s3_server import ACCESS_KEY, SECRET_KEY
    from tests.api.conftest import _client

    bucket = f"scsync-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=bucket)
    over = {
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_endpoint.url,
        "s3_access_key": ACCESS_KEY,
        "s3_secret_key": SECRET_KEY,
    }
    sha = "a" * 64
    async with _client(cloud_db, "cloud", **over) as api:
        site_tok = token("editor", site=1, side="cloud")
        resp = await api.client.post(
            f"/v1/blobs/sites/1/blobs/{sha}/download", headers=auth(site_tok)
        )
        body = await resp.json()
        assert resp.status == 404, body
        assert body == {
            "error": "not_found",
            "message": "this blob is not uploaded (request it: POST .../request)",
            "field": None,
        }
        resp = await api.client.post(
            f"/v1/blobs/sites/2/blobs/{sha}/download", headers=auth(site_tok)
        )
        body = await resp.json()
        assert resp.status == 403 and body["error"] == "forbidden", body
        assert not body["message"].startswith("{") and "field" in body
        resp = await api.client.post(f"/v1/blobs/sites/1/blobs/{sha}/download")
        body = await resp.json()
        assert resp.status == 401 and body["error"] == "unauthorized", body
        assert not body["message"].startswith("{")
