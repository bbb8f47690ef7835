"""A blob's state, its download URL, and deleting it."""

from __future__ import annotations

from aiohttp import web

from api.blobs.resources import STATE, _blob_row, _scalar
from api.blobs.target import _not_found, _require_writer, _target
from schema.database import named
from schema.web import HttpError


async def _blob_info(request: web.Request) -> web.Response:
    t = _target(request)
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        row = await _blob_row(conn, t)
    if row is None:
        raise _not_found("this site has no such blob")
    return web.json_response({"sha256": t.sha256, "size": row.size, "state": row.state})


async def _presign_download(request: web.Request) -> web.Response:
    t = _target(request)
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        row = await _blob_row(conn, t)
    if row is None or row.state != "uploaded":
        raise _not_found("this blob is not uploaded (request it: POST .../request)")
    url = state.presign.url("GET", t.key, state.settings.url_ttl_s)
    return web.json_response(
        {
            "key": t.key,
            "url": url,
            "method": "GET",
            "size": row.size,
            "expires_in": state.settings.url_ttl_s,
        }
    )


async def _delete_blob(request: web.Request) -> web.Response:
    """Remove a blob no active row needs any more (old-data option 'delete')."""
    t = _target(request)
    _require_writer(t.principal)
    state = request.app[STATE]
    params = {"site_id": t.site_id, "sha256": t.sha256}
    async with state.pool.connection() as conn, conn.transaction():
        referenced = await conn.execute(named("files_blob_referenced"), params)
        if await _scalar(referenced):
            raise HttpError(409, "in_use", "an active record still references this blob")
        await conn.execute(named("files_blob_deleted"), params)
    await state.s3_call(state.s3.delete_object, Bucket=state.settings.bucket, Key=t.key)
    return web.json_response({"status": "deleted", "key": t.key})
