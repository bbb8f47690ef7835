"""REST handlers of both APIs: auth, records of every synced table, history and
rollback, the per-record sync switch, conflicts, sync status."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any, Final

from aiohttp import web
from psycopg.types.json import Jsonb

from api import state, store
from api.edit import refuse_if_leased
from api.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
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
from api.passwords import DUMMY_HASH, verify_password_async
from api.records import (
    ACCOUNT_TABLES,
    PATIENT_TABLES,
    TableSpec,
    convert_value,
    parse_body,
    parse_id,
    refuse_account_write,
    row_to_json,
    table_spec,
    to_json_value,
)
from schema import conflicts, scope_policy
from schema.auth import Principal, issue_token, site_token
from schema.sql import statement
from schema.tables import metadata_for

VENDOR_SITE: Final = 0  # user_accounts rows of the vendor's own staff (cloud)
USER_ROLES: Final = ("viewer", "editor", "admin")
SYNC_STATES: Final = ("synced", "pending", "conflict", "off")
MAX_PAGE: Final = 200
# Changing one of these revokes the account's tokens (schema/revocation.py).


def _spec(request: web.Request) -> TableSpec:
    side = request.app[state.SETTINGS].side
    spec = table_spec(side, request.match_info["table"])
    if spec is None:
        raise NotFound(f"no synced table {request.match_info['table']!r}")
    return spec


def _check_table_access(p: Principal, spec: TableSpec, *, write: bool = False) -> None:
    # Accounts (even without their hashes) are for administrators only.
    if spec.name == "user_accounts":
        require_admin(p)
    if write:
        refuse_account_write(spec)


async def _audit(
    conn: store.Conn,
    request: web.Request,
    p: Principal,
    action: str,
    spec: TableSpec,
    row_id: int | None,
    site: int | None,
    detail: dict[str, Any] | None = None,
) -> None:
    await store.audit(
        conn,
        actor=actor(request, p),
        side=request.app[state.SETTINGS].side,
        site=site,
        action=action,
        table=spec.name,
        row_id=row_id,
        detail=detail,
    )


def _json_columns(spec: TableSpec) -> frozenset[str]:
    return frozenset(c.name for c in spec.columns if c.kind == "json")


# --- meta ---------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return ok({"status": "ok", "side": request.app[state.SETTINGS].side})


async def me(request: web.Request) -> web.Response:
    p = principal(request)
    return ok(
        {
            "subject": p.subject,
            "kind": p.kind,
            "role": p.role,
            "site_id": p.site_id,
            "side": request.app[state.SETTINGS].side,
            "actor": actor(request, p),
        }
    )


# --- auth ---------------------------------------------------------------------------


async def auth_token(request: web.Request) -> web.Response:
    settings = request.app[state.SETTINGS]
    body = await read_object(request)
    for key in body:
        if key not in ("username", "password", "site_id", "site"):
            raise ValidationFailed(f"unknown field {key!r}", field=key)
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not username or "\x00" in username:
        raise ValidationFailed("username must be a non-empty string", field="username")
    if not isinstance(password, str) or not password:
        raise ValidationFailed("password must be a non-empty string", field="password")
    site_raw = body.get("site_id")
    if site_raw is not None and (
        isinstance(site_raw, bool) or not isinstance(site_raw, int) or not 0 <= site_raw < 2**31
    ):
        raise ValidationFailed("site_id must be a non-negative integer", field="site_id")
    site_name = body.get("site")
    if site_name is not None:
        # What a person types on a sign-in form: the clinic's name or number.
        if site_raw is not None:
            raise ValidationFailed("give site or site_id, not both", field="site")
        if (
            not isinstance(site_name, str)
            or not site_name.strip()
            or "\x00" in site_name
            or len(site_name) > 200
        ):
            raise ValidationFailed("site must be a clinic's name or number", field="site")
        site_raw = await _site_named(request, site_name.strip())
    if settings.side == "local":
        site = request.app[state.NODE_SITE]
        if site_raw is not None and site_raw != site:
            raise Unauthorized("invalid username or password")
    else:
        site = VENDOR_SITE if site_raw is None else site_raw
    # Counted before anything is looked up or hashed, so a burst of guesses is bounded
    # (429 with Retry-After) and scrypt never runs on the event loop.
    throttle = request.app[state.LOGINS]
    account, address = (site, username), request.remote or "unknown"
    attempt = throttle.begin(account, address)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(
            conn, store.q("api_auth_user"), {"username": username, "site_id": site}
        )
    stored = DUMMY_HASH if row is None else str(row["password_hash"])
    if not await verify_password_async(password, stored) or row is None or row["disabled"]:
        # A disabled account is told nothing more than a wrong password is.
        raise Unauthorized("invalid username or password")
    throttle.succeeded(account, address, attempt)
    role = str(row["role"])
    if role == "vendor_admin" and (settings.side != "cloud" or site != VENDOR_SITE):
        raise Unauthorized("invalid username or password")
    if role not in (*USER_ROLES, "vendor_admin"):
        raise Unauthorized("this account's role may not sign in")
    token_site = None if role == "vendor_admin" else site
    token = issue_token(
        settings.jwt_secret,
        side=settings.side,
        subject=f"user:{username}",
        kind="user",
        role=role,
        site_id=token_site,
        ttl_s=settings.token_ttl_s,
        version=int(row["token_version"]),
        account_id=int(row["id"]),
    )
    return ok(
        {
            "token": token,
            "token_type": "bearer",
            "expires_in": settings.token_ttl_s,
            "role": role,
            "site_id": token_site,
        }
    )


async def _site_named(request: web.Request, name: str) -> int | None:
    """The site a sign-in form names (a number, or on the cloud a registered name);
    None on the local side for a name (its users are its own site's anyway). An unknown
    name gives a site no account belongs to, so the answer is the usual 401."""
    if name.isdigit() and len(name) <= 9:
        return int(name)
    if request.app[state.SETTINGS].side == "local":
        return None
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(conn, store.q("api_site_by_name"), {"name": name})
    return -1 if row is None else int(row["site_id"])


async def issue_site_token(request: web.Request) -> web.Response:
    """A token for a site's replicator (vendor admins only, cloud)."""
    p = principal(request)
    if not p.is_vendor_admin:
        raise Forbidden("only vendor admins issue site tokens")
    site_id = path_id(request, "site_id")
    if site_id >= 2**31:
        raise NotFound(f"no site {site_id}")
    body = await read_object(request) if request.can_read_body else {}
    ttl = body.get("ttl_s", 30 * 86400)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 60 <= ttl <= 366 * 86400:
        raise ValidationFailed("ttl_s must be an integer of 60..31622400 seconds", field="ttl_s")
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(conn, store.q("api_site_enabled"), {"site_id": site_id})
        version = await store.fetch_one(conn, store.q("auth_site_version"), {"site_id": site_id})
    if row is None or not row["enabled"]:
        raise NotFound(f"no enabled site {site_id}")
    assert version is not None
    token = site_token(
        request.app[state.SETTINGS].jwt_secret, site_id, ttl_s=ttl, version=int(version["v"])
    )
    return ok({"token": token, "token_type": "bearer", "expires_in": ttl, "site_id": site_id})


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


def _site_filter(request: web.Request, p: Principal) -> int | None:
    site = scope(p)
    if site is None:
        requested = query_int(request, "site_id", -1, 0, 2**31 - 1)
        return None if requested < 0 else requested
    if "site_id" in request.query:
        requested = query_int(request, "site_id", site, 0, 2**31 - 1)
        if requested != site:
            raise Forbidden("site_id is not your site")
    return site


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
    engine = request.app[state.ENGINE]
    site = int(row["site_id"])

    def add_request() -> int:
        with engine.begin() as sa_conn:
            req_id = int(
                sa_conn.execute(
                    statement("files_request_add"),
                    {
                        "site_id": site,
                        "sha256": sha,
                        "table_name": spec.name,
                        "row_id": row_id,
                        "requested_by": p.subject,
                    },
                ).scalar_one()
            )
            sa_conn.execute(
                statement("files_publish"),
                {
                    "site_id": site,
                    "type": "blob.requested",
                    "table_name": spec.name,
                    "row_id": row_id,
                    "payload": json.dumps({"sha256": sha, "request_id": str(req_id)}),
                },
            )
        return req_id

    req_id = await asyncio.to_thread(add_request)
    return ok({"status": "requested", "sha256": sha, "request_id": str(req_id)}, status=202)


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
    engine = request.app[state.ENGINE]

    def resolve() -> int | None:
        with engine.begin() as sa_conn:
            return conflicts.resolve_conflict(sa_conn, conflict_id, keep, who)

    try:
        revision = await asyncio.to_thread(resolve)
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
            type="record.conflict",
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
            type="sync.policy",
            payload={"by": actor(request, p), "mode": mode},
        )
    return ok(_policy_json(row))


# --- status -------------------------------------------------------------------------


async def sync_status(request: web.Request) -> web.Response:
    p = principal(request)
    site = scope(p)
    now = dt.datetime.now(dt.UTC)
    async with store.transaction(request.app[state.POOL]) as conn:
        outbox = await store.fetch_one(conn, store.q("api_status_outbox"), {"site": site})
        conflicts = await store.fetch_one(conn, store.q("api_status_conflicts"), {"site": site})
        cursors = await store.fetch_all(conn, store.q("api_status_cursors"), {"site": site})
    assert outbox is not None and conflicts is not None
    oldest = outbox["oldest"]
    hub = request.app[state.HUB]
    bus = request.app.get(state.BUS)
    return ok(
        {
            "side": request.app[state.SETTINGS].side,
            "site_id": site,
            "outbox_depth": int(outbox["depth"]),
            "outbox_oldest_age_s": None if oldest is None else (now - oldest).total_seconds(),
            "open_conflicts": int(conflicts["open"]),
            "lanes": [
                {
                    "lane": c["lane"],
                    "site_id": c["site_id"],
                    "rows_applied": int(c["rows_applied"]),
                    "last_applied_at": to_json_value("datetime", c["last_applied_at"]),
                    "lag_s": None
                    if c["last_source_commit_at"] is None or c["last_applied_at"] is None
                    else (c["last_applied_at"] - c["last_source_commit_at"]).total_seconds(),
                }
                for c in cursors
            ],
            "last_event_id": hub.last_id,
            "websocket_clients": len(hub.subscribers),
            "bus": request.app[state.SETTINGS].bus,
            "relay_leader": None if bus is None else bus.is_leader,
        }
    )
