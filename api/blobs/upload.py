"""Uploads: the plan (one presigned PUT, or a resumable multipart upload and its part
URLs) and ``complete`` (verify the bytes, then record the blob as uploaded)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from typing import Any, Final

from aiohttp import web

from api.blobs.resources import STATE, _blob_row, _scalar, _State
from api.blobs.settings import BlobSettings, MiB
from api.blobs.target import (
    _bad,
    _json_body,
    _require_writer,
    _size_of,
    _Target,
    _target,
)
from api.blobs.verify import _b64_sha256, _verify
from schema.database import named
from schema.web import HttpError

S3_MIN_PART: Final = 5 * MiB
S3_MAX_PARTS: Final = 10_000
# How long an upload plan signs part URLs before the event loop takes a turn.
SIGN_TURN_S: Final = 0.002


def _part_count(size: int, part_size: int) -> int:
    return max(1, math.ceil(size / part_size))


def _effective_part_size(settings: BlobSettings, size: int) -> int:
    part = max(settings.part_size, S3_MIN_PART)
    # S3 allows at most 10,000 parts: grow the part size for very large blobs.
    while _part_count(size, part) > S3_MAX_PARTS:
        part *= 2
    return part


async def _writer_upload(
    request: web.Request,
) -> tuple[_Target, dict[str, Any], int, _State, BlobSettings]:
    """An upload request's target (a writer's), body and size (within the largest
    accepted), the app's state and settings."""
    t = _target(request)
    _require_writer(t.principal)
    body = await _json_body(request)
    size = _size_of(body)
    state = request.app[STATE]
    settings = state.settings
    if size > settings.max_blob_size:
        raise _bad(f"size is over the largest blob accepted ({settings.max_blob_size} bytes)")
    return t, body, size, state, settings


async def _presign_upload(request: web.Request) -> web.Response:
    t, body, size, state, settings = await _writer_upload(request)
    if size < settings.multipart_threshold:
        sends_headers = body.get("sends_headers", False)
        if not isinstance(sends_headers, bool):
            raise _bad("sends_headers must be true or false")
        return await _presign_single(state, t, size, sends_headers)
    async with state.pool.connection() as conn, conn.transaction():
        row = await _blob_row(conn, t)
        if row is not None and row.state == "uploaded":
            return web.json_response({"status": "exists", "key": t.key, "size": row.size})
        part_size = _effective_part_size(settings, size)
        upload_id, done = await _resumable_upload(state, t, row, size, body)
        await conn.execute(
            named("files_blob_pending"),
            {"site_id": t.site_id, "sha256": t.sha256, "size": size, "upload_id": upload_id},
        )
    count = _part_count(size, part_size)
    done_numbers = {p["part_number"] for p in done}

    # Up to 10,000 signatures and megabytes of JSON: made a few milliseconds at a time,
    # with the event loop's other work (lockd, every WebSocket) in between. (A thread
    # would not help much: signing holds the GIL, and the loop then waits for it.)
    pieces: list[str] = []
    todo = [n for n in range(1, count + 1) if n not in done_numbers]
    turn_started = time.perf_counter()
    for number in todo:
        url = state.presign.url(
            "PUT", t.key, settings.url_ttl_s, query={"partNumber": number, "uploadId": upload_id}
        )
        pieces.append(json.dumps({"part_number": number, "url": url}))
        if time.perf_counter() - turn_started > SIGN_TURN_S:
            await asyncio.sleep(0)
            turn_started = time.perf_counter()
    head = json.dumps(
        {
            "status": "multipart",
            "key": t.key,
            "upload_id": upload_id,
            "part_size": part_size,
            "part_count": count,
            "uploaded_parts": done,
            "expires_in": settings.url_ttl_s,
        }
    )
    text = head[:-1] + ', "parts": [' + ", ".join(pieces) + "]}"
    return web.Response(text=text, content_type="application/json")


async def _presign_single(
    state: _State, t: _Target, size: int, sends_headers: bool
) -> web.Response:
    settings = state.settings
    async with state.pool.connection() as conn:
        # One statement: pending, unless already uploaded (then it returns no row).
        claimed = await conn.execute(
            named("files_blob_pending"),
            {"site_id": t.site_id, "sha256": t.sha256, "size": size, "upload_id": None},
        )
        if await claimed.fetchone() is None:
            row = await _blob_row(conn, t)
            known = row.size if row is not None else size
            return web.json_response({"status": "exists", "key": t.key, "size": known})
    headers: dict[str, str] = {}
    if sends_headers and await state.verify_by() == "checksum":
        # Signed into the URL: the PUT must carry it, and S3 stores only bytes whose
        # SHA256 it is. Only for a client that says it sends the plan's headers: an
        # older site would PUT without it and S3 would refuse the signature; its upload
        # is read back instead.
        headers["x-amz-checksum-sha256"] = _b64_sha256(t.sha256)
    url = state.presign.url("PUT", t.key, settings.url_ttl_s, headers=headers)
    return web.json_response(
        {
            "status": "single",
            "key": t.key,
            "method": "PUT",
            "url": url,
            "headers": headers,
            "expires_in": settings.url_ttl_s,
        }
    )


async def _resumable_upload(
    state: _State, t: _Target, row: Any, size: int, body: dict[str, Any]
) -> tuple[str, list[dict[str, Any]]]:
    """The multipart upload to continue (with the parts S3 already holds) or a new one."""
    candidates = [body.get("upload_id")]
    if row is not None and row.size == size:
        candidates.append(row.upload_id)
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate:
            continue
        done = await _list_parts(state, t, candidate)
        if done is not None:
            return candidate, done
    created = await state.s3_call(
        state.s3.create_multipart_upload, Bucket=state.settings.bucket, Key=t.key
    )
    return created["UploadId"], []


async def _list_parts(state: _State, t: _Target, upload_id: str) -> list[dict[str, Any]] | None:
    """Parts S3 holds for an upload of this very key; None when S3 does not know it."""
    from botocore.exceptions import ClientError

    out: list[dict[str, Any]] = []
    marker = 0
    while True:
        try:
            page = await state.s3_call(
                state.s3.list_parts,
                Bucket=state.settings.bucket,
                Key=t.key,
                UploadId=upload_id,
                PartNumberMarker=marker,
            )
        except ClientError:
            return None
        for p in page.get("Parts", []):
            out.append({"part_number": p["PartNumber"], "etag": p["ETag"], "size": p["Size"]})
        if not page.get("IsTruncated"):
            return out
        marker = page["NextPartNumberMarker"]


async def _complete(request: web.Request) -> web.Response:
    t, body, size, state, settings = await _writer_upload(request)
    async with state.pool.connection() as conn:
        row = await _blob_row(conn, t)
    if row is not None and row.state == "uploaded":
        return web.json_response({"status": "exists", "key": t.key, "size": row.size})
    upload_id = body.get("upload_id")
    if upload_id is not None:
        if not isinstance(upload_id, str) or row is None or row.upload_id != upload_id:
            raise _bad("upload_id is not the upload in progress for this blob")
        done = await _list_parts(state, t, upload_id)
        if not done:
            raise HttpError(409, "incomplete", "the multipart upload has no parts")
        expected = _part_count(size, _effective_part_size(settings, size))
        if len(done) != expected:
            raise HttpError(
                409, "incomplete", f"{len(done)} of {expected} parts uploaded; upload the rest"
            )
        from botocore.exceptions import ClientError

        try:
            await state.s3_call(
                state.s3.complete_multipart_upload,
                Bucket=settings.bucket,
                Key=t.key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p["part_number"], "ETag": p["etag"]}
                        for p in sorted(done, key=lambda p: p["part_number"])
                    ]
                },
            )
        except ClientError as exc:
            raise HttpError(409, "incomplete", f"S3 refused to complete: {exc}") from exc
    ok, why = await _verify(state, t, size)
    if not ok:
        await state.s3_call(state.s3.delete_object, Bucket=settings.bucket, Key=t.key)
        async with state.pool.connection() as conn:
            await conn.execute(
                named("files_blob_forget"),
                {"site_id": t.site_id, "sha256": t.sha256},
            )
        raise HttpError(422, "verification_failed", why)
    served = await _record_uploaded(state, t, size)
    return web.json_response(
        {"status": "uploaded", "key": t.key, "size": size, "requests_served": served}
    )


async def _record_uploaded(state: _State, t: _Target, size: int) -> int:
    """Blob uploaded, rows referencing it say so, open requests served, events out: one
    call of scsync_blob_record_uploaded (baseline_files_cloud.sql), its own transaction."""
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            named("files_blob_record_uploaded"),
            {"site_id": t.site_id, "sha256": t.sha256, "size": size},
        )
        return int(await _scalar(cur))
