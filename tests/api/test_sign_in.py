"""Issue #18, item 5: a clinic user signs in to the cloud API by the clinic's name (what
the status page's form sends); the vendor's accounts without a clinic."""

from __future__ import annotations

from typing import Any

from replicator.sites import register_site
from tests.api.conftest import PASSWORD, Api, add_user


async def _sign_in(api: Api, **body: Any) -> tuple[int, Any]:
    resp = await api.client.post("/v1/auth/token", json=body)
    return resp.status, await resp.json()


async def test_clinic_user_signs_in_to_the_cloud_by_clinic_name(cloud_api: Api) -> None:
    await cloud_api.db.acall(register_site, "clinic-north")
    await cloud_api.db.acall(register_site, "clinic-south")
    add_user(cloud_api.db, "bob", "editor", site_id=1)
    add_user(cloud_api.db, "bob", "viewer", site_id=2)
    add_user(cloud_api.db, "vendor", "vendor_admin", site_id=0)
    for site, expected in (("clinic-north", 1), (" clinic-south ", 2), ("2", 2)):
        status, body = await _sign_in(cloud_api, username="bob", password=PASSWORD, site=site)
        assert status == 200 and body["site_id"] == expected, body
    # Without a clinic only a vendor account is found: bob is not one.
    status, body = await _sign_in(cloud_api, username="bob", password=PASSWORD)
    assert status == 401 and body["message"] == "invalid username or password"
    status, body = await _sign_in(cloud_api, username="vendor", password=PASSWORD)
    assert status == 200 and body["role"] == "vendor_admin" and body["site_id"] is None
    # An unknown clinic is the same 401 as a wrong password; bad input is a clear 400.
    status, body = await _sign_in(cloud_api, username="bob", password=PASSWORD, site="nowhere")
    assert status == 401 and body["message"] == "invalid username or password"
    for bad in ({"site": ""}, {"site": 7}, {"site": "clinic-north", "site_id": 1}):
        status, body = await _sign_in(cloud_api, username="bob", password=PASSWORD, **bad)
        assert status == 400 and body["field"] == "site", body


async def test_local_sign_in_accepts_its_own_site_number_only(local_api: Api) -> None:
    add_user(local_api.db, "alice", "editor")
    status, _ = await _sign_in(local_api, username="alice", password=PASSWORD, site="1")
    assert status == 200
    status, _ = await _sign_in(local_api, username="alice", password=PASSWORD, site="2")
    assert status == 401
