"""Conflicts: list, get with both versions, resolve."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api import state, store
from api.errors import Conflict, NotFound, ValidationFailed
from api.http import (
    actor,
    ok,
    path_id,
    principal,
    query_choice,
    query_id,
    query_int,
    read_object,
    require_admin,
    require_writer,
    scope,
)
from api.records import (
    ACCOUNT_TABLES,
    PATIENT_TABLES,
    table_spec,
    to_json_value,
)
from api.views.common import (
    MAX_PAGE,
    _audit,
    _site_filter,
)
from schema import conflicts
from schema.events import EventType

# --- conflicts ----------------------------------------------------------------------


def _conflict_json(r: store.Row, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(r["id"]),
        "table": r["table_name"],
        "record_id": str(r["row_id"]),
        "site_id": r["site_id"],
        "base_revision": to_json_value("bigint", r["base_revision"]),
        "local_revision": to_json_value("bigint", r["local_revision"]),
        "cloud_revision": to_json_value("bigint", r["cloud_revision"]),
        "detected_on": r["detected_on"],
        "detected_at": r["detected_at"].isoformat(),
        "status": r["status"],
        "resolution": r["resolution"],
        "resolved_by": r["resolved_by"],
        "resolved_at": to_json_value("datetime", r["resolved_at"]),
    }
    if full:
        for side in ("local_row", "cloud_row"):
            if r[side] is None:
                out[side] = None  # that side's version is a deletion
                continue
            data = dict(r[side])
            data.pop("password_hash", None)
            data.pop("local_path", None)
            out[side] = data
    return out


async def list_conflicts(request: web.Request) -> web.Response:
    p = principal(request)
    status = query_choice(request, "status", ("open", "resolved", "all")) or "open"
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    async with store.transaction(request.app[state.POOL]) as conn:
        rows = await store.fetch_all(
            conn,
            store.q("api_conflicts_list"),
            {
                "site": _site_filter(request, p),
                "status": None if status == "all" else status,
                "before": query_id(request, "cursor"),
                "limit": limit + 1,
            },
        )
    page = rows[:limit]
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return ok({"items": [_conflict_json(r, False) for r in page], "next_cursor": next_cursor})


async def get_conflict(request: web.Request) -> web.Response:
    p = principal(request)
    conflict_id = path_id(request)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(
            conn, store.q("api_conflict_get"), {"id": conflict_id, "site": scope(p)}
        )
        if row is None:
            raise NotFound(f"no conflict {conflict_id}")
        spec = table_spec(request.app[state.SETTINGS].side, row["table_name"])
        if spec is not None and spec.name in PATIENT_TABLES:
            await _audit(conn, request, p, "conflict_read", spec, row["row_id"], row["site_id"])
    return ok(_conflict_json(row, True))


async def resolve_conflict(request: web.Request) -> web.Response:
    """Keep the local or the cloud version (schema.conflicts: saved as a new revision
    that fast-forwards the other side)."""
    p = principal(request)
    require_writer(p)
    conflict_id = path_id(request)
    body = await read_object(request)
    keep = body.get("keep")
    if keep not in ("local", "cloud"):
        raise ValidationFailed("keep must be 'local' or 'cloud'", field="keep")
    extra = set(body) - {"keep"}
    if extra:
        raise ValidationFailed(f"unknown field {sorted(extra)[0]!r}", field=sorted(extra)[0])
    pool = request.app[state.POOL]
    async with store.transaction(pool) as conn:
        row = await store.fetch_one(
            conn, store.q("api_conflict_get"), {"id": conflict_id, "site": scope(p)}
        )
    if row is None:
        raise NotFound(f"no conflict {conflict_id}")
    if row["status"] != "open":
        raise Conflict(f"conflict {conflict_id} is already resolved", field="id")
    if row["table_name"] in ACCOUNT_TABLES:
        # Either version sets a password hash and a role: an account change.
        require_admin(p)
    who = actor(request, p)
    try:
        async with store.db_errors(), pool.connection() as conn:
            revision = await conflicts.resolve_conflict(conn, conflict_id, keep, who)
    except conflicts.ConflictNotFound as exc:
        raise NotFound(str(exc)) from exc
    except conflicts.ConflictError as exc:
        raise Conflict(str(exc)) from exc
    spec = table_spec(request.app[state.SETTINGS].side, row["table_name"])
    async with store.transaction(pool) as conn:
        if spec is not None:
            await _audit(
                conn,
                request,
                p,
                "conflict_resolve",
                spec,
                row["row_id"],
                row["site_id"],
                {"conflict": str(conflict_id), "keep": keep},
            )
        await store.publish(
            conn,
            site=row["site_id"],
            type=EventType.RECORD_CONFLICT,
            table=row["table_name"],
            row_id=row["row_id"],
            payload={"status": "resolved", "keep": keep, "by": who},
        )
        updated = await store.fetch_one(
            conn, store.q("api_conflict_get"), {"id": conflict_id, "site": scope(p)}
        )
    assert updated is not None
    out = _conflict_json(updated, True)
    out["new_revision"] = None if revision is None else str(revision)
    return ok(out)
