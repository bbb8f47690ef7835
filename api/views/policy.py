"""The site's sync scope (``/v1/sync/policy``, local side)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from psycopg.types.json import Jsonb

from api import state, store
from api.errors import ValidationFailed
from api.http import (
    actor,
    ok,
    principal,
    read_object,
    require_admin,
)
from api.records import (
    to_json_value,
)
from schema import scope_policy
from schema.events import EventType

# --- sync policy (local) -------------------------------------------------------------

POLICY_DEFAULT: Final[dict[str, Any]] = {
    "mode": "all",
    "tables": [],
    "modalities": [],
    "since_date": None,
    "last_days": None,
    "old_data": "keep",
    "updated_at": None,
}


def _policy_json(row: store.Row | None) -> dict[str, Any]:
    if row is None:
        return dict(POLICY_DEFAULT)
    return {
        "mode": row["mode"],
        "tables": list(row["tables"]),
        "modalities": list(row["modalities"]),
        "since_date": to_json_value("date", row["since_date"]),
        "last_days": row["last_days"],
        "old_data": row["old_data"],
        "updated_at": to_json_value("datetime", row["updated_at"]),
    }


async def get_policy(request: web.Request) -> web.Response:
    principal(request)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(conn, store.q("api_policy_get"), {})
    return ok(_policy_json(row))


async def put_policy(request: web.Request) -> web.Response:
    """Store the site's sync scope (what crosses from now on). Applying the old-data
    option to records already in the cloud is `scsync policy set` (docs/files.md)."""
    p = principal(request)
    require_admin(p)
    body = await read_object(request)
    # The one validation `scsync policy set` uses too (schema/scope_policy.py).
    try:
        policy = scope_policy.from_json(body)
    except scope_policy.PolicyInvalid as exc:
        raise ValidationFailed(str(exc), field=exc.field) from exc
    mode = policy.mode
    params = {
        "mode": policy.mode,
        "tables": Jsonb(list(policy.tables)),
        "modalities": Jsonb(list(policy.modalities)),
        "since_date": policy.since_date,
        "last_days": policy.last_days,
        "old_data": policy.old_data,
    }
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(conn, store.q("api_policy_put"), params)
        await store.publish(
            conn,
            site=request.app[state.NODE_SITE],
            type=EventType.SYNC_POLICY,
            payload={"by": actor(request, p), "mode": mode},
        )
    return ok(_policy_json(row))
