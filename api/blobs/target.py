"""Addressing: which site and blob a request names, who may act on it, its JSON body,
and the errors of the blob endpoints."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from schema import jsonbody
from schema.auth import Principal
from schema.web import PRINCIPAL, HttpError

SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
# ASCII digits only: str.isdigit() also accepts digits int() refuses ("²").
SITE_ID_RE: Final = re.compile(r"^[0-9]{1,9}$")
ROW_ID_RE: Final = re.compile(r"^[0-9]{1,19}$")


UPLOAD_ROLES: Final = frozenset({"site", "editor", "admin", "vendor_admin"})


def blob_key(site_id: int, sha256: str) -> str:
    """The one S3 key a blob of a site may have."""
    return f"sites/{site_id}/blobs/{sha256}"


def _bad(message: str) -> HttpError:
    return HttpError(400, "bad_request", message)


def _forbidden(message: str) -> HttpError:
    return HttpError(403, "forbidden", message)


def _not_found(message: str) -> HttpError:
    return HttpError(404, "not_found", message)


@dataclass(frozen=True)
class _Target:
    principal: Principal
    site_id: int
    sha256: str

    @property
    def key(self) -> str:
        return blob_key(self.site_id, self.sha256)


def _site_of(request: web.Request) -> tuple[Principal, int]:
    principal: Principal = request[PRINCIPAL]
    raw = request.match_info["site_id"]
    if not SITE_ID_RE.fullmatch(raw):
        raise _bad("site id must be a positive integer")
    site_id = int(raw)
    if not principal.may_access_site(site_id):
        raise _forbidden("this token may not use another site's blobs")
    return principal, site_id


def _target(request: web.Request) -> _Target:
    principal, site_id = _site_of(request)
    sha = request.match_info["sha256"]
    # Checked before anything else is done with it: anything but 64 lowercase hex digits
    # ("../", another prefix, an encoded slash) never reaches a key.
    if not SHA256_RE.fullmatch(sha):
        raise _bad("a blob is named by its sha256: 64 lowercase hex digits")
    return _Target(principal, site_id, sha)


def _require_writer(principal: Principal) -> None:
    if principal.role not in UPLOAD_ROLES:
        raise _forbidden(f"role {principal.role!r} may not upload or delete blobs")


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = jsonbody.loads(await request.read())
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("body must be JSON") from exc
    if not isinstance(body, dict):
        raise _bad("body must be a JSON object")
    return body


def _size_of(body: dict[str, Any]) -> int:
    size = body.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad("size must be a non-negative integer")
    return size
