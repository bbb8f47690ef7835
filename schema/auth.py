"""Tokens for users and sites (JWT, HS256), shared by lockd, the APIs and the replicator.

It lives in the lowest package because lockd (site requests), the cloud API (users,
sites, blob URLs) and the local API all verify the same tokens.

Claims: ``sub`` (``user:<name>`` or ``site:<id>``), ``kind`` (``user``/``site``),
``site`` (the site id; absent only for the vendor's admins), ``role``, ``side`` of the
server that issued it, ``iat``, ``exp``, ``iss = "scsync"``. ``alg=none`` and every
algorithm but HS256 are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

import jwt

from schema.errors import SchemaError

ISSUER: Final = "scsync"
ALGORITHM: Final = "HS256"
MIN_SECRET_BYTES: Final = 32

Kind = Literal["user", "site"]
ROLES: Final[tuple[str, ...]] = ("viewer", "editor", "admin", "vendor_admin", "site")


class AuthError(SchemaError):
    """A token is missing, malformed, forged, expired or not allowed."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token."""

    subject: str
    kind: Kind
    role: str
    site_id: int | None

    @property
    def is_vendor_admin(self) -> bool:
        return self.role == "vendor_admin"

    @property
    def is_site(self) -> bool:
        return self.kind == "site"

    def may_access_site(self, site_id: int) -> bool:
        return self.is_vendor_admin or self.site_id == site_id

    @property
    def holder(self) -> str:
        """Lease holder name of a cloud user: ``cloud:<site>/<user>`` (``site:<id>`` for a
        site token). Usernames are unique only within one site, so the holder names the
        site too (0 for the vendor's own staff, whose accounts live there)."""
        if self.kind == "site":
            return f"site:{self.site_id}"
        name = self.subject.removeprefix("user:")
        return f"cloud:{self.site_id if self.site_id is not None else 0}/{name}"


def _check_secret(secret: str) -> bytes:
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise AuthError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return raw


def issue_token(
    secret: str,
    *,
    subject: str,
    kind: Kind,
    role: str,
    site_id: int | None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    if role not in ROLES:
        raise AuthError(f"unknown role {role!r}")
    if kind == "site" and site_id is None:
        raise AuthError("a site token needs a site id")
    if site_id is None and role != "vendor_admin":
        raise AuthError("only vendor admins may hold a token without a site")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "kind": kind,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
        "iss": ISSUER,
    }
    if site_id is not None:
        claims["site"] = site_id
    return jwt.encode(claims, _check_secret(secret), algorithm=ALGORITHM)


def site_token(secret: str, site_id: int, ttl_s: int = 3600) -> str:
    return issue_token(
        secret, subject=f"site:{site_id}", kind="site", role="site", site_id=site_id, ttl_s=ttl_s
    )


def verify_token(secret: str, token: str, *, leeway_s: int = 5) -> Principal:
    """Verify signature, algorithm, issuer and expiry; raise AuthError naming the problem."""
    try:
        claims = jwt.decode(
            token,
            _check_secret(secret),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            leeway=leeway_s,
            options={"require": ["exp", "iat", "iss", "sub", "kind", "role"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature is invalid") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise AuthError("token algorithm is not allowed") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(f"token is invalid: {exc}") from exc
    kind = claims.get("kind")
    role = claims.get("role")
    site = claims.get("site")
    if kind not in ("user", "site") or role not in ROLES:
        raise AuthError("token has an unknown kind or role")
    if site is not None and not isinstance(site, int):
        raise AuthError("token site must be an integer")
    if site is None and role != "vendor_admin":
        raise AuthError("token has no site")
    return Principal(subject=str(claims["sub"]), kind=kind, role=str(role), site_id=site)


class TokenCache:
    """Verified tokens, kept until their ``exp``: a site sends the same JWT with every
    heartbeat and every upload, and verifying it each time was a measurable part of a
    request's cost (lockd's; 8% of the blob API's CPU per uploaded file)."""

    def __init__(self, secret: str, size: int = 4096) -> None:
        self.secret = secret
        self.size = size
        self._cache: dict[str, tuple[Principal, float]] = {}

    def principal(self, token: str) -> Principal:
        hit = self._cache.get(token)
        # JWT expiry is wall-clock time by definition (the token's issuer wrote it so).
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal = verify_token(self.secret, token)
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, int | float):
            if len(self._cache) >= self.size:
                self._cache.clear()
            self._cache[token] = (principal, float(exp))
        return principal


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        raise AuthError("missing Authorization header")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    return token.strip()
