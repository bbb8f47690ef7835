"""lockd over HTTP: an aiohttp sub-application, mounted by the cloud API at ``/v1/locks``
(``root.add_subapp("/v1/locks", make_app(...))``) or run alone (``scsync lockd run``).

Every request but ``GET /health`` carries ``Authorization: Bearer <JWT>`` (schema.auth),
a token the cloud issued (lockd shares the cloud's secret; a clinic's local tokens are
refused) that was not revoked since (schema/revocation.py):
- a **site** token acts for the site's local users: ``holder`` must be
  ``local:<its site>/<user>``, it reaches only its own site's records (403 otherwise) and
  only its own site's leases;
- a **user** token (cloud client) acts as ``cloud:<site>/<user>`` on its site's records; a
  ``vendor_admin`` reaches every site. Force-break needs role ``admin``/``vendor_admin``
  (or a site token, for the local admins behind it).

Errors are JSON ``{"error": code, "message": ..., "field": ...}`` with 400 (malformed JSON
or field; ``field`` names it), 401, 403, 404, 409 (busy / not held / expired / version
conflict), 413 (body over the limit) or 503 (database unreachable). A request that fails
changes no lease state: each operation is one database transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from lockd import schemas
from lockd.db import ERRORS, Pool, make_pool
from lockd.errors import (
    BadRequest,
    Forbidden,
    PayloadTooLarge,
)
from lockd.manager import LeaseManager, LockdConfig, Owner, check_holder
from schema import jsonbody
from schema.auth import Principal, TokenCache
from schema.revocation import DEFAULT_CHECK_S, Revocations
from schema.web import (
    PRINCIPAL,
    REVOCATIONS,
    TOKENS,
    Access,
    Handler,
    Route,
    add_routes,
    bearer_auth,
    error_middleware,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024
MAX_WAIT_MS = 30_000


@dataclass(frozen=True)
class WebSettings:
    jwt_secret: str
    max_body: int = DEFAULT_MAX_BODY
    run_sweeper: bool = True


MANAGER = web.AppKey("lockd_manager", LeaseManager)
SETTINGS = web.AppKey("lockd_settings", WebSettings)
POOL = web.AppKey("lockd_pool", Pool)


def make_app(
    *,
    jwt_secret: str,
    pool: Pool | None = None,
    db_url: str | None = None,
    config: LockdConfig | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    run_sweeper: bool = True,
    pool_max_size: int = 20,
    revocation_check_s: float = DEFAULT_CHECK_S,
) -> web.Application:
    """The lockd application. Give an open ``pool`` (the cloud API shares its own) or a
    ``db_url`` (the app then owns a pool for its lifetime). The sweeper runs in every
    instance; that is safe (each expiry is claimed by one sweep) and keeps expiry going
    while any instance is up."""
    if pool is None and db_url is None:
        raise ValueError("make_app needs a pool or a db_url")
    app = web.Application(
        middlewares=[error_middleware(log), bearer_auth(ROUTES, unavailable=ERRORS.maybe)]
    )
    app[SETTINGS] = WebSettings(jwt_secret, max_body, run_sweeper)
    # lockd is part of the cloud: it accepts the cloud's tokens (users' and sites').
    app[TOKENS] = TokenCache(jwt_secret, "cloud")
    app[REVOCATIONS] = Revocations(lambda: app[POOL].connection(), revocation_check_s)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        own = pool is None
        p = pool if pool is not None else make_pool(str(db_url), max_size=pool_max_size)
        if own:
            await p.open(wait=True)
        app[POOL] = p
        manager = LeaseManager(p, config)
        app[MANAGER] = manager
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        if isinstance(p.conninfo, str):  # a pool with a conninfo callable: polling only
            tasks.append(asyncio.create_task(manager.listen_for_releases(p.conninfo, stop)))
        if run_sweeper:
            tasks.append(asyncio.create_task(manager.run_sweeper(stop)))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if own:
                await p.close()

    app.cleanup_ctx.append(lifecycle)
    add_routes(app, ROUTES)
    return app


# --- request parsing ----------------------------------------------------------------


async def _body(request: web.Request) -> dict[str, Any]:
    limit = request.app[SETTINGS].max_body
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes")
    # read(n) returns what has arrived so far, so read until the end or over the limit.
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over {limit} bytes")
    raw = b"".join(chunks)
    try:
        data = jsonbody.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def _int(body: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name} is required", field=name)
        return None
    # Snowflake ids exceed JavaScript's safe integers, so decimal strings are accepted.
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise BadRequest(f"{name} must be a 64-bit integer", field=name)
    return value


def _req_int(body: dict[str, Any], name: str) -> int:
    value = _int(body, name)
    assert value is not None
    return value


def _str(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name} must be a non-empty string", field=name)
    return value


def _uuid(body: dict[str, Any], name: str, *, required: bool = True) -> uuid.UUID | None:
    value = body.get(name)
    if value is None and not required:
        return None
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) else _fail_uuid(name)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a UUID", field=name) from exc


def _fail_uuid(name: str) -> uuid.UUID:
    raise BadRequest(f"{name} must be a UUID", field=name)


def _lease_ref(body: dict[str, Any]) -> tuple[uuid.UUID, int]:
    lease_id = _uuid(body, "lease_id")
    assert lease_id is not None
    return lease_id, _req_int(body, "token")


def _ms_to_s(body: dict[str, Any], name: str, limit: int) -> float | None:
    value = _int(body, name, required=False)
    if value is None:
        return None
    if not 0 <= value <= limit:
        raise BadRequest(f"{name} must be between 0 and {limit}", field=name)
    return value / 1000


def _principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def _scope(p: Principal) -> int | None:
    return None if p.is_vendor_admin else p.site_id


def _owner(p: Principal) -> Owner:
    # Everyone, vendor admins included, acts on a lease only as its holder; ending
    # someone else's lease is what force-break (audited by its event) is for.
    if p.is_site:
        assert p.site_id is not None
        return Owner.site(p.site_id)
    return Owner.holder(p.holder)


def _holder(p: Principal, body: dict[str, Any]) -> str:
    if p.is_site:
        holder = check_holder(body.get("holder"))
        if not holder.startswith(f"local:{p.site_id}/"):
            raise Forbidden(
                f"a token of site {p.site_id} may only name holders local:{p.site_id}/<user>",
                field="holder",
            )
        return holder
    return check_holder(p.holder)


def _manager(request: web.Request) -> LeaseManager:
    return request.app[MANAGER]


# --- handlers -----------------------------------------------------------------------


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _acquire(request: web.Request) -> web.Response:
    body = await _body(request)
    p = _principal(request)
    table = _str(body, "table")
    row_id = _req_int(body, "row_id")
    holder = _holder(p, body)
    ttl_s = _ms_to_s(body, "ttl_ms", 86_400_000)
    wait_s = _ms_to_s(body, "wait_ms", MAX_WAIT_MS) or 0.0
    assert table is not None
    lease = await _manager(request).acquire(
        table, row_id, holder, scope_site=_scope(p), ttl_s=ttl_s, wait_s=wait_s
    )
    return web.json_response(lease.to_json())


async def _renew(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    ttl_s = _ms_to_s(body, "ttl_ms", 86_400_000)
    lease = await _manager(request).renew(
        lease_id, token, owner=_owner(_principal(request)), ttl_s=ttl_s
    )
    return web.json_response(lease.to_json())


async def _touch(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    lease = await _manager(request).touch(lease_id, token, owner=_owner(_principal(request)))
    return web.json_response(lease.to_json())


async def _release(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    await _manager(request).release(lease_id, token, owner=_owner(_principal(request)))
    return web.json_response({"status": "released", "lease_id": str(lease_id), "token": token})


async def _break(request: web.Request) -> web.Response:
    body = await _body(request)
    p = _principal(request)
    if not (p.is_site or p.role in ("admin", "vendor_admin")):
        raise Forbidden("force-break needs an admin")
    table = _str(body, "table")
    row_id = _req_int(body, "row_id")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 500:
        raise BadRequest("reason must be a string of at most 500 characters", field="reason")
    by = _holder(p, {"holder": body.get("by")}) if p.is_site else p.holder
    assert table is not None
    out = await _manager(request).force_break(
        table, row_id, by=by, reason=reason, scope_site=_scope(p)
    )
    return web.json_response(out)


async def _get(request: web.Request) -> web.Response:
    p = _principal(request)
    row_id = _req_int({"row_id": request.match_info["row_id"]}, "row_id")
    state = await _manager(request).get(request.match_info["table"], row_id, scope_site=_scope(p))
    return web.json_response({**state.raw, "editing_by": state.editing_by})


async def _save(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    changes = body.get("changes")
    if not isinstance(changes, dict):
        raise BadRequest("changes must be a JSON object", field="changes")
    result = await _manager(request).save(
        lease_id,
        token,
        changes,
        expected_revision=_int(body, "expected_revision", required=False),
        save_id=_uuid(body, "save_id", required=False),
        owner=_owner(_principal(request)),
    )
    return web.json_response(result.to_json())


async def _rollback(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    result = await _manager(request).rollback(
        lease_id,
        token,
        _req_int(body, "to_revision"),
        expected_revision=_int(body, "expected_revision", required=False),
        save_id=_uuid(body, "save_id", required=False),
        owner=_owner(_principal(request)),
    )
    return web.json_response(result.to_json())


async def _begin_save(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    grant = await _manager(request).begin_save(
        lease_id, token, _req_int(body, "base_revision"), owner=_owner(_principal(request))
    )
    return web.json_response(grant.to_json())


async def _end_save(request: web.Request) -> web.Response:
    body = await _body(request)
    lease_id, token = _lease_ref(body)
    changed = body.get("changed")
    if not isinstance(changed, bool):
        raise BadRequest("changed must be true or false", field="changed")
    await _manager(request).end_save(
        lease_id,
        token,
        _req_int(body, "new_revision"),
        changed,
        owner=_owner(_principal(request)),
    )
    return web.json_response({"status": "recorded"})


async def _events(request: web.Request) -> web.Response:
    p = _principal(request)
    after = _int(dict(request.query), "after", required=False) or 0
    limit = _int(dict(request.query), "limit", required=False) or 1000
    if not 1 <= limit <= 10_000:
        raise BadRequest("limit must be between 1 and 10000", field="limit")
    events = await _manager(request).events_since(after, site_id=_scope(p), limit=limit)
    return web.json_response(
        {
            "events": [
                {
                    "seq": e.seq,
                    "event": e.event,
                    "table": e.table,
                    "row_id": e.row_id,
                    "site_id": e.site_id,
                    "holder": e.holder,
                    "token": e.token,
                    "lease_id": e.lease_id,
                    **e.detail,
                }
                for e in events
            ]
        }
    )


def _post(
    path: str, handler: Handler, summary: str, request: dict[str, Any], response: dict[str, Any]
) -> Route:
    """A lockd operation: a JSON object in, a JSON object out (docs/lockd.md)."""
    return Route(
        "post",
        path,
        handler,
        "lockd_" + path.strip("/"),
        summary,
        response,
        request=request,
        tags=("locks",),
    )


# The bodies' fields: lockd/schemas.py, described in docs/lockd.md.
ROUTES: Final = (
    Route(
        "get",
        "/health",
        _health,
        "lockd_health",
        "lockd is up",
        schemas.HEALTH,
        access=Access.PUBLIC,
        tags=("locks",),
    ),
    _post(
        "/acquire",
        _acquire,
        "Take a record's lease (waiting up to wait_ms)",
        schemas.ACQUIRE,
        schemas.LEASE,
    ),
    _post("/renew", _renew, "Renew a lease held", schemas.RENEW, schemas.LEASE),
    _post(
        "/touch",
        _touch,
        "User activity on a lease held: resets its idle clock",
        schemas.LEASE_REF,
        schemas.LEASE,
    ),
    _post("/release", _release, "Give a lease back", schemas.LEASE_REF, schemas.RELEASED),
    _post(
        "/break",
        _break,
        "Force-break a record's lease (admins; audited)",
        schemas.BREAK,
        schemas.BROKEN,
    ),
    Route(
        "get",
        "/leases/{table}/{row_id}",
        _get,
        "lockd_lease",
        "A record's lease state and who is editing it",
        schemas.LEASE_STATE,
        params=(
            {"name": "table", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "row_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": r"^[0-9]{1,19}$"},
            },
        ),
        tags=("locks",),
    ),
    _post(
        "/save",
        _save,
        "Save changes under the lease (fenced by its token)",
        schemas.SAVE,
        schemas.SAVE_RESULT,
    ),
    _post(
        "/rollback",
        _rollback,
        "Restore an older revision under the lease",
        schemas.ROLLBACK,
        schemas.SAVE_RESULT,
    ),
    _post(
        "/begin_save",
        _begin_save,
        "Start a save made by the local API (A.B versions)",
        schemas.BEGIN_SAVE,
        schemas.SAVE_GRANT,
    ),
    _post(
        "/end_save",
        _end_save,
        "Record the outcome of a begun save",
        schemas.END_SAVE,
        schemas.RECORDED,
    ),
    Route(
        "get",
        "/events",
        _events,
        "lockd_events",
        "Lease events after a sequence number",
        schemas.EVENTS,
        params=(
            {
                "name": "after",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "pattern": r"^[0-9]{1,19}$"},
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
            },
        ),
        tags=("locks",),
    ),
)


def run(
    *,
    host: str,
    port: int,
    db_url: str,
    jwt_secret: str,
    config: LockdConfig | None = None,
    prefix: str = "/v1/locks",
    reuse_port: bool = False,
    revocation_check_s: float = DEFAULT_CHECK_S,
) -> None:
    """Serve lockd alone (``scsync lockd run``) until SIGINT/SIGTERM."""
    import uvloop

    root = web.Application()
    root.add_subapp(
        prefix,
        make_app(
            jwt_secret=jwt_secret,
            db_url=db_url,
            config=config,
            revocation_check_s=revocation_check_s,
        ),
    )
    web.run_app(
        root,
        host=host,
        port=port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
        reuse_port=reuse_port,
    )
