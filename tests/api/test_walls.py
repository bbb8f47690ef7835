"""Issue #15, the walls half: what one clinic's users may not do to another clinic's
data or to accounts, and what hostile input may not do to the cloud API.

Each test here failed on the code before its fix (see the commit that adds it)."""

from __future__ import annotations

from typing import Any

import jwt

from tests.api.conftest import Api, auth, token


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
    alice1 = token("editor", site=1, name="alice")
    alice2 = token("editor", site=2, name="alice")
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
