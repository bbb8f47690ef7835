"""Errors of the file lanes (transfer, scope policy, backfill).

``FilesError`` is the base the CLI maps; driver and HTTP errors are wrapped at the
boundary that meets them (``raise ... from exc``).
"""

from __future__ import annotations

from typing import Any

from schema.errors import Category, ScsyncError


class FilesError(ScsyncError):
    """Base of every error raised by replicator.files."""


class ApiRefused(FilesError):
    """The cloud's blob endpoints answered with an error status."""

    category = Category.REFUSED

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"blob API answered {status}: {message}")
        self.status = status
        self.answer = body  # the JSON error body (or text) it answered


class DatabaseUnreachable(FilesError):
    """A database of the file lanes could not be reached (retry later)."""

    category = Category.UNAVAILABLE


class TransferFailed(FilesError):
    """Bytes could not be moved to or from S3 after the allowed retries."""


class BlobCorrupt(FilesError):
    """Downloaded bytes do not match the blob's sha256 or size (never written in place)."""


class BlobMissing(FilesError):
    """The local file of a blob is gone or has changed since its row was written."""


class PolicyError(FilesError):
    """A scope policy or selection that cannot be stored (unknown table, bad period...)."""

    category = Category.USAGE


class RecordNotFound(FilesError):
    """No such record in a synced table."""

    category = Category.REFUSED


class StoreRefusedBytes(TransferFailed):
    """S3 refused a PUT because the bytes are not those whose SHA256 the URL was signed
    with (``BadDigest``): sending the same file again cannot help."""


class CloudUnavailable(FilesError):
    """The cloud API could not be reached, or answered 5xx (retry later)."""

    category = Category.UNAVAILABLE


class CloudRefused(FilesError):
    """The cloud API refused a request: the token, the tenant wall (another site's row
    or record), or a malformed request; the message is the API's."""

    category = Category.REFUSED
