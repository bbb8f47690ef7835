"""Disabling an account: ``POST /v1/accounts/{id}/disable`` and ``.../enable``.

Disabling refuses the account's sign-in and revokes every token it holds on this
side (within ``revocation_check_s``, schema/revocation.py); enabling lets it sign in
again, with new tokens only. An admin of the account's site (or a vendor admin) may do
it, not to their own account. Deleting an account (``DELETE`` of the record) revokes
its tokens too, on this side at once and on the other side once the deletion
replicates.
"""

from __future__ import annotations

from aiohttp import web

from api import state, store
from api.errors import Forbidden, NotFound
from api.http import actor, ok, path_id, principal, require_admin, scope
from schema.revocation import bump_account


async def _set_disabled(request: web.Request, disabled: bool) -> web.Response:
    p = principal(request)
    require_admin(p)
    if p.kind != "user":
        raise Forbidden("accounts are disabled by an administrator's own token")
    account_id = path_id(request)
    async with store.transaction(request.app[state.POOL]) as conn:
        row = await store.fetch_one(
            conn, store.q("api_account_site"), {"id": account_id, "site": scope(p)}
        )
        if row is None:
            raise NotFound(f"no account {account_id}")
        if p.account_id == account_id or (
            p.account_id is None and p.subject == f"user:{row['username']}"
        ):
            raise Forbidden("an administrator does not disable their own account")
        version = await bump_account(conn, account_id, disabled)
        await store.audit(
            conn,
            actor=actor(request, p),
            side=request.app[state.SETTINGS].side,
            site=row["site_id"],
            action="account_disable" if disabled else "account_enable",
            table="user_accounts",
            row_id=account_id,
            detail={"token_version": version},
        )
    # This instance refuses the old tokens at once; others within revocation_check_s.
    request.app[state.REVOCATIONS].forget()
    return ok({"id": str(account_id), "disabled": disabled, "token_version": version})


async def disable(request: web.Request) -> web.Response:
    return await _set_disabled(request, True)


async def enable(request: web.Request) -> web.Response:
    return await _set_disabled(request, False)
