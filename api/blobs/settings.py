"""The blob endpoints' settings (``BlobSettings``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.errors import ConfigError
from schema.revocation import DEFAULT_CHECK_S, check_interval

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
    def from_env(cls, env: Mapping[str, str] | None = None) -> BlobSettings:
        """``SCSYNC_CLOUD_DB_URL``, ``SCSYNC_JWT_SECRET`` and ``SCSYNC_S3_*`` variables
        (``python -m api.blobs``; the cloud API passes its own settings), read and
        checked by pydantic-settings: the process's, under ``env`` when given."""
        try:
            read = _BlobEnv.model_validate({} if env is None else dict(env))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"bad blob endpoint settings: {problems}") from exc
        return cls(**read.model_dump())


class _BlobEnv(BaseSettings):
    """The environment of the blob endpoints run alone (names as they always were)."""

    model_config = SettingsConfigDict(extra="ignore", env_ignore_empty=True)

    db_url: str = Field(validation_alias="SCSYNC_CLOUD_DB_URL")
    jwt_secret: str = Field(validation_alias="SCSYNC_JWT_SECRET", repr=False)
    bucket: str = Field(validation_alias="SCSYNC_S3_BUCKET")
    s3_endpoint_url: str | None = Field(None, validation_alias="SCSYNC_S3_ENDPOINT_URL")
    s3_region: str = Field("us-east-1", validation_alias="SCSYNC_S3_REGION")
    s3_access_key: str | None = Field(None, validation_alias="SCSYNC_S3_ACCESS_KEY")
    s3_secret_key: str | None = Field(None, validation_alias="SCSYNC_S3_SECRET_KEY", repr=False)
    multipart_threshold: int = Field(64 * MiB, validation_alias="SCSYNC_S3_MULTIPART_THRESHOLD")
    part_size: int = Field(16 * MiB, validation_alias="SCSYNC_S3_PART_SIZE")
    url_ttl_s: int = Field(600, validation_alias="SCSYNC_S3_URL_TTL_S")
    verify_by: str = Field("checksum", validation_alias="SCSYNC_S3_VERIFY_BY")
    revocation_check_s: float = Field(DEFAULT_CHECK_S, validation_alias="SCSYNC_REVOCATION_CHECK_S")
    max_blob_size: int = Field(64 * 1024**3, validation_alias="SCSYNC_S3_MAX_BLOB_SIZE")
