"""``make_blobs_app``: the routes, the error and authentication middlewares."""

from __future__ import annotations

import logging
from typing import Any, Final

from aiohttp import web

from api.blobs import schemas
from api.blobs.objects import _blob_info, _delete_blob, _presign_download
from api.blobs.on_demand import _open_requests, _request_blob
from api.blobs.resources import _POOL, _SETTINGS, STATE, Pool, _resources
from api.blobs.settings import BlobSettings
from api.blobs.upload import _complete, _presign_upload
from schema.auth import TokenCache
from schema.database import Translation
from schema.errors import ScsyncError
from schema.revocation import Revocations
from schema.web import (
    REVOCATIONS,
    TOKENS,
    Access,
    Handler,
    HttpError,
    Route,
    add_routes,
    bearer_auth,
    error_middleware,
)

log = logging.getLogger("api.blobs")


# The blob app's table of driver errors (schema.database): the cloud database
# unreachable, in a handler or the revocation check, is a 503.
ERRORS = Translation(
    unavailable=lambda message: HttpError(
        503, "database_unavailable", f"the cloud database: {message}"
    )
)


def _database_error(request: web.Request, exc: Exception) -> ScsyncError | None:
    out = ERRORS.maybe(exc)
    return out if isinstance(out, ScsyncError) else None


def make_blobs_app(settings: BlobSettings, *, pool: Pool | None = None) -> web.Application:
    """The blob endpoints as an aiohttp application (mount it at ``/v1/blobs``). The
    cloud API gives its own ``pool`` (opened and closed by it); without one the app
    keeps one of its own."""
    app = web.Application(middlewares=[error_middleware(log, _database_error), bearer_auth(ROUTES)])
    app[_SETTINGS] = settings
    if pool is not None:
        app[_POOL] = pool
    # The blob endpoints are the cloud's: they accept the cloud's tokens only.
    app[TOKENS] = TokenCache(settings.jwt_secret, "cloud")
    app[REVOCATIONS] = Revocations(
        lambda: app[STATE].pool.connection(), settings.revocation_check_s
    )
    app.cleanup_ctx.append(_resources)
    add_routes(app, ROUTES)
    return app


_SITE: Final = {
    "name": "site_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[0-9]{1,9}$"},
}
_SHA256: Final = {
    "name": "sha256",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[0-9a-f]{64}$"},
}
_BLOB: Final = "/sites/{site_id}/blobs/{sha256}"


def _blob_route(
    method: str,
    suffix: str,
    handler: Handler,
    op_id: str,
    summary: str,
    response: dict[str, Any],
    request: dict[str, Any] | None = None,
    **extra: Any,
) -> Route:
    """An endpoint of one blob of one site (the token's site; docs/files.md); bodies:
    api/blobs/schemas.py."""
    return Route(
        method,
        _BLOB + suffix,
        handler,
        op_id,
        summary,
        response,
        request=request,
        params=(_SITE, _SHA256),
        access=Access.BEARER,
        tags=("blobs",),
        **extra,
    )


ROUTES: Final = (
    _blob_route("get", "", _blob_info, "blob_info", "A blob's size and state", schemas.INFO),
    _blob_route(
        "post",
        "/upload",
        _presign_upload,
        "blob_upload",
        "An upload plan",
        schemas.UPLOAD_PLAN,
        schemas.UPLOAD,
    ),
    _blob_route(
        "post",
        "/complete",
        _complete,
        "blob_complete",
        "Verify the bytes, record the blob",
        schemas.COMPLETED,
        schemas.COMPLETE,
    ),
    _blob_route(
        "post",
        "/download",
        _presign_download,
        "blob_download",
        "A download URL",
        schemas.DOWNLOAD,
        {"type": "object", "description": "empty: the blob is named by the path"},
    ),
    _blob_route(
        "post",
        "/request",
        _request_blob,
        "blob_request",
        "Ask the site for a blob (on demand)",
        schemas.REQUESTED,
        schemas.REQUEST,
        status=202,
        extra_responses={
            "200": {
                "description": "the blob is already uploaded",
                "content": {"application/json": {"schema": schemas.ALREADY_UPLOADED}},
            }
        },
    ),
    _blob_route(
        "delete", "", _delete_blob, "blob_delete", "Delete a blob no record needs", schemas.DELETED
    ),
    Route(
        "get",
        "/sites/{site_id}/requests",
        _open_requests,
        "blob_requests",
        "The site's open on-demand requests",
        schemas.OPEN_REQUESTS,
        params=(_SITE,),
        tags=("blobs",),
    ),
)
