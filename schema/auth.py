"""Tokens for users, sites and edit sessions (JWT, HS256): issued and verified here only.

It lives in the lowest package because lockd (site requests), the cloud API (users,
sites, blob URLs) and the local API all verify tokens.

Each side has its own secret (a clinic's local API never holds the cloud's), and every
token names the side that issued it and the side it is for: ``iss = "scsync:<side>"``,
``aud = "scsync:<side>"`` (an edit-session handle: ``"scsync:<side>:edit-session"``).
A verifier states its side, so a local API's token is refused by the cloud and the
reverse even where (by a misconfiguration) both sides hold one secret.

Claims: ``sub`` (``user:<name>`` or ``site:<id>``), ``kind`` (``user``/``site``),
``site`` (the site id; absent only for the vendor's admins), ``role``, ``ver`` (the
token version of the account or site when it was issued: schema/revocation.py refuses
the token once that version moved on), ``uid`` (the account's id, tokens of the
sign-in endpoint), ``iat``, ``exp``, ``iss``, ``aud``. ``alg=none`` and every algorithm
but HS256 are refused.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, Literal

import jwt

from schema.errors import Category, SchemaError

ALGORITHM: Final = "HS256"
MIN_SECRET_BYTES: Final = 32

Kind = Literal["user", "site"]
Side = Literal["local", "cloud"]
SIDES: Final[tuple[Side, ...]] = ("local", "cloud")
EDIT_SESSION: Final = "edit-session"
ROLES: Final[tuple[str, ...]] = ("viewer", "editor", "admin", "vendor_admin", "site")


class AuthError(SchemaError):
    """A token is missing, malformed, forged, expired or not allowed."""

    category = Category.REFUSED


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token."""

    subject: str
    kind: Kind
    role: str
    site_id: int | None
    # Who issued it ("local" or "cloud"), the token version it carries, and the
    # account's id (tokens of the sign-in endpoint; None in a site token).
    side: Side = "cloud"
    version: int = 0
    account_id: int | None = None

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


def issuer(side: Side) -> str:
    """``iss`` (and, for access tokens, ``aud``) of a side's tokens."""
    if side not in SIDES:
        raise AuthError(f"unknown side {side!r}")
    return f"scsync:{side}"


def _check_secret(secret: str) -> bytes:
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise AuthError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes")
    return raw


def issue_token(
    secret: str,
    *,
    side: Side,
    subject: str,
    kind: Kind,
    role: str,
    site_id: int | None,
    ttl_s: int = 3600,
    now: float | None = None,
    version: int = 0,
    account_id: int | None = None,
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
        "iss": issuer(side),
        "aud": issuer(side),
        "ver": version,
    }
    if site_id is not None:
        claims["site"] = site_id
    if account_id is not None:
        claims["uid"] = account_id
    return jwt.encode(claims, _check_secret(secret), algorithm=ALGORITHM)


def site_token(secret: str, site_id: int, ttl_s: int = 3600, version: int = 0) -> str:
    """A site's token: issued by the cloud (with the cloud's secret), for the cloud."""
    return issue_token(
        secret,
        side="cloud",
        subject=f"site:{site_id}",
        kind="site",
        role="site",
        site_id=site_id,
        ttl_s=ttl_s,
        version=version,
    )


def _decode(
    secret: str, token: str, *, iss: str, aud: str, leeway_s: int, require: list[str]
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            _check_secret(secret),
            algorithms=[ALGORITHM],
            issuer=iss,
            audience=aud,
            leeway=leeway_s,
            options={"require": ["exp", "iat", "iss", "aud", *require]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidSignatureError as exc:
        raise AuthError("token signature is invalid") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise AuthError("token algorithm is not allowed") from exc
    except jwt.InvalidIssuerError as exc:
        raise AuthError(f"token was not issued by this side ({iss})") from exc
    except jwt.InvalidAudienceError as exc:
        raise AuthError(f"token is not meant for this side ({aud})") from exc
    except jwt.PyJWTError as exc:
        raise AuthError(f"token is invalid: {exc}") from exc
    return claims


def verify_token(secret: str, token: str, *, side: Side, leeway_s: int = 5) -> Principal:
    """Verify signature, algorithm, issuer and audience (both `side`) and expiry; raise
    AuthError naming the problem."""
    claims = _decode(
        secret,
        token,
        iss=issuer(side),
        aud=issuer(side),
        leeway_s=leeway_s,
        require=["sub", "kind", "role", "ver"],
    )
    kind = claims.get("kind")
    role = claims.get("role")
    site = claims.get("site")
    if kind not in ("user", "site") or role not in ROLES:
        raise AuthError("token has an unknown kind or role")
    if site is not None and not isinstance(site, int):
        raise AuthError("token site must be an integer")
    if site is None and role != "vendor_admin":
        raise AuthError("token has no site")
    version, uid = claims.get("ver"), claims.get("uid")
    if isinstance(version, bool) or not isinstance(version, int):
        raise AuthError("token version must be an integer")
    if uid is not None and (isinstance(uid, bool) or not isinstance(uid, int)):
        raise AuthError("token account id must be an integer")
    if kind == "site" and (role != "site" or uid is not None):
        raise AuthError("a site token has role site and no account")
    return Principal(
        subject=str(claims["sub"]),
        kind=kind,
        role=str(role),
        site_id=site,
        side=side,
        version=version,
        account_id=uid,
    )


def issue_session(secret: str, side: Side, claims: dict[str, Any], ttl_s: int) -> str:
    """An edit-session handle (api/edit.py): signed by the API of `side`, good only as a
    handle there (its audience is no access token's)."""
    now = int(time.time())
    body = {
        **claims,
        "iss": issuer(side),
        "aud": f"{issuer(side)}:{EDIT_SESSION}",
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(body, _check_secret(secret), algorithm=ALGORITHM)


def verify_session(secret: str, side: Side, handle: str) -> dict[str, Any]:
    """The claims of an edit-session handle issued by this side's API."""
    return _decode(
        secret,
        handle,
        iss=issuer(side),
        aud=f"{issuer(side)}:{EDIT_SESSION}",
        leeway_s=0,
        require=[],
    )


class TokenCache:
    """Verified tokens, kept until their ``exp``: a site sends the same JWT with every
    heartbeat and every upload, and verifying it each time was a measurable part of a
    request's cost (lockd's; 8% of the blob API's CPU per uploaded file)."""

    def __init__(self, secret: str, side: Side, size: int = 16384) -> None:
        self.secret = secret
        self.side: Side = side
        self.size = size
        self._cache: dict[str, tuple[Principal, float]] = {}

    def principal(self, token: str) -> Principal:
        hit = self._cache.get(token)
        # JWT expiry is wall-clock time by definition (the token's issuer wrote it so).
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal = verify_token(self.secret, token, side=self.side)
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, int | float):
            if len(self._cache) >= self.size:
                # The oldest entry goes, not all: a cloud with more live tokens than
                # the size (10,000 sites' replicators) would otherwise re-verify each.
                del self._cache[next(iter(self._cache))]
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
