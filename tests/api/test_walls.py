"""Issue #15, the walls half: what one clinic's users may not do to another clinic's
data or to accounts, and what hostile input may not do to the cloud API.

Each test here failed on the code before its fix (see the commit that adds it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from schema.auth import site_token
from scsync.embedded_pg import free_port
from tests.api.conftest import SECRET, Api, _client, add_user, auth, ctoken, token
from tests.api.test_edit import replicate
from tests.api.test_ws import next_of, recv, resubscribe, subscribe
from tests.pg import TestDatabase


async def _json(resp: Any) -> dict[str, Any]:
    body: dict[str, Any] = await resp.json()
    return body


# --- 1. lease holders name the site ---------------------------------------------------


async def test_same_username_in_two_clinics_cannot_use_each_others_lease(
    cloud_api: Api,
) -> None:
    """alice of site 1 and alice of site 2 are two people: neither the session handle
    nor the lease id + fencing token of one lets the other save, renew or release."""
    c = cloud_api.client
    alice1 = ctoken("editor", site=1, name="alice")
    alice2 = ctoken("editor", site=2, name="alice")
    p = await cloud_api.create("patients", {"patient_code": "W1", "name": "Kim"}, alice1)
    resp = await c.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(alice1))
    session = await _json(resp)
    assert resp.status == 200, session
    claims = jwt.decode(session["session"], options={"verify_signature": False})
    lease = {"lease_id": claims["lease_id"], "token": claims["token"]}

    # The session handle of site 1's alice, presented by site 2's alice.
    api_calls: tuple[tuple[str, dict[str, Any]], ...] = (
        ("save", {"changes": {"name": "Hijacked"}}),
        ("heartbeat", {}),
        ("activity", {}),
        ("close", {}),
    )
    for action, extra in api_calls:
        resp = await c.post(
            f"/v1/edit-sessions/{action}",
            json={"session": session["session"], **extra},
            headers=auth(alice2),
        )
        body = await _json(resp)
        assert resp.status == 403 and body["error"] == "forbidden", (action, body)
    # The lease id and fencing token, straight at lockd.
    lockd_calls: tuple[tuple[str, dict[str, Any]], ...] = (
        ("save", {"changes": {"name": "Hijacked"}}),
        ("renew", {}),
        ("touch", {}),
        ("begin_save", {"base_revision": int(p["revision"])}),
        ("release", {}),
    )
    for path, extra in lockd_calls:
        resp = await c.post(f"/v1/locks/{path}", json={**lease, **extra}, headers=auth(alice2))
        body = await _json(resp)
        assert resp.status == 409 and body["error"] == "lease_not_held", (path, body)
    # Nothing happened: the record is as it was and site 1's alice still holds it.
    resp = await c.get(f"/v1/records/patients/{p['id']}", headers=auth(alice1))
    assert (await _json(resp))["name"] == "Kim"
    resp = await c.get(f"/v1/locks/leases/patients/{p['id']}", headers=auth(alice1))
    held = await _json(resp)
    assert held["status"] == "held" and held["holder"] == session["holder"], held
    assert session["holder"] == "cloud:1/alice"
    resp = await c.post(
        "/v1/edit-sessions/save",
        json={"session": session["session"], "changes": {"name": "Kim Min"}},
        headers=auth(alice1),
    )
    assert resp.status == 200 and (await _json(resp))["version"] == "2.0"
    resp = await c.post(
        "/v1/edit-sessions/close", json={"session": session["session"]}, headers=auth(alice1)
    )
    assert resp.status == 200


# --- 2. accounts change only through /v1/accounts, by an admin of their site -------------


def _account_row(api: Api, account_id: int) -> tuple[Any, ...]:
    with api.db.connect() as conn:
        row = conn.execute(
            "SELECT role, password_hash, version_major FROM user_accounts WHERE id = %s",
            (account_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


async def test_editor_cannot_change_accounts_by_edit_session_lockd_save_or_patch(
    cloud_api: Api,
) -> None:
    c = cloud_api.client
    root_id = add_user(cloud_api.db, "root", "admin", site_id=1)
    eve_id = add_user(cloud_api.db, "eve", "editor", site_id=1)
    before = {i: _account_row(cloud_api, i) for i in (root_id, eve_id)}
    eve = ctoken("editor", site=1, name="eve")
    admin = ctoken("admin", site=1, name="root")
    # An edit session on an account is refused at once (no lease, nothing to save).
    for who in (eve, admin):
        resp = await c.post(f"/v1/records/user_accounts/{eve_id}/edit", headers=auth(who))
        body = await _json(resp)
        assert resp.status == 403 and body["field"] == "table", body
    # Straight at lockd: a lease may be taken, but no save touches the account.
    resp = await c.post(
        "/v1/locks/acquire", json={"table": "user_accounts", "row_id": eve_id}, headers=auth(eve)
    )
    lease = await _json(resp)
    assert resp.status == 200, lease
    for changes in (
        {"role": "vendor_admin"},
        {"password_hash": "scrypt$16384$8$1$c2FsdA==$aGFzaA=="},
        {"display_name": "harmless?"},
    ):
        resp = await c.post(
            "/v1/locks/save",
            json={"lease_id": lease["lease_id"], "token": lease["token"], "changes": changes},
            headers=auth(eve),
        )
        body = await _json(resp)
        assert resp.status == 403 and body["error"] == "not_editable", (changes, body)
    # REST writes of user_accounts: refused for everyone, admins included.
    for who in (eve, admin):
        for method, url, payload in (
            ("PATCH", f"/v1/records/user_accounts/{root_id}", {"display_name": "x"}),
            ("POST", "/v1/records/user_accounts", {"username": "x", "display_name": "x"}),
            ("DELETE", f"/v1/records/user_accounts/{root_id}", None),
        ):
            resp = await c.request(method, url, json=payload, headers=auth(who))
            body = await _json(resp)
            assert resp.status == 403, (method, url, body)
    # No other table has a role or password_hash to write either.
    p = await cloud_api.create("patients", {"patient_code": "W2", "name": "Lee"}, eve)
    for column in ("role", "password_hash"):
        resp = await c.patch(
            f"/v1/records/patients/{p['id']}", json={column: "admin"}, headers=auth(eve)
        )
        assert resp.status == 400 and (await _json(resp))["field"] == column
    assert {i: _account_row(cloud_api, i) for i in (root_id, eve_id)} == before


async def test_offline_edit_session_cannot_change_an_account(local_api: Api) -> None:
    """The local API with no lockd offers offline edits; never of an account."""
    c = local_api.client
    eve_id = add_user(local_api.db, "eve", "editor")
    before = _account_row(local_api, eve_id)
    eve = token("editor", site=1, name="eve")
    resp = await c.post(
        f"/v1/records/user_accounts/{eve_id}/edit", json={"offline": True}, headers=auth(eve)
    )
    body = await _json(resp)
    assert resp.status == 403 and body["field"] == "table", body
    assert _account_row(local_api, eve_id) == before


async def _sign_in(api: Api, username: str, password: str, site: int) -> int:
    resp = await api.client.post(
        "/v1/auth/token", json={"username": username, "password": password, "site_id": site}
    )
    return resp.status


async def test_account_endpoints_admin_of_the_site_never_above_own_role(
    cloud_api: Api,
) -> None:
    c = cloud_api.client
    admin1 = ctoken("admin", site=1, name="root")
    admin2 = ctoken("admin", site=2, name="root")
    vendor = ctoken("vendor_admin", site=None, name="ops")
    for who in (ctoken("editor", site=1, name="eve"), ctoken("viewer", site=1, name="vi")):
        assert (await c.get("/v1/accounts", headers=auth(who))).status == 403
        resp = await c.post(
            "/v1/accounts",
            json={"username": "x", "password": "long enough pw"},
            headers=auth(who),
        )
        assert resp.status == 403
    resp = await c.post(
        "/v1/accounts",
        json={"username": "nina", "password": "long enough pw", "role": "editor"},
        headers=auth(admin1),
    )
    nina = await _json(resp)
    assert resp.status == 201 and nina["site_id"] == 1 and nina["role"] == "editor", nina
    assert "password_hash" not in nina and nina["disabled"] is False
    assert await _sign_in(cloud_api, "nina", "long enough pw", 1) == 200
    # Never above one's own role: an admin grants at most admin.
    resp = await c.post(
        "/v1/accounts",
        json={"username": "boss", "password": "long enough pw", "role": "vendor_admin"},
        headers=auth(admin1),
    )
    assert resp.status == 403 and (await _json(resp))["field"] == "role"
    url = f"/v1/accounts/{nina['id']}"
    resp = await c.patch(url, json={"role": "vendor_admin"}, headers=auth(admin1))
    assert resp.status == 403 and (await _json(resp))["field"] == "role"
    resp = await c.patch(url, json={"role": "admin"}, headers=auth(admin1))
    assert resp.status == 200 and (await _json(resp))["role"] == "admin"
    resp = await c.patch(url, json={"password": "another long pw"}, headers=auth(admin1))
    assert resp.status == 200
    assert await _sign_in(cloud_api, "nina", "another long pw", 1) == 200
    # Another site's admin: no such account, no listing, no creation there.
    for method, path, payload in (
        ("PATCH", url, {"password": "hijacked password"}),
        ("PATCH", url, {"role": "viewer"}),
        ("POST", url + "/disable", None),
    ):
        resp = await c.request(method, path, json=payload, headers=auth(admin2))
        assert resp.status == 404, (method, path, await resp.text())
    assert (await c.get("/v1/accounts?site_id=1", headers=auth(admin2))).status == 403
    resp = await c.post(
        "/v1/accounts?site_id=1",
        json={"username": "mole", "password": "long enough pw"},
        headers=auth(admin2),
    )
    assert resp.status == 403
    listed = await _json(await c.get("/v1/accounts", headers=auth(admin2)))
    assert all(a["site_id"] == 2 for a in listed["items"])
    assert await _sign_in(cloud_api, "nina", "another long pw", 1) == 200
    # A vendor admin acts on any site, named by ?site_id=.
    resp = await c.post(
        "/v1/accounts?site_id=2",
        json={"username": "nina", "password": "long enough pw", "role": "admin"},
        headers=auth(vendor),
    )
    assert resp.status == 201 and (await _json(resp))["site_id"] == 2
    # Disabled: it can no longer sign in.
    resp = await c.post(url + "/disable", headers=auth(admin1))
    assert resp.status == 200 and (await _json(resp))["disabled"] is True
    assert await _sign_in(cloud_api, "nina", "another long pw", 1) == 401
    with cloud_api.db.connect() as conn:
        actions = conn.execute(
            "SELECT actor, action FROM scsync_audit WHERE table_name = 'user_accounts' ORDER BY seq"
        ).fetchall()
    assert ("cloud:1/root", "account_disable") in actions
    assert ("cloud:0/ops", "account_create") in actions


# --- 3. references across clinics -------------------------------------------------------


async def test_reference_to_another_clinics_record_is_refused_on_every_write_path(
    cloud_api: Api,
) -> None:
    """A save pointing at another site's record gets exactly the answer an id that does
    not exist gets (400 naming the column), by REST, edit session and lockd save."""
    c = cloud_api.client
    mine, theirs = ctoken("editor", site=1, name="alice"), ctoken("editor", site=2, name="bob")
    p1 = await cloud_api.create("patients", {"patient_code": "A", "name": "Mine"}, mine)
    p2 = await cloud_api.create("patients", {"patient_code": "B", "name": "Theirs"}, theirs)
    d2 = await cloud_api.create("doctors", {"name": "Their doctor"}, theirs)
    img = await cloud_api.create("images", {"patient_id": p1["id"]}, mine)
    missing = "999999999"
    cases = (("patient_id", p2["id"]), ("doctor_id", d2["id"]))

    async def answers(send: Any) -> None:
        for column, foreign in cases:
            status_f, body_f = await send({column: foreign})
            status_m, body_m = await send({column: missing})
            assert status_f == 400 and column in str(body_f["field"]), (column, body_f)
            assert (status_f, body_f) == (status_m, body_m), (body_f, body_m)

    # REST
    async def patch(changes: dict[str, Any]) -> tuple[int, Any]:
        resp = await c.patch(f"/v1/records/images/{img['id']}", json=changes, headers=auth(mine))
        return resp.status, await resp.json()

    await answers(patch)
    # An edit session of the cloud API.
    resp = await c.post(f"/v1/records/images/{img['id']}/edit", headers=auth(mine))
    session = await _json(resp)
    assert resp.status == 200, session

    async def edit_save(changes: dict[str, Any]) -> tuple[int, Any]:
        resp = await c.post(
            "/v1/edit-sessions/save",
            json={"session": session["session"], "changes": changes},
            headers=auth(mine),
        )
        return resp.status, await resp.json()

    await answers(edit_save)
    resp = await c.post(
        "/v1/edit-sessions/close", json={"session": session["session"]}, headers=auth(mine)
    )
    assert resp.status == 200
    # lockd's own save, with a site token (what a site's local API uses).
    site1 = site_token(SECRET, 1)
    resp = await c.post(
        "/v1/locks/acquire",
        json={"table": "images", "row_id": int(img["id"]), "holder": "local:1/alice"},
        headers=auth(site1),
    )
    lease = await _json(resp)
    assert resp.status == 200, lease

    async def lockd_save(changes: dict[str, Any]) -> tuple[int, Any]:
        resp = await c.post(
            "/v1/locks/save",
            json={"lease_id": lease["lease_id"], "token": lease["token"], "changes": changes},
            headers=auth(site1),
        )
        return resp.status, await resp.json()

    await answers(lockd_save)
    # The image still points at its own patient, no doctor; and a reference of its own
    # site is accepted on the same lease.
    d1 = await cloud_api.create("doctors", {"name": "My doctor"}, mine)
    status, body = await lockd_save({"doctor_id": d1["id"]})
    assert status == 200 and body["status"] == "saved", body
    with cloud_api.db.connect() as conn:
        row = conn.execute(
            "SELECT patient_id::text, doctor_id::text FROM images WHERE id = %s", (int(img["id"]),)
        ).fetchone()
    assert row == (p1["id"], d1["id"])


# --- 4. offline edits only when lockd is really unreachable ----------------------------


@pytest.fixture
async def local_with_lockd(local_db: TestDatabase, cloud_api: Api) -> AsyncIterator[Api]:
    url = str(cloud_api.client.make_url("/v1/locks"))
    async with _client(
        local_db, "local", lockd_url=url, lockd_token=site_token(SECRET, 1), lockd_timeout_s=1.0
    ) as local:
        yield local


async def test_offline_is_refused_while_lockd_answers_and_another_client_holds_it(
    local_with_lockd: Api, cloud_api: Api
) -> None:
    local = local_with_lockd
    alice = token("editor", site=1, name="alice")
    p = await local.create("patients", {"patient_code": "W4", "name": "Han"}, alice)
    replicate(p, cloud_api.db)
    bob = ctoken("editor", site=1, name="bob")
    resp = await cloud_api.client.post(f"/v1/records/patients/{p['id']}/edit", headers=auth(bob))
    bobs = await _json(resp)
    assert resp.status == 200, bobs
    url = f"/v1/records/patients/{p['id']}/edit"
    resp = await local.client.post(url, json={"offline": True}, headers=auth(alice))
    body = await _json(resp)
    assert resp.status == 409 and body["error"] == "lease_busy", body
    assert body["holder"] == "cloud:1/bob" and body["editing_by"] == "cloud"
    with local.db.connect() as conn:
        row = conn.execute("SELECT count(*) FROM scsync_offline_sessions").fetchone()
    assert row == (0,)
    # Once the record is free, asking for offline still gets a fenced lease: lockd answers.
    resp = await cloud_api.client.post(
        "/v1/edit-sessions/close", json={"session": bobs["session"]}, headers=auth(bob)
    )
    assert resp.status == 200
    resp = await local.client.post(url, json={"offline": True}, headers=auth(alice))
    session = await _json(resp)
    assert resp.status == 200 and session["offline"] is False, session
    assert isinstance(session["fencing_token"], int)


@pytest.fixture
async def local_without_lockd(local_db: TestDatabase) -> AsyncIterator[Api]:
    dead = f"http://127.0.0.1:{free_port()}/v1/locks"
    async with _client(
        local_db, "local", lockd_url=dead, lockd_token=site_token(SECRET, 1), lockd_timeout_s=1.0
    ) as api:
        yield api


async def test_offline_is_granted_after_the_apis_own_attempt_failed(
    local_without_lockd: Api,
) -> None:
    local = local_without_lockd
    alice = token("editor", site=1, name="alice")
    p1 = await local.create("patients", {"patient_code": "W5", "name": "Oh"}, alice)
    p2 = await local.create("patients", {"patient_code": "W6", "name": "Yu"}, alice)
    # The first attempt fails with the offer; offline is then granted.
    resp = await local.client.post(f"/v1/records/patients/{p1['id']}/edit", headers=auth(alice))
    body = await _json(resp)
    assert resp.status == 503 and body["error"] == "lock_service_unreachable", body
    assert body["offline_edit_allowed"] is True
    resp = await local.client.post(
        f"/v1/records/patients/{p1['id']}/edit", json={"offline": True}, headers=auth(alice)
    )
    session = await _json(resp)
    assert resp.status == 200 and session["offline"] is True and session["unfenced"], session
    # Asked for offline straight away: the API tries lockd itself first, and only its
    # failure opens the offline session.
    resp = await local.client.post(
        f"/v1/records/patients/{p2['id']}/edit", json={"offline": True}, headers=auth(alice)
    )
    session = await _json(resp)
    assert resp.status == 200 and session["offline"] is True, session


# --- 5. hostile input: WebSocket replay and subscriptions, nesting, bad ids -------------


@pytest.fixture
async def tight_ws(local_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(local_db, "local", ws_queue_size=8, ws_replay_limit=200) as api:
        yield api


@pytest.fixture
async def few_subscriptions(local_db: TestDatabase) -> AsyncIterator[Api]:
    async with _client(local_db, "local", ws_max_subscriptions=3) as api:
        yield api


async def test_replay_after_reconnect_pages_through_a_small_queue(tight_ws: Api) -> None:
    """Far more missed events than the socket's queue holds: all are replayed, in
    order, and the socket is not closed as a slow consumer."""
    for i in range(30):
        await tight_ws.create("doctors", {"name": f"d{i}"}, token())
    async with tight_ws.client.ws_connect(
        "/ws", params={"token": token("viewer"), "last_event_id": "0"}
    ) as ws:
        replayed, ack = await resubscribe(ws, site=1)
        assert ack["truncated"] is False and ack["replayed"] == len(replayed) >= 30
        ids = [e["id"] for e in replayed]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        await ws.send_json({"type": "ping"})
        assert (await next_of(ws, "pong"))["type"] == "pong"


async def test_subscriptions_per_socket_are_capped(few_subscriptions: Api) -> None:
    async with few_subscriptions.client.ws_connect("/ws", params={"token": token("viewer")}) as ws:
        await recv(ws)
        four = [{"table": "doctors", "id": str(i)} for i in range(1, 5)]
        err = await subscribe(ws, records=four)
        assert err["type"] == "error" and err["error"] == "too_many_subscriptions", err
        ok = await subscribe(ws, records=four[:2])
        assert ok["type"] == "subscribed" and len(ok["records"]) == 2
        err = await subscribe(ws, site=1, records=four[2:3])
        assert err["type"] == "error" and err["error"] == "too_many_subscriptions", err
        ok = await subscribe(ws, site=1)
        assert ok["type"] == "subscribed" and ok["sites"] == [1]


async def test_deep_json_and_bad_event_ids_are_400_not_500(cloud_api: Api) -> None:
    c = cloud_api.client
    editor = ctoken("editor", site=1)
    deep = b"[" * 30_000 + b"]" * 30_000  # under every body limit
    for path in ("/v1/records/patients", "/v1/locks/acquire", "/v1/auth/token"):
        resp = await c.post(path, data=deep, headers={**auth(editor), "Content-Type": "json"})
        body = await _json(resp)
        assert resp.status == 400, (path, body)
    # Parses, but nests deeper than anything a record holds.
    nested: Any = "x"
    for _ in range(200):
        nested = [nested]
    resp = await c.post(
        "/v1/records/settings", json={"key": "deep", "value": nested}, headers=auth(editor)
    )
    assert resp.status == 400 and (await _json(resp))["error"] == "malformed_json"
    for bad in ("abc", "-1", "1e3", "99999999999999999999"):
        resp = await c.get("/ws", params={"token": editor, "last_event_id": bad})
        body = await _json(resp)
        assert resp.status == 400 and body["field"] == "last_event_id", (bad, body)
    async with c.ws_connect("/ws", params={"token": editor}) as ws:
        await recv(ws)
        await ws.send_str("[" * 30_000)
        assert (await next_of(ws, "error"))["error"] == "malformed_json"
        err = await subscribe(ws, site=1, last_event_id="7")
        assert err["type"] == "error"
        await ws.send_json({"type": "ping"})
        assert (await next_of(ws, "pong"))["type"] == "pong"
