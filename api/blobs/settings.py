"""The blob endpoints' settings (``BlobSettings``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from schema.revocation import DEFAULT_CHECK_S, check_interval

if TYPE_CHECKING:
    pass


MiB: Final = 1024 * 1024


VERIFY_MODES: Final = frozenset({"checksum", "read", "copy"})


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
