"""GET /metrics answers the monitoring's own token and nothing else: the cloud's figures
are per site, so neither a passer-by nor one clinic's user or site token reads them."""

from __future__ import annotations

import pytest

from api.errors import ConfigError
from api.settings import load_settings
from tests.api.conftest import METRICS_TOKEN, Api, _client, auth, ctoken, token
from tests.pg import TestDatabase


async def test_metrics_answer_only_the_metrics_token(cloud_api: Api) -> None:
    c = cloud_api.client
    ok = await c.get("/metrics", headers=auth(METRICS_TOKEN))
    assert ok.status == 200
    assert "scsync_websocket_clients" in await ok.text()
    refused = {
        "no token": {},
        "wrong token": auth("x" * 40),
        "a user's token": auth(ctoken("admin", site=1)),
        "a vendor admin's token": auth(ctoken("vendor_admin", site=None)),
        "not bearer": {"Authorization": f"Basic {METRICS_TOKEN}"},
    }
    for name, headers in refused.items():
        resp = await c.get("/metrics", headers=headers)
        body = await resp.json()
        assert resp.status == 401, (name, resp.status, body)
        assert body["error"] == "unauthorized" and "metrics token" in body["message"], body
        assert "scsync_" not in str(body)


@pytest.mark.parametrize("side", ["local", "cloud"])
async def test_metrics_are_off_without_a_metrics_token(
    side: str, local_db: TestDatabase, cloud_db: TestDatabase
) -> None:
    db = local_db if side == "local" else cloud_db
    async with _client(db, side, metrics_token="") as api:
        for headers in ({}, auth(token("admin", side=side, site=1))):  # type: ignore[arg-type]
            resp = await api.client.get("/metrics", headers=headers)
            body = await resp.json()
            assert resp.status == 404, body
            assert body["field"] == "metrics_token" and "metrics are off" in body["message"]


def test_a_short_metrics_token_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="metrics_token"):
        load_settings(
            "cloud",
            None,
            env={},
            db_url="postgresql://u@127.0.0.1/x",
            jwt_secret="s" * 40,
            metrics_token="short",
        )
