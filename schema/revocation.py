"""Revocation: a verified token is still refused once its account or site is gone.

A token carries the token version (``ver``) of its account or site when it was issued.
The version lives in ``scsync_token_versions`` (a table of each database, not synced:
the baseline migration), next to an account's ``disabled`` flag; a site's flag is
``scsync_sites.disabled`` (cloud). Disabling or deleting an account, changing its
password or disabling a site moves the version on (``bump_*`` below), and then every
token issued before is refused.

Every service that accepts tokens (both APIs, lockd mounted or alone, the blob
endpoints, ``/ws``) asks :class:`Revocations` after the signature check. Answers are
cached for ``ttl_s`` seconds (a setting, at most :data:`MAX_CHECK_S`), so a revoked
token is refused within that bound, at one small query per account or site and period.

A token is refused when:
- its account is deleted (``user_accounts.deleted``, which replicates), disabled, or
  its version differs from the token's;
- it names an account id (``uid``: every sign-in token does) and the account with its
  site and user name is not that id (gone, or a new account under the same name);
- it is a site token of a disabled site, or its version differs.
Tokens minted by hand with the secret for an account that does not exist (tests,
benchmarks) carry no ``uid`` and are not tied to an account.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import psycopg
from psycopg.rows import tuple_row

from schema.auth import AuthError, Principal
from schema.database import named

MAX_CHECK_S: Final = 30.0
DEFAULT_CHECK_S: Final = 10.0
# user_accounts rows of the vendor's own staff have this site id (cloud).
VENDOR_SITE: Final = 0

Connect = Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]]


class TokenRevoked(AuthError):
    """The token verified, but its account or site revoked it."""


def check_interval(value: float, key: str = "revocation_check_s") -> float:
    if not 0 <= value <= MAX_CHECK_S:
        raise ValueError(f"setting {key!r} must be 0..{MAX_CHECK_S:g} seconds, got {value!r}")
    return value


class Revocations:
    """Asks the database whether a principal's token is still good, with a short cache."""

    def __init__(self, connect: Connect, ttl_s: float = DEFAULT_CHECK_S, size: int = 32768) -> None:
        self.connect = connect
        self.ttl_s = check_interval(ttl_s)
        self.size = size
        # key -> (reason the token is refused or None, version, account id, checked at)
        self._cache: dict[tuple[Any, ...], tuple[str | None, int, int | None, float]] = {}

    async def check(self, p: Principal) -> None:
        """Raise TokenRevoked when `p`'s token is no longer good."""
        if p.kind == "site":
            assert p.site_id is not None
            key: tuple[Any, ...] = ("site", p.site_id)
        else:
            site = VENDOR_SITE if p.site_id is None else p.site_id
            key = ("account", site, p.subject.removeprefix("user:"))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or now - hit[3] >= self.ttl_s:
            reason, version, account_id = await self._fetch(key)
            self._cache.pop(key, None)  # re-inserted last: the oldest checks go first
            if len(self._cache) >= self.size:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = (reason, version, account_id, now)
        else:
            reason, version, account_id = hit[:3]
        if reason is not None:
            raise TokenRevoked(f"token revoked: {reason}")
        if p.account_id is not None and p.account_id != account_id:
            raise TokenRevoked("token revoked: its account no longer exists")
        if p.version != version:
            raise TokenRevoked(f"token revoked: the {key[0]}'s tokens were revoked")

    async def _fetch(self, key: tuple[Any, ...]) -> tuple[str | None, int, int | None]:
        async with self.connect() as conn, conn.transaction():
            cur = conn.cursor(row_factory=tuple_row)
            if key[0] == "site":
                await cur.execute(named("auth_site_state"), {"site_id": key[1]})
                row = await cur.fetchone()
                assert row is not None
                disabled, version = bool(row[0]), int(row[1])
                return ("the site is disabled" if disabled else None), version, None
            await cur.execute(named("auth_account_state"), {"site_id": key[1], "username": key[2]})
            found = await cur.fetchone()
        if found is None:
            return None, 0, None
        account_id, deleted, disabled, version = found
        if deleted:
            return "the account is deleted", int(version), int(account_id)
        if disabled:
            return "the account is disabled", int(version), int(account_id)
        return None, int(version), int(account_id)

    def forget(self) -> None:
        """Drop the cache (the next check of every token asks the database)."""
        self._cache.clear()


async def bump_account(
    conn: psycopg.AsyncConnection[Any], account_id: int, disabled: bool | None = None
) -> int:
    """Revoke an account's tokens (and set its disabled flag unless None); the new
    version."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(named("auth_account_bump"), {"id": account_id, "disabled": disabled})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])
