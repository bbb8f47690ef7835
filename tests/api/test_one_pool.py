"""The cloud API process holds one pool on its database (schema.database): the API's own
routes, the mounted sync, lockd and blob apps all draw from it, and its backends are
named (application_name) so an operator sees who they are."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from api.app import make_app
from schema.auth import site_token
from scsync.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint
from tests.api.conftest import PASSWORD, SECRET, add_user, auth, settings_for
from tests.pg import TestDatabase

POOL_MAX = 4
# The pools the sub-apps keep when each is served alone: none of them may appear.
OWN_POOLS = {"scsync-sync", "scsync-blobs", "scsync-lockd"}


def _backends(db: TestDatabase) -> dict[str, int]:
    """Backends on the database by application_name (this query's own excluded)."""
    with db.connect(autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " GROUP BY application_name"
        ).fetchall()
    return {str(name): int(str(n)) for name, n in rows}


async def test_the_cloud_api_and_its_mounted_apps_share_one_named_pool(
    cloud_db: TestDatabase, s3_endpoint: S3Endpoint
) -> None:
    from replicator.sites import register_site

    site = (await cloud_db.acall(register_site, "clinic-pool")).site_id
    add_user(cloud_db, "uma", "editor", site_id=site)
    bucket = f"scsync-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=bucket)
    settings = settings_for(
        cloud_db,
        "cloud",
        pool_min=1,
        pool_max=POOL_MAX,
        s3_bucket=bucket,
        s3_endpoint_url=s3_endpoint.url,
        s3_region=REGION,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
    )
    assert settings.mount_lockd and settings.mount_blobs
    unnamed_before = _backends(cloud_db).get("", 0)
    client: TestClient[Any, Any] = TestClient(TestServer(make_app("cloud", settings)))
    await client.start_server()
    try:
        resp = await client.post(
            "/v1/auth/token", json={"username": "uma", "password": PASSWORD, "site_id": site}
        )
        assert resp.status == 200, await resp.json()
        user = (await resp.json())["token"]
        site_tok = site_token(SECRET, site)
        # Each app once: the API's own routes, sync, lockd, blobs.
        assert (await client.get("/v1/me", headers=auth(user))).status == 200
        holder = {**auth(site_tok), "X-Scsync-Holder": "pool-test"}
        sync = await client.post("/v1/sync/status", json={}, headers=holder)
        assert sync.status == 200, await sync.text()
        lease = await client.get("/v1/locks/leases/patients/1", headers=auth(site_tok))
        assert lease.status not in (401, 500), await lease.text()
        blobs = await client.get(f"/v1/blobs/sites/{site}/requests", headers=auth(site_tok))
        assert blobs.status == 200, await blobs.text()
        backends = _backends(cloud_db)
    finally:
        await client.close()
    pooled = backends.get("scsync-api-cloud", 0)
    assert 1 <= pooled <= POOL_MAX, backends
    assert not OWN_POOLS & set(backends), backends
    # Every other backend of the process is a named listener; it opened no unnamed one.
    assert backends.get("", 0) == unnamed_before, backends
    others = {n for n in backends if n and n != "scsync-api-cloud"}
    assert all(n.startswith("scsync-") and n.endswith("listen") for n in others), backends
