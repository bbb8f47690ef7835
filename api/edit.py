"""Edit sessions (SPEC "Editing", the seed's option 2): the client asks its server, the
server asks lockd, and on success the record shows as Editing on every client.

- cloud: the lease comes from the mounted lockd (``LeaseManager`` on the cloud DB);
  saves are fenced in the write transaction (``LeaseManager.save``). The lease events
  lockd writes become API events by a trigger (schema/sql/baseline_api_cloud.sql).
- local: the lease comes from the cloud's lockd over HTTP (``LockClient`` with the
  site's token); saves are ``lockd.local.save_locally`` on the local DB; the API
  publishes ``record.editing`` / ``record.saved`` / ``record.released`` in the local DB.
  When lockd cannot be reached: 503 ``lock_service_unreachable`` with
  ``offline_edit_allowed: true``; repeating with ``{"offline": true}`` opens an unfenced
  offline session (``lockd.offline``), marked as such in every answer and event, but
  only when this API's own attempt to reach lockd failed (within ``lockd_timeout_s``,
  else it tries again first): a lockd that answers is never bypassed.

The session handle given to the client is a signed token (schema.auth.issue_session:
HS256 with the API's secret, good only as this side's edit-session handle) holding the
lease id and fencing token, so any API instance can serve the next call, and the caller
must be the session's holder.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import psycopg
from aiohttp import web

from api import state, store
from api.errors import (
    ApiError,
    Forbidden,
    FromLockd,
    LockServiceUnreachable,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from api.http import actor, ok, path_id, principal, read_object, require_writer, scope
from api.records import PATIENT_TABLES, TableSpec, parse_body, refuse_account_write, table_spec
from lockd import errors as lockd_errors
from lockd.client import LockClient
from lockd.local import save_locally
from lockd.manager import LeaseManager, Owner
from lockd.models import Lease, LeaseState
from lockd.offline import close_offline, open_offline, save_offline
from schema.auth import AuthError, Principal, issue_session, verify_session
from schema.events import EventType

LEASES: Final = web.AppKey("lease_manager", LeaseManager)
LOCK_CLIENT: Final = web.AppKey("lock_client", LockClient)
SESSION_TTL_S: Final = 12 * 3600


def _from_lockd(exc: lockd_errors.LockdError) -> ApiError:
    if isinstance(exc, lockd_errors.LockServiceUnreachable):
        return LockServiceUnreachable(
            "the lock service is unreachable; you may edit offline (unfenced)",
            offline_edit_allowed=True,
        )
    if isinstance(exc, lockd_errors.Unauthorized):
        # The site's token, not the user's: a 401 would tell the user to sign in again.
        return ServiceUnavailable(
            "the cloud's lock service refused this site's token (setting 'lockd_token'): "
            f"{exc.message}"
        )
    if isinstance(exc, lockd_errors.NotEditable):
        return Forbidden(exc.message, field=exc.field)
    if isinstance(exc, lockd_errors.Forbidden | lockd_errors.RecordNotFound):
        return NotFound(exc.message, field=exc.field)
    extra = {k: v for k, v in exc.extra.items() if k != "lease_id"}
    return FromLockd(exc.status, exc.code, exc.message, exc.field, **extra)


@asynccontextmanager
async def _lockd_errors() -> AsyncIterator[None]:
    try:
        yield
    except lockd_errors.LockdError as exc:
        raise _from_lockd(exc) from exc


@asynccontextmanager
async def _tuple_conn(pool: store.Pool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection (tuple rows, as lockd's local functions expect) inside one
    transaction: the row lock of ``local_record`` lasts until the block ends."""
    async with store.db_errors(), pool.connection() as conn, conn.transaction():
        yield conn


def _sign(request: web.Request, claims: dict[str, Any]) -> str:
    settings = request.app[state.SETTINGS]
    return issue_session(settings.jwt_secret, settings.side, claims, SESSION_TTL_S)


def _session(request: web.Request, p: Principal, body: dict[str, Any]) -> dict[str, Any]:
    handle = body.get("session")
    if not isinstance(handle, str) or not handle:
        raise ValidationFailed("session is required", field="session")
    settings = request.app[state.SETTINGS]
    try:
        claims = verify_session(settings.jwt_secret, settings.side, handle)
    except AuthError as exc:
        raise ValidationFailed(f"session is not valid: {exc}", field="session") from exc
    if claims.get("holder") != actor(request, p):
        raise Forbidden("this edit session belongs to someone else")
    return claims


def _editor(request: web.Request, p: Principal) -> str:
    require_writer(p)
    if p.kind != "user":
        raise Forbidden("edit sessions are for users")
    return actor(request, p)


async def open_edit(request: web.Request) -> web.Response:
    p = principal(request)
    side = request.app[state.SETTINGS].side
    spec = table_spec(side, request.match_info["table"])
    if spec is None:
        raise NotFound(f"no synced table {request.match_info['table']!r}")
    row_id = path_id(request)
    holder = _editor(request, p)
    refuse_account_write(spec)
    body = await read_object(request) if request.body_exists else {}
    extra = set(body) - {"offline"}
    if extra:
        raise ValidationFailed(f"unknown field {sorted(extra)[0]!r}", field=sorted(extra)[0])
    offline = body.get("offline", False)
    if not isinstance(offline, bool):
        raise ValidationFailed("offline must be true or false", field="offline")
    pool = request.app[state.POOL]
    async with store.transaction(pool) as conn:
        row = await store.get_record(conn, spec, row_id, scope(p))
        if spec.name in PATIENT_TABLES:
            await store.audit(
                conn,
                actor=holder,
                side=side,
                site=row["site_id"],
                action="edit_open",
                table=spec.name,
                row_id=row_id,
                detail={"offline": offline},
            )
    site = int(row["site_id"])
    patient = _patient_of(spec, row)
    if side == "cloud":
        if offline:
            raise ValidationFailed("offline editing is for local clients", field="offline")
        async with _lockd_errors():
            got = await request.app[LEASES].try_acquire(
                spec.name, row_id, holder, scope_site=scope(p)
            )
        if isinstance(got, LeaseState):
            raise _busy(spec, row_id, got.holder, got.expires_in_ms)
        lease = got
        claims = {
            "table": spec.name,
            "row_id": str(row_id),
            "holder": holder,
            "site": site,
            "offline": False,
            "lease_id": str(lease.lease_id),
            "token": lease.token,
        }
        return ok(_session_json(request, claims, lease.expires_in_ms, lease.ttl_ms, row))
    local_lease = await _local_lease(request, spec, row_id, holder, offline=offline)
    if local_lease is None:
        # lockd could not be reached by this API's own attempt, and the user asked to
        # edit offline (unfenced): the apply rule catches a clash as a conflict.
        async with _tuple_conn(pool) as conn, _lockd_errors():
            off = await open_offline(conn, spec.name, row_id, holder)
        claims = {
            "table": spec.name,
            "row_id": str(row_id),
            "holder": holder,
            "site": site,
            "offline": True,
            "session_id": str(off.session_id),
        }
        await _publish(
            pool,
            site,
            EventType.RECORD_EDITING,
            spec,
            row_id,
            patient,
            {"by": "local", "holder": holder, "offline": True, "unfenced": True},
        )
        return ok(_session_json(request, claims, None, None, row))
    lease = local_lease
    claims = {
        "table": spec.name,
        "row_id": str(row_id),
        "holder": holder,
        "site": site,
        "offline": False,
        "lease_id": str(lease.lease_id),
        "token": lease.token,
    }
    await _publish(
        pool,
        site,
        EventType.RECORD_EDITING,
        spec,
        row_id,
        patient,
        {"by": "local", "holder": holder, "offline": False},
    )
    return ok(_session_json(request, claims, lease.expires_in_ms, lease.ttl_ms, row))


async def _local_lease(
    request: web.Request, spec: TableSpec, row_id: int, holder: str, *, offline: bool
) -> Lease | None:
    """The lease from the cloud's lockd; None when the caller asked for an offline edit
    and lockd is really unreachable: this API's own attempt failed, just now or within
    the last ``lockd_timeout_s``. A lockd that answers is never bypassed: a record held
    by someone else stays refused (409 naming the holder), a free one gets a fenced
    session even when offline was asked for."""
    client = request.app.get(LOCK_CLIENT)
    if client is None:
        if offline:
            return None
        raise LockServiceUnreachable(
            "no lock service is configured (setting 'lockd_url'); you may edit offline",
            offline_edit_allowed=True,
        )
    if offline and client.failed_within(client.timeout_s):
        return None
    try:
        return await client.acquire(spec.name, row_id, holder)
    except lockd_errors.LeaseBusy as exc:
        raise _busy(spec, row_id, exc.extra.get("holder"), exc.extra.get("expires_in_ms")) from exc
    except lockd_errors.LockServiceUnreachable as exc:
        if offline:
            return None
        raise _from_lockd(exc) from exc
    except lockd_errors.LockdError as exc:
        raise _from_lockd(exc) from exc


async def refuse_if_leased(request: web.Request, spec: TableSpec, row_id: int) -> None:
    """A plain write (PATCH, rollback, delete) while someone holds the record's lease is
    refused with lease_busy naming the holder: one editor at a time. Such writes are
    not fenced (edit sessions are); when the local side cannot reach lockd the write
    goes ahead and the replicator's apply rule catches a clash as a conflict."""
    state_: LeaseState | None = None
    try:
        if request.app[state.SETTINGS].side == "cloud":
            state_ = await request.app[LEASES].get(spec.name, row_id)
        else:
            client = request.app.get(LOCK_CLIENT)
            if client is not None:
                state_ = await client.get(spec.name, row_id)
    except (lockd_errors.LockServiceUnreachable, lockd_errors.LockdUnavailable):
        return
    except lockd_errors.LockdError as exc:
        raise _from_lockd(exc) from exc
    if state_ is not None and state_.status == "held":
        raise _busy(spec, row_id, state_.holder, state_.expires_in_ms)


def _busy(spec: TableSpec, row_id: int, holder: Any, expires_in_ms: Any) -> ApiError:
    by = None
    if isinstance(holder, str):
        by = (
            "local"
            if holder.startswith("local:")
            else "cloud"
            if holder.startswith("cloud:")
            else None
        )
    return FromLockd(
        409,
        "lease_busy",
        f"{spec.name} {row_id} is being edited by {holder}",
        None,
        holder=holder,
        editing_by=by,
        expires_in_ms=expires_in_ms,
    )


def _patient_of(spec: TableSpec, row: store.Row) -> int | None:
    if spec.name == "patients":
        return int(row["id"])
    value = row.get("patient_id")
    return None if value is None else int(value)


def _session_json(
    request: web.Request,
    claims: dict[str, Any],
    expires_in_ms: int | None,
    ttl_ms: int | None,
    row: store.Row,
) -> dict[str, Any]:
    return {
        "session": _sign(request, claims),
        "table": claims["table"],
        "record_id": claims["row_id"],
        "holder": claims["holder"],
        "offline": claims["offline"],
        "unfenced": claims["offline"],
        "fencing_token": claims.get("token"),
        "expires_in_ms": expires_in_ms,
        "ttl_ms": ttl_ms,
        "version": f"{row['version_major']}.{row['version_minor']}",
    }


async def _publish(
    pool: store.Pool,
    site: int,
    type: str,
    spec: TableSpec,
    row_id: int,
    patient: int | None,
    payload: dict[str, Any],
) -> None:
    async with store.transaction(pool) as conn:
        await store.publish(
            conn,
            site=site,
            type=type,
            table=spec.name,
            row_id=row_id,
            patient=patient,
            payload=payload,
        )


def _lease_of(claims: dict[str, Any]) -> tuple[uuid.UUID, int]:
    return uuid.UUID(str(claims["lease_id"])), int(claims["token"])


async def _claims(request: web.Request) -> tuple[Principal, dict[str, Any], dict[str, Any]]:
    p = principal(request)
    _editor(request, p)
    body = await read_object(request)
    return p, _session(request, p, body), body


def _lease_json(lease: Any) -> dict[str, Any]:
    return {"expires_in_ms": lease.expires_in_ms, "ttl_ms": lease.ttl_ms}


async def heartbeat(request: web.Request) -> web.Response:
    return await _renew(request, activity=False)


async def activity(request: web.Request) -> web.Response:
    return await _renew(request, activity=True)


async def _renew(request: web.Request, *, activity: bool) -> web.Response:
    _, claims, _ = await _claims(request)
    if claims["offline"]:
        return ok({"expires_in_ms": None, "ttl_ms": None, "offline": True})
    lease_id, token = _lease_of(claims)
    async with _lockd_errors():
        if request.app[state.SETTINGS].side == "cloud":
            manager, owner = request.app[LEASES], Owner.holder(claims["holder"])
            lease = await (
                manager.touch(lease_id, token, owner=owner)
                if activity
                else manager.renew(lease_id, token, owner=owner)
            )
        else:
            client = _client(request)
            lease = await (
                client.touch(lease_id, token) if activity else client.renew(lease_id, token)
            )
    return ok({**_lease_json(lease), "offline": False})


def _client(request: web.Request) -> LockClient:
    client = request.app.get(LOCK_CLIENT)
    if client is None:
        raise LockServiceUnreachable("no lock service is configured", offline_edit_allowed=True)
    return client


async def save(request: web.Request) -> web.Response:
    p, claims, body = await _claims(request)
    side = request.app[state.SETTINGS].side
    spec = table_spec(side, str(claims["table"]))
    assert spec is not None
    refuse_account_write(spec)
    changes = body.get("changes")
    if not isinstance(changes, dict):
        raise ValidationFailed("changes must be a JSON object", field="changes")
    parse_body(spec, changes, partial=True)  # 400 naming the field, as everywhere
    if "password" in changes:
        raise ValidationFailed("passwords are not edited in sessions", field="changes.password")
    extra = set(body) - {"session", "changes", "save_id"}
    if extra:
        raise ValidationFailed(f"unknown field {sorted(extra)[0]!r}", field=sorted(extra)[0])
    save_id = None
    if "save_id" in body:
        try:
            save_id = uuid.UUID(str(body["save_id"]))
        except ValueError:
            raise ValidationFailed("save_id must be a UUID", field="save_id") from None
    row_id = int(claims["row_id"])
    pool = request.app[state.POOL]
    holder = str(claims["holder"])
    if claims["offline"]:
        async with _tuple_conn(pool) as conn, _lockd_errors():
            applied = await save_offline(conn, uuid.UUID(str(claims["session_id"])), changes)
        status, changed = ("saved" if applied.changed else "unchanged"), applied.changed
        version = (applied.version_major, applied.version_minor)
        revision = applied.revision
    elif side == "cloud":
        lease_id, token = _lease_of(claims)
        async with _lockd_errors():
            res = await request.app[LEASES].save(
                lease_id,
                token,
                changes,
                table=spec.name,
                save_id=save_id,
                owner=Owner.holder(holder),
            )
        status, changed = res.status, res.changed
        version, revision = (res.version_major, res.version_minor), res.revision
    else:
        lease_id, token = _lease_of(claims)
        async with _tuple_conn(pool) as conn, _lockd_errors():
            local = await save_locally(
                conn, _client(request), lease_id, token, spec.name, row_id, changes
            )
        applied = local.applied
        status, changed = ("saved" if applied.changed else "unchanged"), applied.changed
        version, revision = (applied.version_major, applied.version_minor), applied.revision
    async with store.transaction(pool) as conn:
        row = await store.get_record(conn, spec, row_id, scope(p))
        await store.audit(
            conn,
            actor=holder,
            side=side,
            site=row["site_id"],
            action="edit_save",
            table=spec.name,
            row_id=row_id,
            detail={"fields": sorted(changes), "status": status},
        )
        if changed:
            await store.publish(
                conn,
                site=row["site_id"],
                type=EventType.RECORD_SAVED,
                table=spec.name,
                row_id=row_id,
                patient=_patient_of(spec, row),
                payload={
                    "by": side,
                    "holder": holder,
                    "version": f"{version[0]}.{version[1]}",
                    "revision": str(revision),
                    "offline": bool(claims["offline"]),
                },
            )
    return ok(
        {
            "status": status,
            "changed": changed,
            "version": f"{version[0]}.{version[1]}",
            "revision": str(revision),
            "offline": bool(claims["offline"]),
        }
    )


async def close(request: web.Request) -> web.Response:
    _, claims, _ = await _claims(request)
    side = request.app[state.SETTINGS].side
    spec = table_spec(side, str(claims["table"]))
    assert spec is not None
    row_id = int(claims["row_id"])
    pool = request.app[state.POOL]
    if claims["offline"]:
        async with _tuple_conn(pool) as conn, _lockd_errors():
            await close_offline(conn, uuid.UUID(str(claims["session_id"])))
    else:
        lease_id, token = _lease_of(claims)
        async with _lockd_errors():
            if side == "cloud":
                await request.app[LEASES].release(
                    lease_id, token, owner=Owner.holder(str(claims["holder"]))
                )
            else:
                await _client(request).release(lease_id, token)
    if side == "local":
        async with store.transaction(pool) as conn:
            row = await store.get_record(conn, spec, row_id, int(claims["site"]))
            await store.publish(
                conn,
                site=int(claims["site"]),
                type=EventType.RECORD_RELEASED,
                table=spec.name,
                row_id=row_id,
                patient=_patient_of(spec, row),
                payload={
                    "by": "local",
                    "holder": claims["holder"],
                    "offline": bool(claims["offline"]),
                },
            )
    return ok({"status": "closed"})
