"""``make_blobs_app``: the routes, the error and authentication middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final

import psycopg
import psycopg_pool
from aiohttp import web

from api.errors import ApiError
from schema.auth import AuthError, TokenCache, bearer
from schema.revocation import Revocations

if TYPE_CHECKING:
    pass
from api.blobs.objects import _blob_info, _delete_blob, _presign_download
from api.blobs.on_demand import _open_requests, _request_blob
from api.blobs.resources import _SETTINGS, STATE, _resources
from api.blobs.settings import BlobSettings
from api.blobs.target import PRINCIPAL, BlobHttpError
from api.blobs.upload import _complete, _presign_upload

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)


def make_blobs_app(settings: BlobSettings) -> web.Application:
    """The blob endpoints as an aiohttp application (mount it at ``/v1/blobs``)."""
    app = web.Application(middlewares=[_error_middleware, _auth_middleware])
    app[_SETTINGS] = settings
    # The blob endpoints are the cloud's: they accept the cloud's tokens only.
    app[_TOKENS] = TokenCache(settings.jwt_secret, "cloud")
    app[_REVOCATIONS] = Revocations(
        lambda: app[STATE].pool.connection(), settings.revocation_check_s
    )
    app.cleanup_ctx.append(_resources)
    r = app.router
    base = "/sites/{site_id}/blobs/{sha256}"
    r.add_get(base, _blob_info)
    r.add_post(base + "/upload", _presign_upload)
    r.add_post(base + "/complete", _complete)
    r.add_post(base + "/download", _presign_download)
    r.add_post(base + "/request", _request_blob)
    r.add_delete(base, _delete_blob)
    r.add_get("/sites/{site_id}/requests", _open_requests)
    return app


_TOKENS: Final = web.AppKey("blobs_tokens", TokenCache)
_REVOCATIONS: Final = web.AppKey("blobs_revocations", Revocations)


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        principal = request.app[_TOKENS].principal(bearer(request.headers.get("Authorization")))
    except AuthError as exc:
        raise BlobHttpError(401, "unauthorized", str(exc)) from exc
    request[PRINCIPAL] = principal
    try:
        await request.app[_REVOCATIONS].check(principal)
    except AuthError as exc:
        raise BlobHttpError(401, "unauthorized", str(exc)) from exc
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise BlobHttpError(503, "database_unavailable", f"the cloud database: {exc}") from exc
    try:
        return await handler(request)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as exc:
        raise BlobHttpError(503, "database_unavailable", f"the cloud database: {exc}") from exc
