"""Settings of lockd run alone (``scsync lockd run``, and the CLI's sweep, get, break),
read and type-checked by pydantic-settings.

Each key comes from (highest first) the command's flag, the ``[lockd]`` table of the
cloud's config file, the default. The two secrets of the cloud come from the
environment first and may also be given by the file's ``[api]`` table, which the cloud
API reads: ``db_url`` (``SCSYNC_CLOUD_DB_URL``; a flag ``--db-url`` wins over it) and
``jwt_secret`` (``SCSYNC_JWT_SECRET``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    SettingsConfigDict,
)

from schema.config import (
    check_not_placeholder,
    check_postgres_url,
    layered_settings,
    read_config_file,
)
from schema.errors import ConfigError

SECRET_ENV: Final = "SCSYNC_JWT_SECRET"
URL_ENV: Final = "SCSYNC_CLOUD_DB_URL"
MIN_SECRET_BYTES: Final = 32


class LockdSettings(BaseSettings):
    """The keys of the ``[lockd]`` table (and the two secrets)."""

    # The [lockd] table may hold keys of other tools; only these are read.
    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    host: str = "127.0.0.1"
    port: int = 8470
    ttl_s: float = 30.0
    idle_warn_s: float = 600.0  # 0 = no idle policy
    idle_close_s: float = 300.0
    sweep_interval_s: float = 1.0
    revocation_check_s: float = 10.0
    db_url: str = ""
    jwt_secret: str = Field(default="", repr=False)

    @field_validator("*", mode="before")
    @classmethod
    def _toml_types(cls, value: Any, info: Any) -> Any:
        # A TOML value must have the key's type: true is no number, "8470" is no port
        # (pydantic would take both).
        numeric = cls.model_fields[info.field_name].annotation in (int, float)
        if isinstance(value, bool) or (numeric and isinstance(value, str)):
            raise ValueError("of another type")
        return value

    def database_url(self) -> str:
        """The cloud database's URL, checked; a ConfigError naming where to set it."""
        if not self.db_url:
            raise ConfigError(
                f"no cloud database URL: pass --db-url, set {URL_ENV} or db_url in --config"
            )
        check_not_placeholder("db_url", self.db_url)
        return check_postgres_url("db_url", self.db_url)

    def secret(self) -> str:
        """The cloud's JWT secret, checked (lockd accepts the cloud's tokens)."""
        if len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"set {SECRET_ENV} (or jwt_secret in --config) to the JWT secret "
                f"(at least {MIN_SECRET_BYTES} bytes)"
            )
        check_not_placeholder("jwt_secret", self.jwt_secret)
        return self.jwt_secret


def _kind(key: str) -> str:
    field = LockdSettings.model_fields.get(key)
    annotation = None if field is None else field.annotation
    if annotation is int:
        return "an integer"
    if annotation is float:
        return "a number"
    return "a string"


def load_lockd_settings(
    config_file: str | Path | None,
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
) -> LockdSettings:
    """The settings from ``flags`` (None: not given), the environment (the process's, or
    ``env``), the config file's ``[lockd]`` then ``[api]`` table, the defaults."""
    environ: Mapping[str, str] = os.environ if env is None else env
    given = {k: v for k, v in flags.items() if v is not None and k in LockdSettings.model_fields}
    from_env = {
        key: environ[name]
        for key, name in (("db_url", URL_ENV), ("jwt_secret", SECRET_ENV))
        if environ.get(name)
    }
    table: dict[str, Any] = {}
    api: dict[str, Any] = {}
    if config_file:
        table = dict(read_config_file(config_file, "lockd"))
        api = {
            k: v
            for k, v in read_config_file(config_file, "api").items()
            if k in ("db_url", "jwt_secret")
        }

    try:
        loaded = layered_settings(LockdSettings, from_env, table, api, env=False)(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else "settings"
        raise ConfigError(
            f"setting {key!r} of [lockd] must be {_kind(key)}, got {error.get('input')!r}"
        ) from None
    return LockdSettings.model_validate(loaded.model_dump())
