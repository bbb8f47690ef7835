"""Records of every synced table: list, create, get, update, delete, the per-record
sync switch, history, rollback, and the cloud's on-demand file fetch."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from api import state, store
from api.edit import refuse_if_leased
from api.errors import Conflict, Forbidden, NotFound, ValidationFailed
from api.http import (
    ok,
    path_id,
    principal,
    query_choice,
    query_id,
    query_int,
    read_object,
    require_writer,
    scope,
)
from api.records import (
    PATIENT_TABLES,
    TableSpec,
    convert_value,
    parse_body,
    parse_id,
    row_to_json,
    to_json_value,
)
from api.views.common import (
    MAX_PAGE,
    SYNC_STATES,
    _audit,
    _check_table_access,
    _json_columns,
    _site_filter,
    _spec,
)
from schema.auth import Principal
from schema.database import execute, fetch_value
from schema.events import EventType
from schema.tables import metadata_for

# --- records ------------------------------------------------------------------------


def _parse_time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an ISO 8601 date-time", field=name) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


async def list_records(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec)
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    patient = query_id(request, "patient_id")
    if patient is not None and not (spec.has_patient or spec.name == "patients"):
        raise ValidationFailed(f"{spec.name} has no patient", field="patient_id")
    modality = request.query.get("modality")
    if modality is not None and not spec.has_modality:
        raise ValidationFailed(f"{spec.name} has no modality", field="modality")
    if modality is not None and "\x00" in modality:
        raise ValidationFailed("modality must not contain NUL", field="modality")
    deleted_choice = query_choice(request, "deleted", ("true", "false", "any")) or "false"
    site = _site_filter(request, p)
    params: dict[str, Any] = {
        "site": site,
        "patient": patient,
        "modality": modality,
        "since": _parse_time(request, "since"),
        "until": _parse_time(request, "until"),
        "deleted": None if deleted_choice == "any" else deleted_choice == "true",
        "sync": query_choice(request, "sync", SYNC_STATES),
        "before": query_id(request, "cursor"),
        "limit": limit + 1,
    }
    async with store.transaction(request.app[state.POOL]) as conn:
        rows = await store.list_records(conn, spec, params)
        page = rows[:limit]
        if spec.name in PATIENT_TABLES:
            await _audit(
                conn,
                request,
                p,
                "list",
                spec,
                None,
                site,
                {"ids": [str(r["id"]) for r in page]},
            )
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    return ok({"items": [row_to_json(spec, r) for r in page], "next_cursor": next_cursor})


async def _check_references(
    conn: store.Conn, spec: TableSpec, values: dict[str, Any], site: int
) -> None:
    """A record may only reference records of its own site (ids are global)."""
    table = metadata_for(spec.side).tables[spec.name]
    for name, value in values.items():
        if value is None or name not in table.c:
            continue
        for fk in table.c[name].foreign_keys:
            ref_site = await store.ref_site(conn, fk.column.table.name, value)
            if ref_site != site:
                raise ValidationFailed(
                    f"{name} references no {fk.column.table.name} record of this site",
                    field=name,
                )


def _creation_site(request: web.Request, p: Principal) -> int:
    if request.app[state.SETTINGS].side == "local":
        return request.app[state.NODE_SITE]
    if p.site_id is not None:
        asked = query_int(request, "site_id", p.site_id, 0, 2**31 - 1)
        if asked != p.site_id:
            raise Forbidden("site_id is not your site")
        return p.site_id
    if "site_id" not in request.query:
        raise ValidationFailed("vendor admins name the site: ?site_id=", field="site_id")
    return query_int(request, "site_id", 0, 1, 2**31 - 1)


async def create_record(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec, write=True)
    require_writer(p)
    site = _creation_site(request, p)
    values = parse_body(spec, await read_object(request), partial=False)
    values["site_id"] = site
    async with store.transaction(request.app[state.POOL]) as conn:
        await _check_references(conn, spec, values, site)
        row = await store.insert_record(conn, spec, values, _json_columns(spec))
        await _audit(conn, request, p, "create", spec, row["id"], site)
    return ok(row_to_json(spec, row), status=201)


async def get_record(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec)
    row_id = path_id(request)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.get_record(conn, spec, row_id, scope(p))
        if spec.name in PATIENT_TABLES:
            await _audit(conn, request, p, "read", spec, row_id, row["site_id"])
    return ok(row_to_json(spec, row))


async def update_record(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec, write=True)
    require_writer(p)
    row_id = path_id(request)
    expected = query_id(request, "expected_revision")
    values = parse_body(spec, await read_object(request), partial=True)
    await _visible_and_free(request, p, spec, row_id)
    async with store.transaction(request.app[state.POOL]) as conn:
        current = await store.get_record(conn, spec, row_id, scope(p), for_update=True)
        if expected is not None and current["revision"] != expected:
            raise Conflict(
                f"the record changed: revision is {current['revision']}, not {expected}",
                field="expected_revision",
                revision=str(current["revision"]),
            )
        await _check_references(conn, spec, values, current["site_id"])
        row = await store.update_record(conn, spec, row_id, scope(p), values, _json_columns(spec))
        await _audit(
            conn, request, p, "update", spec, row_id, row["site_id"], {"fields": sorted(values)}
        )
    return ok(row_to_json(spec, row))


async def _visible_and_free(
    request: web.Request, p: Principal, spec: TableSpec, row_id: int
) -> None:
    """404 for a record the caller cannot see (before lockd is asked anything), then
    409 lease_busy when someone holds its edit lease."""
    async with store.transaction(request.app[state.POOL]) as conn:
        await store.get_record(conn, spec, row_id, scope(p))
    await refuse_if_leased(request, spec, row_id)


async def delete_record(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec, write=True)
    require_writer(p)
    row_id = path_id(request)
    await _visible_and_free(request, p, spec, row_id)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.simple_update(
            conn, "api_record_soft_delete", spec, {"id": row_id, "site": scope(p)}
        )
        await _audit(conn, request, p, "delete", spec, row_id, row["site_id"])
    return ok(row_to_json(spec, row))


async def set_sync(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec)
    require_writer(p)
    row_id = path_id(request)
    body = await read_object(request)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise ValidationFailed("enabled must be true or false", field="enabled")
    extra = set(body) - {"enabled"}
    if extra:
        raise ValidationFailed(f"unknown field {sorted(extra)[0]!r}", field=sorted(extra)[0])
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.simple_update(
            conn, "api_record_set_sync", spec, {"id": row_id, "site": scope(p), "enabled": enabled}
        )
        await _audit(
            conn, request, p, "sync_switch", spec, row_id, row["site_id"], {"enabled": enabled}
        )
    return ok(row_to_json(spec, row))


def _history_entry(spec: TableSpec, h: store.Row) -> dict[str, Any]:
    kinds = {c.name: c.kind for c in spec.readable}
    data = {k: to_json_value(kinds[k], v) for k, v in (h["row_data"] or {}).items() if k in kinds}
    return {
        "seq": h["seq"],
        "revision": str(h["revision"]),
        "version": f"{h['version_major']}.{h['version_minor']}",
        "op": h["op"],
        "origin": h["origin"],
        "saved_at": h["saved_at"].isoformat(),
        "data": data,
    }


async def history(request: web.Request) -> web.Response:
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec)
    row_id = path_id(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    async with store.transaction(request.app[state.POOL]) as conn:
        current = await store.get_record(conn, spec, row_id, scope(p))
        rows = await store.fetch_all(
            conn,
            store.q("api_history_list"),
            {"table": spec.name, "id": row_id, "site": scope(p), "limit": limit},
        )
        if spec.name in PATIENT_TABLES:
            await _audit(conn, request, p, "history", spec, row_id, current["site_id"])
    return ok({"items": [_history_entry(spec, h) for h in rows]})


async def rollback(request: web.Request) -> web.Response:
    """Restore an older revision's content as a new save (a new revision)."""
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec, write=True)
    require_writer(p)
    row_id = path_id(request)
    body = await read_object(request)
    if set(body) != {"revision"}:
        raise ValidationFailed('the body is {"revision": "<id>"}', field="revision")
    revision = parse_id(body["revision"], "revision")
    await _visible_and_free(request, p, spec, row_id)
    async with store.transaction(request.app[state.POOL]) as conn:
        current = await store.get_record(conn, spec, row_id, scope(p), for_update=True)
        old = await store.fetch_one(
            conn,
            store.q("api_history_revision"),
            {"table": spec.name, "id": row_id, "revision": revision, "site": scope(p)},
        )
        if old is None:
            raise NotFound(
                f"no revision {revision} of {spec.name} record {row_id}", field="revision"
            )
        data = old["row_data"]
        values: dict[str, Any] = {}
        for name in (*spec.writable, "deleted"):
            if name in data:
                values[name] = convert_value(spec.column(name), data[name])
        await _check_references(conn, spec, values, current["site_id"])
        row = await store.update_record(conn, spec, row_id, scope(p), values, _json_columns(spec))
        await _audit(
            conn, request, p, "rollback", spec, row_id, row["site_id"], {"to": str(revision)}
        )
    return ok(row_to_json(spec, row))


async def fetch_record(request: web.Request) -> web.Response:
    """Cloud: a client opens a record whose file is still only on the site (``remote``):
    ask the site's replicator for it (an on-demand request, served ahead of backfill;
    the same request as ``POST /v1/blobs/.../request``, docs/files.md)."""
    p = principal(request)
    spec = _spec(request)
    _check_table_access(p, spec)
    if spec.file_column is None:
        raise NotFound(f"{spec.name} records carry no file")
    row_id = path_id(request)
    pool = request.app[state.POOL]
    async with store.transaction(pool) as conn:
        row = await store.get_record(conn, spec, row_id, scope(p))
        if spec.name in PATIENT_TABLES:
            await _audit(conn, request, p, "fetch", spec, row_id, row["site_id"])
    sha = row.get("blob_sha256")
    if not sha:
        raise Conflict(f"{spec.name} record {row_id} has no file", field="blob_sha256")
    if row["blob_state"] == "uploaded":
        return ok({"status": "uploaded", "sha256": sha, "request_id": None})
    site = int(row["site_id"])
    async with store.transaction(pool, wake=False) as conn:
        req_id = int(
            await fetch_value(
                conn,
                "files_request_add",
                {
                    "site_id": site,
                    "sha256": sha,
                    "table_name": spec.name,
                    "row_id": row_id,
                    "requested_by": p.subject,
                },
            )
        )
        await execute(
            conn,
            "files_publish",
            {
                "site_id": site,
                "type": EventType.BLOB_REQUESTED,
                "table_name": spec.name,
                "row_id": row_id,
                "payload": json.dumps({"sha256": sha, "request_id": str(req_id)}),
            },
        )
    return ok({"status": "requested", "sha256": sha, "request_id": str(req_id)}, status=202)
