"""Routes are declared once (api/routes.py and the mounted apps' ROUTES): what the app
serves, what its OpenAPI document lists and what the security sweeps walk are the same
set, so no served route escapes the sweeps."""

from __future__ import annotations

import json
import re

import pytest
from aiohttp.test_utils import make_mocked_request

from api.app import make_app
from api.routes import all_routes
from api.settings import load_settings
from api.views import meta
from schema.auth import Side
from schema.web import served_routes
from tests.api.conftest import SECRET

CASES = [
    ("local", {}),
    ("cloud", {}),
    ("cloud", {"SCSYNC_API_S3_BUCKET": "b"}),
    ("cloud", {"SCSYNC_API_MOUNT_LOCKD": "false"}),
]


@pytest.mark.parametrize(("side", "env"), CASES)
async def test_every_served_route_is_documented_and_every_documented_one_served(
    side: Side, env: dict[str, str]
) -> None:
    settings = load_settings(
        side,
        env={
            "SCSYNC_API_DB_URL": "postgresql://scsync@127.0.0.1:1/unused",
            "SCSYNC_API_JWT_SECRET": SECRET,
            **env,
        },
    )
    app = make_app(side, settings)
    app.freeze()
    doc = json.loads(app[meta.OPENAPI_TEXT])
    reached: set[tuple[str, str]] = set()
    for path, item in doc["paths"].items():
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in item:
            match = await app.router.resolve(make_mocked_request(method.upper(), url, app=app))
            assert match.http_exception is None, (method, path, match.http_exception)
            reached.add((method, match.route.resource.canonical))  # type: ignore[union-attr]
    # Each served route is reached by a documented path (a template such as
    # /v1/records/{table} by each table's), and nothing else is served.
    assert served_routes(app) == reached
    declared = all_routes(
        side,
        lockd=settings.mount_lockd,
        blobs=settings.mount_blobs and bool(settings.s3_bucket),
    )
    assert {(r.method, r.path) for r in declared} == {
        (m, p) for p, item in doc["paths"].items() for m in item
    }
    assert {(r.method, r.served_path) for r in declared} == served_routes(app)


def test_the_blob_and_lock_endpoints_are_in_the_cloud_document_when_mounted() -> None:
    paths = {r.path for r in all_routes("cloud", lockd=True, blobs=True)}
    assert "/v1/locks/acquire" in paths
    assert "/v1/blobs/sites/{site_id}/blobs/{sha256}/upload" in paths
    assert not any(p.startswith(("/v1/locks", "/v1/blobs")) for p in _paths("cloud"))


def _paths(side: Side) -> set[str]:
    return {r.path for r in all_routes(side, lockd=False)}
