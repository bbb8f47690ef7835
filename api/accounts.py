"""Account endpoints, ``/v1/accounts``: the only way ``user_accounts`` rows change.

Record writes (``/v1/records/user_accounts``), edit sessions and lockd saves refuse
accounts, and no table's ``password_hash`` or ``role`` is editable anywhere else
(api/records.py ACCOUNT_COLUMNS, lockd/records.py NOT_EDITABLE, and the SQL function
``scsync_lockd_apply`` itself). Here:

- the caller is a user with role ``admin`` (their own site's accounts) or
  ``vendor_admin`` (any site; ``?site_id=`` names it); an account of another site is a
  404, as for every record;
- nobody grants a role above their own, nor changes an account whose role is above
  their own; ``vendor_admin`` accounts live only at the vendor's site 0 of the cloud;
- passwords are hashed off the event loop (api/passwords.py); every change is audited
  with the fields it named, never their values;
- disabling refuses the account's sign-in and revokes every token it holds on this
  side (within ``revocation_check_s``, schema/revocation.py); enabling lets it sign in
  again, with new tokens only; nobody disables their own account. Deleting an account
  (the replicated ``deleted`` flag) revokes its tokens on both sides.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from api import state, store
from api.errors import Forbidden, ValidationFailed
from api.http import actor, ok, path_id, principal, query_id, query_int, read_object, scope
from api.passwords import hash_password_async
from api.records import TableSpec, convert_value, row_to_json, table_spec
from schema.auth import Principal
from schema.columns import ACCOUNT_COLUMNS
from schema.revocation import bump_account
from schema.web import REVOCATIONS

TABLE: Final = "user_accounts"
VENDOR_SITE: Final = 0
ROLE_RANK: Final[dict[str, int]] = {"viewer": 0, "editor": 1, "admin": 2, "vendor_admin": 3}
MAX_PAGE: Final = 200
# Content columns an admin may set besides the password and the role.
PROFILE_COLUMNS: Final = ("display_name", "doctor_id")
# A change of these (credentials and privileges) revokes the account's tokens.
REVOKING_FIELDS: Final = ACCOUNT_COLUMNS


def _spec(request: web.Request) -> TableSpec:
    spec = table_spec(request.app[state.SETTINGS].side, TABLE)
    assert spec is not None
    return spec


def _admin(request: web.Request) -> Principal:
    p = principal(request)
    if p.kind != "user" or p.role not in ("admin", "vendor_admin"):
        raise Forbidden("accounts are managed by an admin of the site")
    return p


def _site_of_request(request: web.Request, p: Principal) -> int:
    """The site a new account (or a listing) is for: the caller's own, or for a vendor
    admin the one named by ``?site_id=`` (default: the vendor's own site 0)."""
    if request.app[state.SETTINGS].side == "local":
        site: int = request.app[state.NODE_SITE]
        return site
    asked = query_int(request, "site_id", -1, 0, 2**31 - 1)
    if p.is_vendor_admin:
        return VENDOR_SITE if asked < 0 else asked
    assert p.site_id is not None
    if asked >= 0 and asked != p.site_id:
        raise Forbidden("site_id is not your site", field="site_id")
    return p.site_id


def _check_role(request: web.Request, p: Principal, role: Any, site: int) -> str:
    if not isinstance(role, str) or role not in ROLE_RANK:
        raise ValidationFailed(f"role must be one of {', '.join(ROLE_RANK)}", field="role")
    if ROLE_RANK[role] > ROLE_RANK[p.role]:
        raise Forbidden(f"you may not grant a role above your own ({p.role})", field="role")
    vendor_site = request.app[state.SETTINGS].side == "cloud" and site == VENDOR_SITE
    if (role == "vendor_admin") != vendor_site:
        raise ValidationFailed(
            "vendor_admin is the role of the vendor's accounts (cloud, site 0) only",
            field="role",
        )
    return role


async def _password(value: Any) -> str:
    if not isinstance(value, str) or "\x00" in value or not 8 <= len(value) <= 1024:
        raise ValidationFailed("password must be 8..1024 characters", field="password")
    return await hash_password_async(value)


def _profile(spec: TableSpec, body: dict[str, Any]) -> dict[str, Any]:
    return {k: convert_value(spec.column(k), body[k]) for k in PROFILE_COLUMNS if k in body}


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValidationFailed(f"unknown or read-only field {extra[0]!r}", field=extra[0])


async def _check_doctor(conn: store.Conn, values: dict[str, Any], site: int) -> None:
    doctor = values.get("doctor_id")
    if doctor is not None and await store.ref_site(conn, "doctors", doctor) != site:
        raise ValidationFailed(
            "doctor_id references no doctors record of this site", field="doctor_id"
        )


async def _audit(
    conn: store.Conn, request: web.Request, p: Principal, action: str, row: store.Row, **d: Any
) -> None:
    await store.audit(
        conn,
        actor=actor(request, p),
        side=request.app[state.SETTINGS].side,
        site=int(row["site_id"]),
        action=action,
        table=TABLE,
        row_id=int(row["id"]),
        detail=d or None,
    )


async def list_accounts(request: web.Request) -> web.Response:
    p = _admin(request)
    spec = _spec(request)
    # A vendor admin sees every site's accounts unless ?site_id= names one.
    everyone = p.is_vendor_admin and "site_id" not in request.query
    site = None if everyone else _site_of_request(request, p)
    limit = query_int(request, "limit", 50, 1, MAX_PAGE)
    params = {
        "site": site,
        "patient": None,
        "modality": None,
        "since": None,
        "until": None,
        "deleted": None,
        "sync": None,
        "before": query_id(request, "cursor"),
        "limit": limit + 1,
    }
    async with store.transaction(request.app[state.POOL]) as conn:
        rows = await store.list_records(conn, spec, params)
        page = rows[:limit]
        disabled = await store.disabled_accounts(conn, [int(r["id"]) for r in page])
    next_cursor = str(page[-1]["id"]) if len(rows) > limit else None
    items = [_account_json(spec, r, int(r["id"]) in disabled) for r in page]
    return ok({"items": items, "next_cursor": next_cursor})


def _account_json(spec: TableSpec, row: store.Row, disabled: bool = False) -> dict[str, Any]:
    out = row_to_json(spec, row)
    out["disabled"] = disabled or bool(row["deleted"])
    return out


async def create_account(request: web.Request) -> web.Response:
    p = _admin(request)
    spec = _spec(request)
    site = _site_of_request(request, p)
    body = await read_object(request)
    _only(body, {"username", "password", "role", *PROFILE_COLUMNS})
    username = body.get("username")
    if (
        not isinstance(username, str)
        or not 1 <= len(username) <= 120
        or any(ch.isspace() or ch == "\x00" for ch in username)
    ):
        raise ValidationFailed(
            "username must be 1..120 characters without spaces", field="username"
        )
    values: dict[str, Any] = {
        "site_id": site,
        "username": username,
        "role": _check_role(request, p, body.get("role", "viewer"), site),
        **_profile(spec, body),
    }
    values["password_hash"] = await _password(body.get("password"))
    async with store.transaction(request.app[state.POOL]) as conn:
        await _check_doctor(conn, values, site)
        row = await store.insert_record(conn, spec, values, frozenset())
        await _audit(conn, request, p, "account_create", row, role=values["role"])
    return ok(_account_json(spec, row), status=201)


async def _target(conn: store.Conn, request: web.Request, p: Principal) -> store.Row:
    row = await store.get_record(conn, _spec(request), path_id(request), scope(p), for_update=True)
    if ROLE_RANK.get(str(row["role"]), len(ROLE_RANK)) > ROLE_RANK[p.role]:
        raise Forbidden("this account's role is above your own")
    return row


async def update_account(request: web.Request) -> web.Response:
    """Change an account's password, role or profile (display name, doctor)."""
    p = _admin(request)
    spec = _spec(request)
    body = await read_object(request)
    _only(body, {"password", "role", *PROFILE_COLUMNS})
    if not body:
        raise ValidationFailed("nothing to change: the body names no field")
    values = _profile(spec, body)
    if "password" in body:
        values["password_hash"] = await _password(body["password"])
    async with store.transaction(request.app[state.POOL]) as conn:
        current = await _target(conn, request, p)
        site = int(current["site_id"])
        if "role" in body:
            values["role"] = _check_role(request, p, body["role"], site)
        await _check_doctor(conn, values, site)
        row = await store.update_record(conn, spec, int(current["id"]), site, values, frozenset())
        if REVOKING_FIELDS & set(values):
            # Tokens issued under the old password or role are refused from now.
            await bump_account(conn, int(row["id"]))
        await _audit(conn, request, p, "account_update", row, fields=sorted(body), role=row["role"])
    request.app[REVOCATIONS].forget()  # this instance at once, others in the bound
    return ok(_account_json(spec, row))


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    p = _admin(request)
    spec = _spec(request)
    if request.can_read_body:
        _only(await read_object(request), set())
    async with store.transaction(request.app[state.POOL]) as conn:
        current = await _target(conn, request, p)
        if p.account_id == int(current["id"]) or (
            p.account_id is None and p.subject == f"user:{current['username']}"
        ):
            raise Forbidden("an administrator does not disable their own account")
        version = await bump_account(conn, int(current["id"]), disabled)
        await _audit(
            conn,
            request,
            p,
            "account_disable" if disabled else "account_enable",
            current,
            token_version=version,
        )
    # This instance refuses the old tokens at once; others within revocation_check_s.
    request.app[REVOCATIONS].forget()
    return ok(_account_json(spec, current, disabled))


async def disable_account(request: web.Request) -> web.Response:
    """The account can no longer sign in, and every token it holds is revoked."""
    return await _set_disabled(request, True)


async def enable_account(request: web.Request) -> web.Response:
    """The account signs in again, with new tokens only."""
    return await _set_disabled(request, False)
