"""JWT issue/verify: the rules every service relies on."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from schema.auth import AuthError, TokenCache, bearer, issue_token, site_token, verify_token

SECRET = "s" * 64


def test_roundtrip_user_and_site() -> None:
    token = issue_token(SECRET, subject="user:kim", kind="user", role="editor", site_id=3)
    who = verify_token(SECRET, token)
    assert (who.subject, who.kind, who.role, who.site_id) == ("user:kim", "user", "editor", 3)
    assert who.may_access_site(3) and not who.may_access_site(4)
    site = verify_token(SECRET, site_token(SECRET, 9))
    assert site.is_site and site.site_id == 9 and site.holder == "site:9"


def test_expired_wrong_signature_and_alg_none_are_refused() -> None:
    expired = issue_token(
        SECRET,
        subject="user:a",
        kind="user",
        role="viewer",
        site_id=1,
        ttl_s=10,
        now=time.time() - 3600,
    )
    with pytest.raises(AuthError, match="expired"):
        verify_token(SECRET, expired)
    other = issue_token("o" * 64, subject="user:a", kind="user", role="viewer", site_id=1)
    with pytest.raises(AuthError, match="signature"):
        verify_token(SECRET, other)
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
        verify_token(SECRET, unsigned)
    hs512 = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(SECRET, hs512)


def test_tokens_without_site_only_for_vendor_admins() -> None:
    with pytest.raises(AuthError, match="vendor admins"):
        issue_token(SECRET, subject="user:a", kind="user", role="admin", site_id=None)
    admin = issue_token(SECRET, subject="user:v", kind="user", role="vendor_admin", site_id=None)
    assert verify_token(SECRET, admin).may_access_site(42)


def test_short_secret_and_bad_headers() -> None:
    with pytest.raises(AuthError, match="at least 32 bytes"):
        site_token("short", 1)
    assert bearer("Bearer abc") == "abc"
    for header in (None, "", "Basic abc", "Bearer "):
        with pytest.raises(AuthError):
            bearer(header)


def test_token_cache_refuses_a_cached_token_once_it_expires() -> None:
    """A token verified once is served from the cache, but only until its exp (plus the
    verifier's leeway): after that it is checked again and refused."""
    cache = TokenCache(SECRET)
    token = site_token(SECRET, 4, ttl_s=1)
    assert cache.principal(token).site_id == 4
    assert cache.principal(token).site_id == 4  # from the cache
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(AuthError):
        cache.principal(forged)
    time.sleep(1 + 5 + 0.5)  # exp, then verify_token's 5 s leeway
    with pytest.raises(AuthError, match="expired"):
        cache.principal(token)
