"""Records of every synced table: create, list (filters, cursor), get, update, soft
delete, history, rollback, the sync switch; audit rows for patient data."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, auth, ctoken, token


def _audit(api: Api) -> list[tuple[Any, ...]]:
    with api.db.connect() as conn:
        return conn.execute(
            "SELECT actor, side, site_id, action, table_name, row_id FROM scsync_audit ORDER BY seq"
        ).fetchall()


async def test_create_get_update_delete_and_audit(local_api: Api) -> None:
    c, tok = local_api.client, token("editor")
    p = await local_api.create("patients", {"patient_code": "P1", "name": "Kim"}, tok)
    assert p["site_id"] == 1 and p["version_major"] == 1 and isinstance(p["id"], str)
    img = await local_api.create(
        "images",
        {"patient_id": p["id"], "modality": "CT", "study_date": "2026-01-02", "tags": ["a"]},
        tok,
    )
    assert img["patient_id"] == p["id"] and img["study_date"] == "2026-01-02"
    resp = await c.get(f"/v1/records/images/{img['id']}", headers=auth(tok))
    assert (await resp.json())["modality"] == "CT"
    resp = await c.patch(
        f"/v1/records/images/{img['id']}", json={"description": "lower jaw"}, headers=auth(tok)
    )
    updated = await resp.json()
    assert resp.status == 200, updated
    assert (updated["version_major"], updated["version_minor"]) == (2, 0)
    assert updated["revision"] != img["revision"]
    # A stale expected_revision is a 409 naming the current one.
    resp = await c.patch(
        f"/v1/records/images/{img['id']}",
        json={"description": "x"},
        params={"expected_revision": img["revision"]},
        headers=auth(tok),
    )
    body = await resp.json()
    assert resp.status == 409 and body["revision"] == updated["revision"]
    resp = await c.delete(f"/v1/records/images/{img['id']}", headers=auth(tok))
    assert (await resp.json())["deleted"] is True
    listed = await (await c.get("/v1/records/images", headers=auth(tok))).json()
    assert listed["items"] == []
    listed = await (
        await c.get("/v1/records/images", params={"deleted": "true"}, headers=auth(tok))
    ).json()
    assert [i["id"] for i in listed["items"]] == [img["id"]]
    actions = [(a[3], a[4]) for a in _audit(local_api)]
    assert actions == [
        ("create", "patients"),
        ("create", "images"),
        ("read", "images"),
        ("update", "images"),
        ("delete", "images"),
        ("list", "images"),
        ("list", "images"),
    ]
    assert all(a[0] == "local:1/alice" and a[1] == "local" and a[2] == 1 for a in _audit(local_api))


async def test_list_filters_and_cursor_pagination(local_api: Api) -> None:
    c, tok = local_api.client, token("editor")
    p1 = await local_api.create("patients", {"patient_code": "P1", "name": "A"}, tok)
    p2 = await local_api.create("patients", {"patient_code": "P2", "name": "B"}, tok)
    ids = []
    for i in range(5):
        img = await local_api.create(
            "images", {"patient_id": p1["id"], "modality": "CT" if i % 2 else "PX"}, tok
        )
        ids.append(img["id"])
    await local_api.create("images", {"patient_id": p2["id"], "modality": "CT"}, tok)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"patient_id": p1["id"], "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = await (await c.get("/v1/records/images", params=params, headers=auth(tok))).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))  # newest first, each once
    ct = await (
        await c.get(
            "/v1/records/images",
            params={"patient_id": p1["id"], "modality": "CT"},
            headers=auth(tok),
        )
    ).json()
    assert sorted(i["id"] for i in ct["items"]) == sorted(ids[1::2])
    pending = await (
        await c.get("/v1/records/images", params={"sync": "pending"}, headers=auth(tok))
    ).json()
    assert len(pending["items"]) == 6
    synced = await (
        await c.get("/v1/records/images", params={"sync": "synced"}, headers=auth(tok))
    ).json()
    assert synced["items"] == []
    resp = await c.get("/v1/records/doctors", params={"modality": "CT"}, headers=auth(tok))
    assert resp.status == 400 and (await resp.json())["field"] == "modality"
    resp = await c.get("/v1/records/images", params={"since": "yesterday"}, headers=auth(tok))
    assert resp.status == 400 and (await resp.json())["field"] == "since"


async def test_history_rollback_and_sync_switch(local_api: Api) -> None:
    c, tok = local_api.client, token("editor")
    p = await local_api.create("patients", {"patient_code": "P1", "name": "First"}, tok)
    await c.patch(f"/v1/records/patients/{p['id']}", json={"name": "Second"}, headers=auth(tok))
    hist = await (await c.get(f"/v1/records/patients/{p['id']}/history", headers=auth(tok))).json()
    assert [h["data"]["name"] for h in hist["items"]] == ["Second", "First"]
    assert [h["version"] for h in hist["items"]] == ["2.0", "1.0"]
    resp = await c.post(
        f"/v1/records/patients/{p['id']}/rollback",
        json={"revision": p["revision"]},
        headers=auth(tok),
    )
    back = await resp.json()
    assert resp.status == 200, back
    assert back["name"] == "First" and back["version_major"] == 3
    assert back["revision"] not in (p["revision"],)
    resp = await c.post(
        f"/v1/records/patients/{p['id']}/rollback", json={"revision": "12345"}, headers=auth(tok)
    )
    assert resp.status == 404 and (await resp.json())["field"] == "revision"
    resp = await c.put(
        f"/v1/records/patients/{p['id']}/sync", json={"enabled": False}, headers=auth(tok)
    )
    assert (await resp.json())["sync_enabled"] is False
    off = await (
        await c.get("/v1/records/patients", params={"sync": "off"}, headers=auth(tok))
    ).json()
    assert [i["id"] for i in off["items"]] == [p["id"]]


async def test_saves_on_a_wal_site_write_their_own_history(local_api: Api) -> None:
    """With the WAL capture no trigger writes history: the API's saves write theirs in
    the save's transaction, so the record's history shows them at once (no replicator
    has read the WAL here)."""
    with local_api.db.connect(autocommit=True) as conn:
        conn.execute("UPDATE scsync_node SET capture = 'wal'")
    c, tok = local_api.client, token("editor")
    p = await local_api.create("patients", {"patient_code": "P1", "name": "First"}, tok)
    await c.patch(f"/v1/records/patients/{p['id']}", json={"name": "Second"}, headers=auth(tok))
    hist = await (await c.get(f"/v1/records/patients/{p['id']}/history", headers=auth(tok))).json()
    assert [h["data"]["name"] for h in hist["items"]] == ["Second", "First"]
    with local_api.db.connect() as conn:
        ops = conn.execute(
            "SELECT op FROM scsync_history WHERE row_id = %s ORDER BY seq", (int(p["id"]),)
        ).fetchall()
    assert ops == [("I",), ("U",)]


async def test_viewer_reads_but_cannot_write_and_accounts_need_admin(local_api: Api) -> None:
    c = local_api.client
    p = await local_api.create("patients", {"patient_code": "P1", "name": "A"}, token("editor"))
    viewer = token("viewer", name="vera")
    assert (await c.get(f"/v1/records/patients/{p['id']}", headers=auth(viewer))).status == 200
    resp = await c.patch(
        f"/v1/records/patients/{p['id']}", json={"name": "B"}, headers=auth(viewer)
    )
    assert resp.status == 403
    assert (await c.get("/v1/records/user_accounts", headers=auth(token("editor")))).status == 403
    admin = token("admin", name="root")
    resp = await c.post(
        "/v1/accounts",
        json={"username": "new", "password": "long enough pw", "role": "viewer"},
        headers=auth(admin),
    )
    u = await resp.json()
    assert resp.status == 201, u
    assert "password_hash" not in u and "password" not in u
    resp = await c.post(
        "/v1/accounts",
        json={"username": "boss", "password": "long enough pw", "role": "vendor_admin"},
        headers=auth(admin),
    )
    assert resp.status == 403 and (await resp.json())["field"] == "role"
    login = await c.post("/v1/auth/token", json={"username": "new", "password": "long enough pw"})
    assert login.status == 200


async def test_reference_to_another_sites_record_is_refused(cloud_api: Api) -> None:
    c = cloud_api.client
    theirs = await cloud_api.create(
        "patients", {"patient_code": "X", "name": "Other"}, ctoken("editor", site=2)
    )
    resp = await c.post(
        "/v1/records/images", json={"patient_id": theirs["id"]}, headers=auth(ctoken(site=1))
    )
    body = await resp.json()
    assert resp.status == 400 and body["field"] == "patient_id", body
    resp = await c.post(
        "/v1/records/images", json={"patient_id": "999999"}, headers=auth(ctoken(site=1))
    )
    assert resp.status == 400 and (await resp.json())["field"] == "patient_id"


async def test_conflicts_list_show_resolve(local_api: Api) -> None:
    import json

    c, tok = local_api.client, token("editor")
    p = await local_api.create("patients", {"patient_code": "P1", "name": "Local name"}, tok)
    cloud_row = {**p, "name": "Cloud name", "id": int(p["id"]), "revision": 123}
    with local_api.db.connect() as conn:
        conn.execute("UPDATE patients SET in_conflict = true WHERE id = %s", (int(p["id"]),))
        row = conn.execute(
            "INSERT INTO scsync_conflicts (table_name, row_id, site_id, local_revision,"
            " cloud_revision, local_row, cloud_row, detected_on)"
            " VALUES ('patients', %s, 1, %s, 123, %s, %s, 'local') RETURNING id",
            (int(p["id"]), int(p["revision"]), json.dumps(p), json.dumps(cloud_row)),
        ).fetchone()
        conn.commit()
    assert row is not None
    cid = str(row[0])
    listed = await (await c.get("/v1/conflicts", headers=auth(tok))).json()
    assert [i["id"] for i in listed["items"]] == [cid]
    shown = await (await c.get(f"/v1/conflicts/{cid}", headers=auth(tok))).json()
    assert shown["cloud_row"]["name"] == "Cloud name" and shown["status"] == "open"
    resp = await c.post(
        f"/v1/conflicts/{cid}/resolve", json={"keep": "sideways"}, headers=auth(tok)
    )
    assert resp.status == 400 and (await resp.json())["field"] == "keep"
    resp = await c.post(f"/v1/conflicts/{cid}/resolve", json={"keep": "cloud"}, headers=auth(tok))
    done = await resp.json()
    assert resp.status == 200, done
    assert done["status"] == "resolved" and done["resolution"] == "cloud"
    assert done["resolved_by"] == "local:1/alice" and done["new_revision"]
    now = await (await c.get(f"/v1/records/patients/{p['id']}", headers=auth(tok))).json()
    assert now["name"] == "Cloud name" and now["in_conflict"] is False
    resp = await c.post(f"/v1/conflicts/{cid}/resolve", json={"keep": "local"}, headers=auth(tok))
    assert resp.status == 409
    assert (await (await c.get("/v1/conflicts", headers=auth(tok))).json())["items"] == []


async def test_sync_policy_get_and_set(local_api: Api) -> None:
    c = local_api.client
    viewer, admin = token("viewer", name="vera"), token("admin", name="root")
    got = await (await c.get("/v1/sync/policy", headers=auth(viewer))).json()
    assert got["mode"] == "all" and got["old_data"] == "keep"
    body = {"mode": "selective", "modalities": ["CT"], "last_days": 365, "old_data": "backup"}
    assert (await c.put("/v1/sync/policy", json=body, headers=auth(viewer))).status == 403
    resp = await c.put("/v1/sync/policy", json=body, headers=auth(admin))
    assert resp.status == 200, await resp.json()
    got = await (await c.get("/v1/sync/policy", headers=auth(viewer))).json()
    assert (got["mode"], got["modalities"], got["last_days"], got["old_data"]) == (
        "selective",
        ["CT"],
        365,
        "backup",
    )
    with local_api.db.connect() as conn:
        stored = conn.execute("SELECT mode, modalities FROM scsync_file_policy").fetchone()
    assert stored == ("selective", ["CT"])
    resp = await c.put("/v1/sync/policy", json={"tables": ["nope"]}, headers=auth(admin))
    assert resp.status == 400 and (await resp.json())["field"] == "tables"


async def test_the_api_and_the_cli_accept_and_refuse_the_same_policies(local_api: Api) -> None:
    """One validation (schema/scope_policy.py): a table that bears no file is refused by
    PUT /v1/sync/policy as by `scsync policy set` (the API took ["patients"], which left
    every blob out of scope), and a bad value is named by its field."""
    from replicator.files import policy
    from replicator.files.errors import PolicyError
    from schema.scope_policy import ScopePolicy

    c, admin = local_api.client, token("admin", name="root")
    refused: list[tuple[dict[str, Any], str]] = [
        ({"mode": "selective", "tables": ["patients"]}, "tables"),
        ({"mode": "some"}, "mode"),
        ({"last_days": 0}, "last_days"),
        ({"old_data": "shred"}, "old_data"),
    ]
    for body, field in refused:
        resp = await c.put("/v1/sync/policy", json=body, headers=auth(admin))
        got = await resp.json()
        assert resp.status == 400 and got["field"] == field, (body, got)
        with pytest.raises(PolicyError):
            kwargs: dict[str, Any] = {
                k: tuple(v) if isinstance(v, list) else v for k, v in body.items()
            }
            policy.validate(ScopePolicy(**kwargs))
    body = {"mode": "selective", "tables": ["images"], "last_days": 30}
    resp = await c.put("/v1/sync/policy", json=body, headers=auth(admin))
    assert resp.status == 200, await resp.json()
    assert policy.validate(ScopePolicy(mode="selective", tables=("images",), last_days=30))


async def test_on_demand_fetch_of_a_remote_file(cloud_api: Api) -> None:
    c, tok = cloud_api.client, ctoken("viewer", site=1)
    writer = ctoken("editor", site=1)
    p = await cloud_api.create("patients", {"patient_code": "P", "name": "A"}, writer)
    sha = "ab" * 32
    img = await cloud_api.create("images", {"patient_id": p["id"], "blob_sha256": sha}, writer)
    assert img["blob_state"] == "remote"
    async with c.ws_connect("/ws", params={"token": tok}) as ws:
        await ws.receive_json(timeout=5)
        await ws.send_json({"type": "subscribe", "site": 1, "events": ["blob.requested"]})
        await ws.receive_json(timeout=5)
        resp = await c.post(f"/v1/records/images/{img['id']}/fetch", headers=auth(tok))
        body = await resp.json()
        assert resp.status == 202 and body["status"] == "requested", body
        ev = await ws.receive_json(timeout=5)
        assert ev["type"] == "blob.requested" and ev["data"]["sha256"] == sha
    with cloud_api.db.connect() as conn:
        rows = conn.execute(
            "SELECT site_id, sha256, table_name, row_id::text, state FROM scsync_blob_requests"
        ).fetchall()
    assert rows == [(1, sha, "images", img["id"], "open")]
    resp = await c.post(f"/v1/records/patients/{p['id']}/fetch", headers=auth(tok))
    assert resp.status == 404
