"""Proving an uploaded object's size and sha256 (``verify_by``: checksum, read, copy),
and probing whether the store checks a signed SHA256."""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Final

import aiohttp

from api.blobs.target import _Target
from schema.web import HttpError

if TYPE_CHECKING:
    from api.blobs.resources import _State


log = logging.getLogger(__name__)


# The largest object one CopyObject may copy (bigger ones would need UploadPartCopy).
S3_COPY_LIMIT: Final = 5 * 1024**3


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
                raise HttpError(502, "store_error", f"S3 answered {resp.status} to a HEAD")
            return resp.content_length, _full_object_sha256(
                resp.headers.get("x-amz-checksum-sha256")
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HttpError(502, "store_error", f"asking S3 about the object failed: {exc}") from exc


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
                raise HttpError(502, "store_error", f"S3 answered {resp.status} to a read")
            if resp.content_length != size:
                return False, f"size is {resp.content_length}, expected {size}"
            async for chunk in resp.content.iter_chunked(state.settings.verify_chunk):
                h.update(chunk)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise HttpError(502, "store_error", f"reading the object back failed: {exc}") from exc
    return h.hexdigest()
