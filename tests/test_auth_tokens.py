"""JWT issue/verify: the rules every service relies on."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import types

import jwt
import pytest

import schema.auth
from schema.auth import (
    AuthError,
    TokenCache,
    bearer,
    issue_session,
    issue_token,
    site_token,
    verify_session,
    verify_token,
)

SECRET = "s" * 64


def test_roundtrip_user_and_site() -> None:
    token = issue_token(
        SECRET, side="cloud", subject="user:kim", kind="user", role="editor", site_id=3
    )
    who = verify_token(SECRET, token, side="cloud")
    assert (who.subject, who.kind, who.role, who.site_id) == ("user:kim", "user", "editor", 3)
    assert who.may_access_site(3) and not who.may_access_site(4)
    site = verify_token(SECRET, site_token(SECRET, 9), side="cloud")
    assert site.is_site and site.site_id == 9 and site.holder == "site:9"


def test_expired_wrong_signature_and_alg_none_are_refused() -> None:
    expired = issue_token(
        SECRET,
        side="cloud",
        subject="user:a",
        kind="user",
        role="viewer",
        site_id=1,
        ttl_s=10,
        now=time.time() - 3600,
    )
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, expired, side="cloud")
    other = issue_token(
        "o" * 64, side="cloud", subject="user:a", kind="user", role="viewer", site_id=1
    )
    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, other, side="cloud")
    claims = {
        "sub": "user:a",
        "kind": "user",
        "role": "vendor_admin",
        "iss": "scsync",
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
    }
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    body = base64.urlsafe_b64encode(json.dumps(claims).encode())
    unsigned = header.decode().rstrip("=") + "." + body.decode().rstrip("=") + "."
    with pytest.raises(AuthError):
        verify_token(SECRET, unsigned, side="cloud")
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(SECRET, hs512, side="cloud")


def test_tokens_without_site_only_for_vendor_admins() -> None:
    with pytest.raises(AuthError, match="vendor admins"):
        issue_token(SECRET, side="cloud", subject="user:a", kind="user", role="admin", site_id=None)
    admin = issue_token(
        SECRET, side="cloud", subject="user:v", kind="user", role="vendor_admin", site_id=None
    )
    assert verify_token(SECRET, admin, side="cloud").may_access_site(42)


def test_short_secret_and_bad_headers() -> None:
    with pytest.raises(AuthError, match="at least 32 bytes"):
        site_token("short", 1)
    assert bearer("Bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError):
            bearer(header)


class _Clock:
    """Wall-clock time moved forward by an offset, for schema.auth and PyJWT alike."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        clock = self

        class ShiftedDatetime(dt.datetime):
            @classmethod
            def now(cls, tz: dt.tzinfo | None = None) -> ShiftedDatetime:
                return super().now(tz) + dt.timedelta(seconds=clock.offset)

        monkeypatch.setattr(jwt.api_jwt, "datetime", ShiftedDatetime)
        monkeypatch.setattr(
            schema.auth, "time", types.SimpleNamespace(time=lambda: time.time() + clock.offset)
        )


def test_token_cache_refuses_a_cached_token_once_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token verified once is served from the cache, but only until its exp (plus the
    verifier's leeway): after that it is checked again and refused."""
    clock = _Clock(monkeypatch)
    cache = TokenCache(SECRET, "cloud")
    token = site_token(SECRET, 4, ttl_s=1)
    assert cache.principal(token).site_id == 4
    assert cache.principal(token).site_id == 4  # from the cache
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(AuthError):
        cache.principal(forged)
    clock.offset = 5 - 0.5  # exp (iat + 1 s, iat truncated), within the 5 s leeway
    assert cache.principal(token).site_id == 4
    clock.offset = 1 + 5 + 0.5  # exp, then the leeway
    with pytest.raises(AuthError, match="expired"):
        cache.principal(token)


def test_a_token_is_good_only_on_the_side_that_issued_it() -> None:
    """Issuer and audience are the issuing side: even with one secret on both sides (a
    misconfiguration), a local API's token is no cloud token and the reverse."""
    for side, other in (("local", "cloud"), ("cloud", "local")):
        tok = issue_token(SECRET, side=side, subject="user:a", kind="user", role="admin", site_id=1)  # type: ignore[arg-type]
        assert verify_token(SECRET, tok, side=side).side == side  # type: ignore[arg-type]
        with pytest.raises(AuthError, match="not issued by this side"):
            verify_token(SECRET, tok, side=other)  # type: ignore[arg-type]
        claims = jwt.decode(tok, options={"verify_signature": False})
        assert claims["iss"] == claims["aud"] == f"scsync:{side}"
    # A token of the old shape (iss "scsync", no audience) is refused.
    now = int(time.time())
    old = jwt.encode(
        {
            "sub": "user:a",
            "kind": "user",
            "role": "vendor_admin",
            "iss": "scsync",
            "iat": now,
            "exp": now + 60,
            "ver": 0,
        },
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(AuthError):
        verify_token(SECRET, old, side="cloud")
    # A site token is the cloud's: a local API refuses it.
    with pytest.raises(AuthError):
        verify_token(SECRET, site_token(SECRET, 1), side="local")


def test_an_edit_session_handle_is_no_access_token_and_the_reverse() -> None:
    handle = issue_session(SECRET, "cloud", {"holder": "cloud:a", "site": 1}, 60)
    assert verify_session(SECRET, "cloud", handle)["holder"] == "cloud:a"
    with pytest.raises(AuthError):
        verify_token(SECRET, handle, side="cloud")
    with pytest.raises(AuthError, match="not issued by this side"):
        verify_session(SECRET, "local", handle)
    access = issue_token(
        SECRET, side="cloud", subject="user:a", kind="user", role="admin", site_id=1
    )
    with pytest.raises(AuthError, match="not meant for this side"):
        verify_session(SECRET, "cloud", access)


def test_token_version_and_account_claims() -> None:
    tok = issue_token(
        SECRET,
        side="local",
        subject="user:a",
        kind="user",
        role="viewer",
        site_id=1,
        version=7,
        account_id=123,
    )
    who = verify_token(SECRET, tok, side="local")
    assert (who.version, who.account_id) == (7, 123)
    site = verify_token(SECRET, site_token(SECRET, 2, version=3), side="cloud")
    assert (site.version, site.account_id) == (3, None)


def test_a_full_token_cache_lets_only_its_oldest_entry_go() -> None:
    """At its size the cache drops the oldest token, not all of them (a cloud with more
    live tokens than the size would otherwise verify every one again and again)."""
    cache = TokenCache(SECRET, "cloud", size=3)
    tokens = [site_token(SECRET, n) for n in range(1, 5)]
    for t in tokens:
        cache.principal(t)
    assert list(cache._cache) == tokens[1:]
