"""Replicator settings: a TOML file (``--config``) and ``SCSYNC_*`` environment variables,
the environment winning (pydantic-settings does the parsing and validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    SettingsConfigDict,
)

from replicator.errors import SettingsError
from schema.config import (
    check_not_placeholder,
    check_postgres_url,
    layered_settings,
    read_config_file,
)
from schema.errors import ConfigError


class Settings(BaseSettings):
    """Everything the daemon needs; field ``x`` is read from ``SCSYNC_X`` too."""

    # An empty variable is no setting (SCSYNC_SITE_TOKEN is shared with the file lanes).
    model_config = SettingsConfigDict(env_prefix="SCSYNC_", extra="forbid", env_ignore_empty=True)

    local_db_url: str = Field(description="the site's local database")
    cloud_api_url: str = Field(description="the cloud API (https://...), sync endpoints")
    site_token: str = Field(
        min_length=1, description="this site's token (POST /v1/sites/{id}/token)", repr=False
    )
    ca_file: str = Field(default="", description="CA bundle for the cloud API's HTTPS")
    # Who holds this site's lane leases on the cloud; default: this host and database.
    lane_holder: str = Field(default="", max_length=200, pattern=r"^[A-Za-z0-9._:/@+-]*$")
    site_id: int = Field(gt=0)
    lanes: tuple[Literal["push", "pull"], ...] = ("push", "pull")
    batch_size: int = Field(default=1000, gt=0)
    poll_interval_s: float = Field(default=5.0, gt=0)
    # Where the site's own changes come from: "wal" (the replicator reads the site's WAL
    # from a logical replication slot and writes history and outbox off the writer's
    # path; needs wal_level = logical and a role with REPLICATION: docs/operations.md)
    # or "triggers" (the statement-level triggers write them in the writer's
    # transaction: for a server that cannot have wal_level = logical).
    capture: Literal["triggers", "wal"] = "wal"
    # How often the site's outbox is looked at for changes nobody woke the lane for (a
    # legacy application's writes: the capture triggers notify no one).
    outbox_probe_s: float = Field(default=0.01, gt=0)
    op_timeout_s: float = Field(default=60.0, gt=0)
    connect_timeout_s: int = Field(default=10, gt=0)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    stop_grace_s: float = Field(default=5.0, ge=0)
    dead_letter_initial_s: float = Field(default=5.0, gt=0)
    dead_letter_max_s: float = Field(default=600.0, gt=0)
    schema_refresh_s: float = Field(default=10.0, gt=0)
    metrics_interval_s: float = Field(default=2.0, gt=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)  # Prometheus /metrics; 0 = off
    metrics_host: str = "127.0.0.1"
    log_level: str = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _no_cloud_db_url(cls, data: Any) -> Any:
        if isinstance(data, dict) and "cloud_db_url" in data:
            raise ValueError(CLOUD_DB_URL_GONE)
        return data

    @field_validator("local_db_url")
    @classmethod
    def _postgres_url(cls, value: str, info: Any) -> str:
        try:
            check_not_placeholder(str(info.field_name), value)
            return check_postgres_url(str(info.field_name), value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("site_token")
    @classmethod
    def _real_token(cls, value: str, info: Any) -> str:
        try:
            check_not_placeholder(str(info.field_name), value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("cloud_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the cloud API's https:// URL")
        return value.rstrip("/")


CLOUD_DB_URL_GONE = (
    "cloud_db_url is no longer used: a site reaches the cloud only through the cloud API. "
    "Replace it with cloud_api_url (the cloud API's https:// URL), site_token (from "
    "POST /v1/sites/{id}/token, as for the blob endpoints) and, for a private CA, ca_file"
)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from (lowest first) the TOML file, the environment, ``overrides``."""
    # The file's [replicator] table (or its top level): schema.config, shared by every service.
    try:
        from_file = {} if config_file is None else read_config_file(config_file, "replicator")
    except ConfigError as exc:
        raise SettingsError(str(exc)) from exc

    try:
        loaded = layered_settings(Settings, from_file)(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        raise SettingsError(f"bad replicator settings: {problems}") from exc
    return Settings.model_validate(loaded.model_dump())


def _problem(error: Any) -> str:
    """One validation error as 'key: what is wrong', naming where the key can be set."""
    key = ".".join(str(p) for p in error["loc"]) or "settings"
    if error["type"] == "missing":
        return f"{key}: required (in the config file or SCSYNC_{key.upper()})"
    return f"{key}: {str(error['msg']).removeprefix('Value error, ')}"
