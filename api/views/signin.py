"""Sign-in (``/v1/auth/token``), site tokens (``/v1/sites/{site_id}/token``) and
``/v1/me``."""

from __future__ import annotations

from aiohttp import web

from api import state, store
from api.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from api.http import (
    actor,
    ok,
    path_id,
    principal,
    read_object,
)
from api.passwords import DUMMY_HASH, verify_password_async
from api.views.common import (
    USER_ROLES,
    VENDOR_SITE,
)
from schema.auth import issue_token, site_token


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
