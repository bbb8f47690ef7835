"""Settings of one API process: a TOML file, then ``SCSYNC_API_<KEY>`` environment
variables on top, read and type-checked by pydantic-settings; every problem is reported
naming the key (or the variable) it concerns.

The file holds the keys at top level or under ``[api]``::

    db_url = "postgresql://scsync@127.0.0.1/scsync_local"
    jwt_secret = "... at least 32 bytes ..."
    port = 8080
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    SettingsConfigDict,
)

from api.errors import ConfigError
from schema.config import (
    check_http_url,
    check_not_placeholder,
    check_postgres_url,
    layered_settings,
    read_config_file,
)
from schema.errors import ConfigError as SchemaConfigError
from schema.revocation import MAX_CHECK_S

Side = Literal["local", "cloud"]
Bus = Literal["postgres", "rabbitmq"]
ENV_PREFIX: Final = "SCSYNC_API_"
DB_URL_ENV: Final[dict[str, str]] = {"local": "SCSYNC_LOCAL_DB_URL", "cloud": "SCSYNC_CLOUD_DB_URL"}
MIN_SECRET_BYTES: Final = 32


class Settings(BaseSettings):
    """Field ``x`` is key ``x`` of the file and variable ``SCSYNC_API_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    side: Side
    db_url: str = ""  # required: load_settings names it when missing
    jwt_secret: str = Field(default="", repr=False)  # required, likewise
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl_s: int = 3600
    log_level: str = "INFO"
    # GET /metrics answers only this bearer token; unset: /metrics is off (the cloud's
    # figures are per site, and no clinic or passer-by may read other clinics' activity).
    metrics_token: str = Field(default="", repr=False)
    # A revoked token (account deleted or disabled, site disabled) is refused within this
    # many seconds (schema/revocation.py: the check's cache), at most 30.
    revocation_check_s: float = 10.0
    client_max_size: int = 1024 * 1024
    pool_min: int = 1
    # One pool serves the whole process (the cloud's mounted sync, lockd and blob apps
    # too): sized for about 20 uploads overlapping, as the blob app's own pool was.
    pool_max: int = 20
    # WebSocket: per-client queue bound (then disconnect), replay bound, ping period.
    ws_queue_size: int = 256
    ws_replay_limit: int = 1000
    ws_heartbeat_s: float = 20.0
    # Subscriptions (sites + patients + records) one WebSocket may hold at most.
    ws_max_subscriptions: int = 1000
    # Sign-in throttle (api/throttle.py): failures per account / per client address
    # within the window, then 429 with Retry-After.
    login_max_failures: int = 5
    login_max_failures_per_address: int = 20
    login_window_s: float = 60.0
    # Where events come from on this instance: the DB's LISTEN/NOTIFY, or (cloud)
    # a RabbitMQ fanout exchange fed by one relay instance.
    bus: str = "postgres"  # Bus; validate() names a wrong one
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_exchange: str = "scsync.events"
    # Local side: the cloud's lockd (base URL of its HTTP API) and this site's token.
    lockd_url: str = ""
    lockd_token: str = ""
    lockd_timeout_s: float = 3.0
    # Local side: the cloud API's base URL; with lockd_token (the site's token) the local
    # API follows the cloud's lease events of this site (api/relay.py).
    cloud_url: str = ""
    # Cloud side: lockd is mounted at /v1/locks with this lease policy; the blob
    # endpoints at /v1/blobs when an S3 bucket is configured.
    mount_lockd: bool = True
    lease_ttl_s: float = 30.0
    idle_warn_s: float = 600.0
    idle_close_s: float = 300.0
    mount_blobs: bool = True
    s3_bucket: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    # How the cloud proves an upload's bytes (api/blobs/verify.py, docs/files.md).
    s3_verify_by: str = "checksum"
    # The largest blob an upload plan is made for (bytes); above it: 400.
    blob_max_size: int = 64 * 1024**3
    # Cloud side: the sync endpoints (/v1/sync, api/sync.py); a lane's lease lapses this
    # long after its replicator's last request.
    lane_lease_ttl_s: float = 30.0

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("at least 32 characters (a scrape credential, not a password)")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: Any) -> Any:
        # TOML's true is no port number (pydantic would take it as 1).
        if isinstance(value, bool) and info.field_name in _INT_KEYS:
            raise ValueError("a boolean")
        return value


_INT_KEYS: Final = {
    "port",
    "token_ttl_s",
    "client_max_size",
    "pool_min",
    "pool_max",
    "ws_queue_size",
    "ws_replay_limit",
    "ws_max_subscriptions",
    "login_max_failures",
    "login_max_failures_per_address",
    "blob_max_size",
}
_FLOAT_KEYS: Final = {
    "revocation_check_s",
    "ws_heartbeat_s",
    "lockd_timeout_s",
    "lease_ttl_s",
    "idle_warn_s",
    "idle_close_s",
    "login_window_s",
    "lane_lease_ttl_s",
}
_BOOL_KEYS: Final = {"mount_lockd", "mount_blobs"}


def load_settings(
    side: str,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from (lowest first) ``SCSYNC_<SIDE>_DB_URL`` for db_url, the file, the
    environment (the process's, or ``env``), ``overrides``; validated."""
    if side not in ("local", "cloud"):
        raise ConfigError(f"unknown side {side!r} (use 'local' or 'cloud')", field="side")
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            from_file = dict(read_config_file(Path(config_file), "api"))
        except SchemaConfigError as exc:
            raise ConfigError(str(exc)) from exc
        from_file.pop("side", None)
    environ: Mapping[str, str] = os.environ if env is None else env
    fallback = {"db_url": environ[DB_URL_ENV[side]]} if environ.get(DB_URL_ENV[side]) else {}
    # With ``env`` given, its SCSYNC_API_* variables stand in for the process's.
    given_env = (
        None
        if env is None
        else {
            name: env[ENV_PREFIX + name.upper()]
            for name in Settings.model_fields
            if name != "side" and ENV_PREFIX + name.upper() in env
        }
    )

    sources = (
        layered_settings(Settings, from_file, fallback)
        if given_env is None
        else layered_settings(Settings, given_env, from_file, fallback, env=False)
    )

    try:
        loaded = sources(**overrides, side="local" if side == "local" else "cloud")
    except ValidationError as exc:
        raise _problem(exc.errors()[0], environ, config_file, from_file) from None
    settings = Settings.model_validate(loaded.model_dump())
    for required in ("db_url", "jwt_secret"):
        if not getattr(settings, required):
            raise ConfigError(
                f"setting {required!r} is required (config file or {ENV_PREFIX}{required.upper()})",
                field=required,
            )
    validate(settings)
    return settings


def _problem(
    error: Any, environ: Mapping[str, str], config_file: str | Path | None, file: dict[str, Any]
) -> ConfigError:
    """The first problem pydantic found, worded as the operator reads it: the key, or
    the variable when the value came from the environment, and what it must be."""
    key = str(error["loc"][0]) if error["loc"] else "settings"
    if error["type"] == "extra_forbidden":
        where = f" in {str(config_file)!r}" if key in file else ""
        return ConfigError(f"unknown setting {key!r}{where}", field=key)
    name = f"{ENV_PREFIX}{key.upper()}"
    where = name if name in environ else key
    if key in _INT_KEYS:
        kind = "an integer"
    elif key in _FLOAT_KEYS:
        kind = "a number"
    elif key in _BOOL_KEYS:
        kind = "true or false"
    else:
        kind = "a string"
    return ConfigError(f"setting {where!r} must be {kind}, got {error.get('input')!r}", field=key)


def validate(s: Settings) -> None:
    for key in (
        "jwt_secret",
        "lockd_token",
        "db_url",
        "amqp_url",
        "s3_access_key",
        "s3_secret_key",
    ):
        try:
            check_not_placeholder(key, getattr(s, key))
        except SchemaConfigError as exc:
            raise ConfigError(str(exc), field=key) from None
    if len(s.jwt_secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"setting 'jwt_secret' must be at least {MIN_SECRET_BYTES} bytes", field="jwt_secret"
        )
    if not 0 <= s.port <= 65535:
        raise ConfigError(f"setting 'port' must be 0..65535, got {s.port}", field="port")
    for key in (
        "token_ttl_s",
        "client_max_size",
        "pool_min",
        "pool_max",
        "ws_queue_size",
        "ws_max_subscriptions",
        "login_max_failures",
        "login_max_failures_per_address",
        "blob_max_size",
    ):
        if getattr(s, key) < 1:
            raise ConfigError(f"setting {key!r} must be at least 1", field=key)
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(
            f"setting 'log_level' must be DEBUG, INFO, WARNING or ERROR, got {s.log_level!r}",
            field="log_level",
        )
    if not 0 <= s.revocation_check_s <= MAX_CHECK_S:
        raise ConfigError(
            f"setting 'revocation_check_s' must be 0..{MAX_CHECK_S:g} seconds",
            field="revocation_check_s",
        )
    if s.pool_max < s.pool_min:
        raise ConfigError("setting 'pool_max' must be >= 'pool_min'", field="pool_max")
    if s.ws_replay_limit < 0:
        raise ConfigError("setting 'ws_replay_limit' must be >= 0", field="ws_replay_limit")
    from api.blobs.settings import VERIFY_MODES

    if s.s3_verify_by not in VERIFY_MODES:
        raise ConfigError(
            f"setting 's3_verify_by' must be one of {', '.join(sorted(VERIFY_MODES))}, "
            f"got {s.s3_verify_by!r}",
            field="s3_verify_by",
        )
    if s.bus not in ("postgres", "rabbitmq"):
        raise ConfigError(f"setting 'bus' must be postgres or rabbitmq, got {s.bus!r}", field="bus")
    if s.bus == "rabbitmq" and s.side != "cloud":
        raise ConfigError("setting 'bus' = rabbitmq is for the cloud side only", field="bus")
    if not 0.1 <= s.lease_ttl_s <= 86400:
        raise ConfigError("setting 'lease_ttl_s' must be 0.1..86400 seconds", field="lease_ttl_s")
    for key in (
        "idle_warn_s",
        "idle_close_s",
        "lockd_timeout_s",
        "ws_heartbeat_s",
        "login_window_s",
    ):
        if getattr(s, key) <= 0:
            raise ConfigError(f"setting {key!r} must be positive", field=key)
    if not s.db_url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        raise ConfigError("setting 'db_url' must be a postgresql:// URL", field="db_url")
    urls = [("db_url", s.db_url, check_postgres_url)]
    urls += [(k, getattr(s, k), check_http_url) for k in ("lockd_url", "s3_endpoint_url")]
    for key, value, check in urls:
        if value:
            try:
                check(key, value)
            except SchemaConfigError as exc:
                raise ConfigError(str(exc), field=key) from exc
