"""Blob endpoints of the cloud API: presigned S3 URLs for sites, verification, on-demand.

An aiohttp sub-application. The cloud API mounts it with
``app.add_subapp("/v1/blobs", make_blobs_app(BlobSettings(...)))``; tests run it alone
on a loopback port. Sites hold no S3 credentials: this app signs short-lived URLs for
exactly one key, ``sites/<site_id>/blobs/<sha256>``, built here from the path's site id
(which must be the caller's) and a validated sha256, so no caller-supplied text ever
becomes part of a key.

After an upload the cloud proves size and sha256 of the object before it records the
blob as uploaded. Default (``verify_by="checksum"``): the URL of a single PUT is signed
with the blob's SHA256 as ``x-amz-checksum-sha256``, so S3 refuses any other bytes
(``BadDigest``) and a HEAD afterwards shows the checksum S3 checked; an object without
that checksum (a multipart upload, a store that keeps none) is read back through
hashlib in chunks, which is all ``verify_by="read"`` does. ``verify_by="copy"`` has S3
compute the SHA256 itself in an in-place copy. S3's ETag of a multipart object is not a
content hash, and a SHA256 a client sends with its parts is a checksum of part
checksums, so neither proves the bytes. Endpoints and JSON
bodies are listed in docs/files.md.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import psycopg
import psycopg_pool
from aiohttp import web
from psycopg.rows import namedtuple_row

from api.errors import ApiError, ConfigError
from api.presign import Presigner
from schema import jsonbody
from schema.auth import AuthError, Principal, TokenCache, bearer
from schema.revocation import DEFAULT_CHECK_S, Revocations, check_interval
from schema.sql import psycopg_statement
from schema.urls import CONNECT_TIMEOUT_S, libpq_url

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["BlobSettings", "blob_key", "make_blobs_app"]

MiB: Final = 1024 * 1024
SHA256_RE: Final = re.compile(r"^[0-9a-f]{64}$")
# ASCII digits only: str.isdigit() also accepts digits int() refuses ("²").
SITE_ID_RE: Final = re.compile(r"^[0-9]{1,9}$")
ROW_ID_RE: Final = re.compile(r"^[0-9]{1,19}$")
S3_MIN_PART: Final = 5 * MiB
S3_MAX_PARTS: Final = 10_000
# How long an upload plan signs part URLs before the event loop takes a turn.
SIGN_TURN_S: Final = 0.002
# The largest object one CopyObject may copy (bigger ones would need UploadPartCopy).
S3_COPY_LIMIT: Final = 5 * 1024**3
VERIFY_MODES: Final = frozenset({"checksum", "read", "copy"})
FILE_TABLES: Final = ("images", "captures", "project_files")
UPLOAD_ROLES: Final = frozenset({"site", "editor", "admin", "vendor_admin"})
T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlobSettings:
    db_url: str  # the cloud database
    jwt_secret: str
    bucket: str
    s3_endpoint_url: str | None = None  # None: AWS itself
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    url_ttl_s: int = 600
    verify_chunk: int = MiB
    # How complete proves the bytes: "checksum" has the store check a signed SHA256 on
    # single PUTs (no bytes back through the API) and reads multipart objects back;
    # "read" streams every object back through hashlib; "copy" has the store hash it
    # (in-place CopyObject). On moto "copy" costs more than reading back (it re-stores
    # the object). See docs/files.md.
    verify_by: str = "checksum"
    executor_threads: int = 8
    db_pool_size: int = 20
    # How long a request waits for a database connection before it is answered 503.
    db_timeout_s: float = 10.0
    # A revoked token is refused within this many seconds (schema/revocation.py).
    revocation_check_s: float = DEFAULT_CHECK_S
    # The largest blob an upload plan is made for; above it the plan is a 400.
    max_blob_size: int = 64 * 1024**3

    def __post_init__(self) -> None:
        if self.verify_by not in VERIFY_MODES:
            raise ValueError(f"verify_by must be one of {sorted(VERIFY_MODES)}")
        check_interval(self.revocation_check_s)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BlobSettings:
        """``SCSYNC_CLOUD_DB_URL``, ``SCSYNC_JWT_SECRET`` and ``SCSYNC_S3_*`` variables."""
        e = dict(os.environ if env is None else env)
        return cls(
            db_url=e["SCSYNC_CLOUD_DB_URL"],
            jwt_secret=e["SCSYNC_JWT_SECRET"],
            bucket=e["SCSYNC_S3_BUCKET"],
            s3_endpoint_url=e.get("SCSYNC_S3_ENDPOINT_URL") or None,
            s3_region=e.get("SCSYNC_S3_REGION", "us-east-1"),
            s3_access_key=e.get("SCSYNC_S3_ACCESS_KEY") or None,
            s3_secret_key=e.get("SCSYNC_S3_SECRET_KEY") or None,
            multipart_threshold=int(e.get("SCSYNC_S3_MULTIPART_THRESHOLD", 64 * MiB)),
            part_size=int(e.get("SCSYNC_S3_PART_SIZE", 16 * MiB)),
            url_ttl_s=int(e.get("SCSYNC_S3_URL_TTL_S", 600)),
            verify_by=e.get("SCSYNC_S3_VERIFY_BY", "checksum"),
            revocation_check_s=float(e.get("SCSYNC_REVOCATION_CHECK_S", DEFAULT_CHECK_S)),
            max_blob_size=int(e.get("SCSYNC_S3_MAX_BLOB_SIZE", 64 * 1024**3)),
        )


def blob_key(site_id: int, sha256: str) -> str:
    """The one S3 key a blob of a site may have."""
    return f"sites/{site_id}/blobs/{sha256}"


class BlobHttpError(ApiError):
    """An error of the blob endpoints, with its status and code. Part of the API's one
    hierarchy, so it leaves as the one error body ``{"error", "message", "field"}``,
    whether the endpoints run alone or mounted by the cloud API."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body(), status=exc.status)


def _bad(message: str) -> BlobHttpError:
    return BlobHttpError(400, "bad_request", message)


def _forbidden(message: str) -> BlobHttpError:
    return BlobHttpError(403, "forbidden", message)


def _not_found(message: str) -> BlobHttpError:
    return BlobHttpError(404, "not_found", message)


Conn = psycopg.AsyncConnection[Any]  # rows are named tuples (namedtuple_row)
Pool = psycopg_pool.AsyncConnectionPool[Conn]


@dataclass
class _State:
    settings: BlobSettings
    # Autocommit connections: a single statement is one round trip (no BEGIN/COMMIT);
    # the few multi-statement steps open a transaction themselves. psycopg's pool, not
    # SQLAlchemy's async engine: a third of the CPU per statement (185 vs 600 µs).
    pool: Pool
    s3: S3Client
    presign: Presigner
    loop_executor: Any
    # Reads objects back through presigned GETs: aiohttp costs this process two thirds
    # of the CPU per object that botocore's get_object does (2 MB on moto: 2.7 vs 4.0 ms).
    http: aiohttp.ClientSession
    # verify_by=checksum trusts the checksum S3 keeps only where the store refuses a
    # wrong one. Probed once (None: not yet, or the probe could not tell).
    store_checks_sha256: bool | None = None
    probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_probe: float = 0.0

    async def verify_by(self) -> str:
        """The verification in force: the setting, except that ``checksum`` on a store
        that does not check ``x-amz-checksum-sha256`` (or that could not be probed
        yet: asked again at most once a minute) reads uploads back."""
        if self.settings.verify_by != "checksum":
            return self.settings.verify_by
        if self.store_checks_sha256 is None and time.monotonic() >= self.next_probe:
            async with self.probe_lock:
                if self.store_checks_sha256 is None and time.monotonic() >= self.next_probe:
                    self.store_checks_sha256 = await _probe_sha256_check(self)
                    self.next_probe = time.monotonic() + PROBE_RETRY_S
        return "checksum" if self.store_checks_sha256 else "read"

    async def s3_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # boto3 blocks; its calls run on a bounded pool so the event loop keeps serving.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.loop_executor, partial(fn, *args, **kwargs))


STATE: Final = web.AppKey("blobs_state", _State)
PRINCIPAL: Final = web.RequestKey("blobs_principal", Principal)


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


_SETTINGS: Final = web.AppKey("blobs_settings", BlobSettings)
_TOKENS: Final = web.AppKey("blobs_tokens", TokenCache)
_REVOCATIONS: Final = web.AppKey("blobs_revocations", Revocations)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    settings = app[_SETTINGS]
    pool: Pool = psycopg_pool.AsyncConnectionPool(
        libpq_url(settings.db_url),
        # Sized for 20 uploads overlapping (a smaller pool showed backend starts in this
        # process's profile); opened lazily beyond min_size.
        min_size=2,
        max_size=settings.db_pool_size,
        kwargs={
            "autocommit": True,
            "row_factory": namedtuple_row,
            "connect_timeout": CONNECT_TIMEOUT_S,
        },
        connection_class=Conn,
        open=False,
        timeout=settings.db_timeout_s,
    )
    await pool.open()
    session = boto3.session.Session(
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
    )
    credentials = session.get_credentials()
    if credentials is None:
        await pool.close()
        raise ConfigError(
            "no S3 credentials: set the S3 access key and secret key, "
            "or run where AWS's own credential chain finds some"
        )
    s3 = session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            max_pool_connections=settings.executor_threads,
        ),
    )
    executor = ThreadPoolExecutor(settings.executor_threads, thread_name_prefix="blobs-s3")
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    )
    # The store's checksum check is probed on the first upload (_State.verify_by), not
    # here: a store that is slow to answer must not hold up the start.
    app[STATE] = _State(
        settings=settings,
        pool=pool,
        s3=s3,
        presign=Presigner(
            credentials, settings.s3_endpoint_url, settings.s3_region, settings.bucket
        ),
        loop_executor=executor,
        http=http,
    )
    try:
        yield
    finally:
        await http.close()
        executor.shutdown(wait=False, cancel_futures=True)
        await pool.close()


# -- authentication and addressing ---------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


# -- database -----------------------------------------------------------------------------


async def _scalar(cur: psycopg.AsyncCursor[Any]) -> Any:
    """The first column of a statement that returns exactly one row."""
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row[0]


async def _blob_row(conn: Conn, t: _Target) -> Any:
    cur = await conn.execute(
        psycopg_statement("files_blob_get"), {"site_id": t.site_id, "sha256": t.sha256}
    )
    return await cur.fetchone()


# -- handlers -----------------------------------------------------------------------------


async def _blob_info(request: web.Request) -> web.Response:
    t = _target(request)
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        row = await _blob_row(conn, t)
    if row is None:
        raise _not_found("this site has no such blob")
    return web.json_response({"sha256": t.sha256, "size": row.size, "state": row.state})


def _part_count(size: int, part_size: int) -> int:
    return max(1, math.ceil(size / part_size))


def _effective_part_size(settings: BlobSettings, size: int) -> int:
    part = max(settings.part_size, S3_MIN_PART)
    # S3 allows at most 10,000 parts: grow the part size for very large blobs.
    while _part_count(size, part) > S3_MAX_PARTS:
        part *= 2
    return part


async def _presign_upload(request: web.Request) -> web.Response:
    t = _target(request)
    _require_writer(t.principal)
    body = await _json_body(request)
    size = _size_of(body)
    state = request.app[STATE]
    settings = state.settings
    if size > settings.max_blob_size:
        raise _bad(f"size is over the largest blob accepted ({settings.max_blob_size} bytes)")
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
            psycopg_statement("files_blob_pending"),
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
            psycopg_statement("files_blob_pending"),
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
    t = _target(request)
    _require_writer(t.principal)
    body = await _json_body(request)
    size = _size_of(body)
    state = request.app[STATE]
    settings = state.settings
    if size > settings.max_blob_size:
        raise _bad(f"size is over the largest blob accepted ({settings.max_blob_size} bytes)")
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
            raise BlobHttpError(409, "incomplete", "the multipart upload has no parts")
        expected = _part_count(size, _effective_part_size(settings, size))
        if len(done) != expected:
            raise BlobHttpError(
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
            raise BlobHttpError(409, "incomplete", f"S3 refused to complete: {exc}") from exc
    ok, why = await _verify(state, t, size)
    if not ok:
        await state.s3_call(state.s3.delete_object, Bucket=settings.bucket, Key=t.key)
        async with state.pool.connection() as conn:
            await conn.execute(
                psycopg_statement("files_blob_forget"),
                {"site_id": t.site_id, "sha256": t.sha256},
            )
        raise BlobHttpError(422, "verification_failed", why)
    served = await _record_uploaded(state, t, size)
    return web.json_response(
        {"status": "uploaded", "key": t.key, "size": size, "requests_served": served}
    )


async def _verify(state: _State, t: _Target, size: int) -> tuple[bool, str]:
    """Do the object's bytes have this blob's size and sha256?

    ``verify_by="copy"``: S3 itself hashes the object, an in-place CopyObject with
    ``ChecksumAlgorithm=SHA256`` making the store compute the full-object SHA256 of what
    it holds (server-side, whatever the client sent and however many parts it had).
    ``"checksum"``: a HEAD shows the full-object SHA256 that S3 checked on the single
    PUT (its URL was signed with it); a multipart object has none and is read back.
    ``"read"``, a store that returns no checksum, or an object over CopyObject's 5 GiB
    limit: the object is read back through hashlib (one GET, no HEAD before it)."""
    from botocore.exceptions import ClientError

    settings = state.settings
    actual: str | None = None
    mode = await state.verify_by()
    if mode == "checksum":
        stored = await _head(state, t)
        if stored is None:
            return False, "no object was uploaded for this blob"
        length, actual = stored
        if length != size:
            return False, f"size is {length}, expected {size}"
    elif mode == "copy" and size <= S3_COPY_LIMIT:
        try:
            head = await state.s3_call(state.s3.head_object, Bucket=settings.bucket, Key=t.key)
        except ClientError:
            return False, "no object was uploaded for this blob"
        if head["ContentLength"] != size:
            return False, f"size is {head['ContentLength']}, expected {size}"
        actual = await _store_sha256(state, t)
    if actual is None:
        read = await _read_back(state, t, size)
        if isinstance(read, tuple):
            return read
        actual = read
    if actual != t.sha256:
        return False, f"sha256 of the uploaded bytes is {actual}"
    return True, ""


async def _probe_sha256_check(state: _State) -> bool | None:
    """Does the store refuse bytes whose SHA256 is not the one signed into the URL? A
    PUT of a few bytes under ``scsync-probe/`` (outside every site's prefix) through a
    presigned URL, as a site sends it, declaring another digest. True: refused (S3,
    MinIO); False: stored (then deleted) or refused as a bad request of another kind, so
    this store's checksums prove nothing and uploads are read back; None: no answer
    about checksums (unreachable, a permission, an outage)."""
    settings = state.settings
    key = f"scsync-probe/sha256-check-{uuid.uuid4().hex}"
    declared = base64.b64encode(hashlib.sha256(b"not the body").digest()).decode()
    url = state.presign.url(
        "PUT", key, settings.url_ttl_s, headers={"x-amz-checksum-sha256": declared}
    )
    try:
        async with state.http.put(
            url, data=b"probe", headers={"x-amz-checksum-sha256": declared}
        ) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("could not probe the store's checksum check: %s", exc)
        return None
    if status == 400 and any(code in body for code in _DIGEST_REFUSALS):
        return True
    if status not in (200, 400):  # no answer about checksums (a permission, an outage)
        log.warning("probing the store's checksum check: S3 answered %s %r", status, body[:200])
        return None
    if status == 200:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            await state.s3_call(state.s3.delete_object, Bucket=settings.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not delete the probe object %s: %s", key, exc)
    log.warning(
        "the store answered %s to bytes whose SHA256 is not the signed one (%r): "
        "verify_by=checksum reads uploads back on it",
        status,
        body[:200],
    )
    return False


PROBE_RETRY_S: Final = 60.0
# How S3 (BadDigest) and S3-compatible stores name a checksum that does not match.
_DIGEST_REFUSALS: Final = (b"BadDigest", b"XAmzContentChecksumMismatch", b"InvalidDigest")


def _b64_sha256(hex_digest: str) -> str:
    """A hex SHA256 as S3 writes checksums (base64 of the 32 bytes)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _full_object_sha256(b64: object) -> str | None:
    """S3's SHA256 checksum (base64) as hex, or None when there is none or it is a
    checksum of part checksums (``...-<n>``)."""
    if not isinstance(b64, str) or "-" in b64:
        return None
    try:
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


async def _head(state: _State, t: _Target) -> tuple[int, str | None] | None:
    """Size and full-object SHA256 (hex, None when S3 has none) of the object, through
    a presigned HEAD in checksum mode; None when there is no object."""
    checksum_mode = {"x-amz-checksum-mode": "ENABLED"}
    url = state.presign.url("HEAD", t.key, state.settings.url_ttl_s, headers=checksum_mode)
    try:
        async with state.http.head(url, headers=checksum_mode) as resp:
            if resp.status in (403, 404):
                return None
            if resp.status != 200 or resp.content_length is None:
                raise BlobHttpError(502, "store_error", f"S3 answered {resp.status} to a HEAD")
            return resp.content_length, _full_object_sha256(
                resp.headers.get("x-amz-checksum-sha256")
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BlobHttpError(
            502, "store_error", f"asking S3 about the object failed: {exc}"
        ) from exc


async def _store_sha256(state: _State, t: _Target) -> str | None:
    """The SHA256 that S3 computes while copying the object onto itself (hex), or None
    when the store gives none. ``MetadataDirective=REPLACE`` is what makes an in-place
    copy legal; the metadata left on the object says it was verified."""
    from botocore.exceptions import ClientError

    bucket = state.settings.bucket
    try:
        copied = await state.s3_call(
            state.s3.copy_object,
            Bucket=bucket,
            Key=t.key,
            CopySource={"Bucket": bucket, "Key": t.key},
            MetadataDirective="REPLACE",
            Metadata={"scsync-sha256": t.sha256},
            ChecksumAlgorithm="SHA256",
        )
    except ClientError as exc:
        log.info("in-place checksum copy of %s refused (%s); reading it back", t.key, exc)
        return None
    return _full_object_sha256(copied.get("CopyObjectResult", {}).get("ChecksumSHA256"))


async def _read_back(state: _State, t: _Target, size: int) -> str | tuple[bool, str]:
    """The sha256 (hex) of the object read back through a presigned GET, or the refusal
    when it is missing or has the wrong size."""
    url = state.presign.url("GET", t.key, state.settings.url_ttl_s)
    h = hashlib.sha256()
    try:
        async with state.http.get(url) as resp:
            if resp.status in (403, 404):
                return False, "no object was uploaded for this blob"
            if resp.status != 200:
                raise BlobHttpError(502, "store_error", f"S3 answered {resp.status} to a read")
            if resp.content_length != size:
                return False, f"size is {resp.content_length}, expected {size}"
            async for chunk in resp.content.iter_chunked(state.settings.verify_chunk):
                h.update(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BlobHttpError(502, "store_error", f"reading the object back failed: {exc}") from exc
    return h.hexdigest()


async def _record_uploaded(state: _State, t: _Target, size: int) -> int:
    """Blob uploaded, rows referencing it say so, open requests served, events out: one
    call of scsync_blob_record_uploaded (r0009), its own transaction."""
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            psycopg_statement("files_blob_record_uploaded"),
            {"site_id": t.site_id, "sha256": t.sha256, "size": size},
        )
        return int(await _scalar(cur))


async def _publish(
    conn: Conn,
    site_id: int,
    kind: str,
    table: str | None,
    row_id: int | None,
    payload: dict[str, Any],
) -> None:
    await conn.execute(
        psycopg_statement("files_publish"),
        {
            "site_id": site_id,
            "type": kind,
            "table_name": table,
            "row_id": row_id,
            "payload": json.dumps(payload),
        },
    )


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


async def _request_blob(request: web.Request) -> web.Response:
    """A cloud client wants a blob that is still only on the site (on-demand)."""
    t = _target(request)
    body = await _json_body(request)
    table = body.get("table")
    row_id = body.get("row_id")
    if table is not None and table not in FILE_TABLES:
        raise _bad(f"table must be one of {', '.join(FILE_TABLES)}")
    if row_id is not None and (
        isinstance(row_id, bool)
        or not isinstance(row_id, int | str)
        or not ROW_ID_RE.fullmatch(str(row_id))
    ):
        raise _bad("row_id must be an integer (or its decimal string)")
    state = request.app[STATE]
    async with state.pool.connection() as conn, conn.transaction():
        row = await _blob_row(conn, t)
        if row is not None and row.state == "uploaded":
            return web.json_response({"status": "uploaded", "key": t.key})
        added = await conn.execute(
            psycopg_statement("files_request_add"),
            {
                "site_id": t.site_id,
                "sha256": t.sha256,
                "table_name": table,
                "row_id": int(row_id) if row_id is not None else None,
                "requested_by": t.principal.subject,
            },
        )
        req_id = await _scalar(added)
        await _publish(
            conn,
            t.site_id,
            "blob.requested",
            table,
            int(row_id) if row_id is not None else None,
            {"sha256": t.sha256, "request_id": str(req_id)},
        )
    return web.json_response({"status": "requested", "request_id": req_id}, status=202)


async def _open_requests(request: web.Request) -> web.Response:
    principal, site_id = _site_of(request)
    _require_writer(principal)
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        cur = await conn.execute(
            psycopg_statement("files_requests_open"), {"site_id": site_id, "limit": 100}
        )
        rows = await cur.fetchall()
    return web.json_response(
        {
            "requests": [
                {
                    "id": r.id,
                    "sha256": r.sha256,
                    "table": r.table_name,
                    "row_id": str(r.row_id) if r.row_id is not None else None,
                    "requested_at": r.requested_at.isoformat(),
                }
                for r in rows
            ]
        }
    )


async def _delete_blob(request: web.Request) -> web.Response:
    """Remove a blob no active row needs any more (old-data option 'delete')."""
    t = _target(request)
    _require_writer(t.principal)
    state = request.app[STATE]
    params = {"site_id": t.site_id, "sha256": t.sha256}
    async with state.pool.connection() as conn, conn.transaction():
        referenced = await conn.execute(psycopg_statement("files_blob_referenced"), params)
        if await _scalar(referenced):
            raise BlobHttpError(409, "in_use", "an active record still references this blob")
        await conn.execute(psycopg_statement("files_blob_deleted"), params)
    await state.s3_call(state.s3.delete_object, Bucket=state.settings.bucket, Key=t.key)
    return web.json_response({"status": "deleted", "key": t.key})


def main() -> None:
    """``python -m api.blobs --port N``: the blob endpoints alone (settings from env)."""
    import argparse

    parser = argparse.ArgumentParser(description="scsync blob endpoints (standalone)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    import uvloop

    from schema.redact import install

    install("WARNING")  # aiohttp quotes a refused request's headers: redacted
    root = web.Application()
    root.add_subapp("/v1/blobs", make_blobs_app(BlobSettings.from_env()))
    # As `scsync api run` and lockd serve: uvloop, no access log.
    web.run_app(
        root,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
