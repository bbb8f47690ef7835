"""Request helpers shared by the views: the caller's identity, JSON bodies, query
parameters, JSON responses."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from api import state
from api.errors import (
    Forbidden,
    MalformedJson,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from api.records import parse_id
from schema import jsonbody
from schema.auth import AuthError, Principal, bearer
from schema.web import PRINCIPAL, REVOCATIONS, TOKENS

WRITER_ROLES = frozenset({"editor", "admin", "vendor_admin", "site"})
ADMIN_ROLES = frozenset({"admin", "vendor_admin", "site"})


def verify(request: web.Request, token: str) -> Principal:
    try:
        p = request.app[TOKENS].principal(token)
    except AuthError as exc:
        raise Unauthorized(str(exc)) from exc
    admit_this_site(request, p)
    return p


def admit_this_site(request: web.Request, p: Principal) -> None:
    """A local API serves one site; a token of another site is not ours (401)."""
    if request.app[state.SETTINGS].side == "local" and p.site_id != request.app[state.NODE_SITE]:
        raise Unauthorized("token is not for this site")


async def check_revoked(request: web.Request, p: Principal) -> None:
    """401 when the token of `p` was revoked (schema/revocation.py)."""
    from api.store import db_errors

    try:
        async with db_errors():
            await request.app[REVOCATIONS].check(p)
    except AuthError as exc:
        raise Unauthorized(str(exc)) from exc


def principal(request: web.Request) -> Principal:
    """The caller, as the app's bearer_auth middleware verified it (api/app.py); a
    handler of a route it leaves alone verifies the token itself."""
    if PRINCIPAL in request:
        return request[PRINCIPAL]
    try:
        token = bearer(request.headers.get("Authorization"))
    except AuthError as exc:
        raise Unauthorized(str(exc)) from exc
    return verify(request, token)


def scope(p: Principal) -> int | None:
    """The site every query of this caller is limited to; None for vendor admins."""
    return None if p.is_vendor_admin else p.site_id


def require_writer(p: Principal) -> None:
    if p.role not in WRITER_ROLES:
        raise Forbidden(f"role {p.role!r} may not change records")


def require_admin(p: Principal) -> None:
    if p.role not in ADMIN_ROLES:
        raise Forbidden(f"role {p.role!r} may not do this")


def actor(request: web.Request, p: Principal) -> str:
    """Who, as written in the audit log and lease holders: ``local:<site>/<user>``,
    ``cloud:<site>/<user>`` or ``site:<id>``. A username is unique only within its site,
    so every name carries the site (0: the vendor's staff)."""
    if p.kind == "site":
        return f"site:{p.site_id}"
    name = p.subject.removeprefix("user:")
    if request.app[state.SETTINGS].side == "local":
        return f"local:{p.site_id}/{name}"
    return p.holder


async def read_json(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(
            f"the body exceeds the limit of {request.app[state.SETTINGS].client_max_size} bytes"
        ) from exc
    if not raw.strip():
        raise MalformedJson("a JSON body is required")
    try:
        return jsonbody.loads(raw)
    except UnicodeDecodeError as exc:
        raise MalformedJson("the body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise MalformedJson(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except jsonbody.JsonTooDeep as exc:
        raise MalformedJson(f"malformed JSON: {exc}") from exc


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    return body


def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer", field=name) from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be between {lo} and {hi}", field=name)
    return value


def query_id(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    return None if raw is None else parse_id(raw, name)


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in choices:
        raise ValidationFailed(f"{name} must be one of {', '.join(choices)}", field=name)
    return raw


def path_id(request: web.Request, name: str = "id") -> int:
    return parse_id(request.match_info[name], name)


def ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)
