"""What the views share: the table a path names, who may read or write it, the audit
row of a patient read or change."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from api import state, store
from api.errors import Forbidden, NotFound
from api.http import (
    actor,
    query_int,
    require_admin,
    scope,
)
from api.records import (
    TableSpec,
    refuse_account_write,
    table_spec,
)
from schema.auth import Principal

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
