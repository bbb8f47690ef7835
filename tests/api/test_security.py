"""Tenant walls and token checks, on every endpoint the OpenAPI document lists:
another site's ids give 403/404 with none of its data; missing, expired, forged and
alg=none tokens give 401; every patient read leaves an audit row."""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import jwt

from api.records import PATIENT_TABLES, table_spec
from api.routes import all_routes
from schema.web import Access
from tests.api.conftest import Api, auth, ctoken, token

MARK = "SITE-TWO-SECRET"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens() -> dict[str, str]:
    now = int(time.time())
    claims = {
        "sub": "user:eve",
        "kind": "user",
        "role": "vendor_admin",
        "iss": "scsync",
        "iat": now,
        "exp": now + 600,
    }
    return {
        "expired": token("editor", ttl=-3600),
        "wrong signature": jwt.encode(claims, "another-secret-of-at-least-32-bytes!!", "HS256"),
        "alg none": _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "garbage": "not-a-token",
    }


async def _account(api: Api, admin: str) -> str:
    resp = await api.client.post(
        "/v1/accounts",
        json={"username": MARK, "password": "long password", "display_name": MARK},
        headers=auth(admin),
    )
    body = await resp.json()
    assert resp.status == 201, body
    return str(body["id"])


async def _site_two_records(api: Api) -> dict[str, str]:
    """One record of site 2 in every synced table, each carrying MARK where it can."""
    t2, admin2 = ctoken("editor", site=2, name="bob"), ctoken("admin", site=2, name="root")
    doctor = await api.create("doctors", {"name": MARK}, t2)
    patient = await api.create("patients", {"patient_code": "S2", "name": MARK}, t2)
    tpl = await api.create("report_templates", {"name": MARK}, t2)
    image = await api.create(
        "images", {"patient_id": patient["id"], "description": MARK, "modality": "CT"}, t2
    )
    ids = {
        "doctors": doctor["id"],
        "patients": patient["id"],
        "report_templates": tpl["id"],
        "images": image["id"],
        "user_accounts": await _account(api, admin2),
        "settings": (await api.create("settings", {"key": MARK, "value": MARK}, t2))["id"],
        "captures": (
            await api.create("captures", {"patient_id": patient["id"], "description": MARK}, t2)
        )["id"],
        "project_files": (
            await api.create("project_files", {"patient_id": patient["id"], "name": MARK}, t2)
        )["id"],
        "reports": (
            await api.create(
                "reports",
                {"patient_id": patient["id"], "title": MARK, "template_id": tpl["id"]},
                t2,
            )
        )["id"],
    }
    with api.db.connect() as conn:
        row = conn.execute(
            "INSERT INTO scsync_conflicts (table_name, row_id, site_id, detected_on, local_row)"
            " VALUES ('patients', %s, 2, 'cloud', %s) RETURNING id",
            (int(patient["id"]), json.dumps({"name": MARK})),
        ).fetchone()
        conn.commit()
    assert row is not None
    ids["conflict"] = str(row[0])
    return ids


def _valid_body(operation_id: str, path: str) -> Any:
    """A body the endpoint would accept for a record of the caller's own site."""
    if operation_id == "update_account":
        return {"display_name": "x"}
    if operation_id.startswith("update_"):
        spec = table_spec("cloud", path.split("/")[3])
        assert spec is not None
        text = next(c.name for c in spec.columns if c.name in spec.writable and c.kind == "text")
        return {text: "x"}
    if operation_id.startswith("rollback_"):
        return {"revision": "1"}
    if operation_id.startswith("sync_switch_"):
        return {"enabled": False}
    if operation_id == "resolve_conflict":
        return {"keep": "cloud"}
    return {}


def _path(path: str, ids: dict[str, str]) -> str:
    if path.startswith("/v1/records/"):
        table = path.split("/")[3]
        return path.replace("{id}", ids[table])
    if path.startswith("/v1/conflicts/"):
        return path.replace("{id}", ids["conflict"])
    if path.startswith("/v1/accounts/"):
        return path.replace("{id}", ids["user_accounts"])
    if path.startswith("/v1/locks/leases/"):
        return path.replace("{table}", "patients").replace("{row_id}", ids["patients"])
    return path.replace("{site_id}", "2").replace("{sha256}", "ab" * 32)


async def test_another_sites_ids_give_403_or_404_and_no_data(cloud_api: Api) -> None:
    ids = await _site_two_records(cloud_api)
    mine = ctoken("admin", site=1, name="alice")
    checked = 0
    for op in all_routes("cloud"):
        if not op.auth or "{" not in op.path:
            continue
        url = _path(op.path, ids)
        body = _valid_body(op.operation_id, op.path)
        resp = await cloud_api.client.request(op.method.upper(), url, json=body, headers=auth(mine))
        text = await resp.text()
        assert resp.status in (403, 404), (op.method, url, resp.status, text)
        assert MARK not in text, (op.method, url, text)
        checked += 1
    assert checked > 60
    # Lists and creation with the other site's id, and the WebSocket wall.
    c = cloud_api.client
    for url in ("/v1/records/patients?site_id=2", "/v1/conflicts?site_id=2"):
        resp = await c.get(url, headers=auth(mine))
        assert resp.status == 403 and MARK not in await resp.text()
    resp = await c.post(
        "/v1/records/doctors", params={"site_id": "2"}, json={"name": "x"}, headers=auth(mine)
    )
    assert resp.status == 403
    listed = await (await c.get("/v1/records/patients", headers=auth(mine))).text()
    assert MARK not in listed
    # Nothing of site 2 was changed by any of the refused calls.
    with cloud_api.db.connect() as conn:
        names = conn.execute("SELECT name, deleted, sync_enabled FROM patients").fetchall()
    assert names == [(MARK, False, True)]


async def _bad_tokens_get_401(api: Api) -> None:
    """Every declared route that needs a token answers 401 to none and to bad ones."""
    cases = _bad_tokens()
    ops = [op for op in all_routes(api.side) if op.auth]  # type: ignore[arg-type]
    for op in ops:
        url = re.sub(r"\{[^}]+\}", "1", op.path)
        for name, bad in [("none", None), *cases.items()]:
            if bad is None and op.access is Access.WEBSOCKET:
                continue  # no token: the socket opens and takes one in its first message
            headers = {} if bad is None else auth(bad)
            resp = await api.client.request(op.method.upper(), url, json={}, headers=headers)
            body = await resp.json()
            assert resp.status == 401, (op.method, url, name, resp.status, body)
            assert body["error"] == "unauthorized"


async def test_bad_tokens_get_401_everywhere_on_the_cloud(cloud_api: Api) -> None:
    await _bad_tokens_get_401(cloud_api)


async def test_bad_tokens_get_401_everywhere(local_api: Api) -> None:
    c = local_api.client
    cases = _bad_tokens()
    await _bad_tokens_get_401(local_api)
    resp = await c.get("/v1/me", headers=auth(cases["alg none"]))
    assert "algorithm" in (await resp.json())["message"]
    # A token of another site is not accepted by this site's API at all.
    resp = await c.get("/v1/me", headers=auth(token("editor", site=2)))
    assert resp.status == 401
    # The WebSocket refuses them before the upgrade.
    for bad in cases.values():
        resp = await c.get("/ws", params={"token": bad})
        assert resp.status == 401


async def test_every_patient_read_is_audited(local_api: Api) -> None:
    c = local_api.client
    tok = token("viewer", name="vera")
    writer = token("editor")
    p = await local_api.create("patients", {"patient_code": "P", "name": "Kim"}, writer)
    img = await local_api.create("images", {"patient_id": p["id"]}, writer)
    reads = [
        ("patients", p["id"], f"/v1/records/patients/{p['id']}", "read"),
        ("images", img["id"], f"/v1/records/images/{img['id']}", "read"),
        ("patients", p["id"], f"/v1/records/patients/{p['id']}/history", "history"),
        ("images", None, f"/v1/records/images?patient_id={p['id']}", "list"),
    ]
    for table in PATIENT_TABLES:
        reads.append((table, None, f"/v1/records/{table}", "list"))
    for _, _, url, _ in reads:
        assert (await c.get(url, headers=auth(tok))).status == 200
    with local_api.db.connect() as conn:
        rows = conn.execute(
            "SELECT actor, action, table_name, row_id::text, detail FROM scsync_audit"
            " WHERE actor = 'local:1/vera' ORDER BY seq"
        ).fetchall()
    assert [(r[2], r[3], r[1]) for r in rows] == [(t, i, a) for t, i, _, a in reads]
    # A list names the ids it showed.
    assert rows[3][4] == {"ids": [img["id"]]}
