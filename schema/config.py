"""One way for every service to read its ``--config`` file and check its URLs.

A side's configuration is one TOML file (``scsync init`` writes it) with a table per
service: ``[api]``, ``[replicator]``, ``[files]``, ``[lockd]``. A service reads its own
table; a file without that table is read at its top level (minus the other services'
tables), so a single-service file needs no header. Every problem raises
:class:`schema.errors.ConfigError` naming the file or the key and what is wrong.
"""

from __future__ import annotations

import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource

from schema.errors import ConfigError

SECTIONS: Final = ("api", "replicator", "files", "lockd")
log = logging.getLogger("scsync.config")
_warned: set[str] = set()


def warn_if_readable(path: str | Path | None, service: str) -> bool:
    """Warn (once per file and process) when a config file, which holds secrets (the JWT
    secret, the site token, database passwords), may be read by group or others. Called
    by every service at start; True when it warned."""
    if path is None or str(path) in _warned:
        return False
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # read_config_file reports a missing file
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return False
    _warned.add(str(path))
    log.warning(
        "%s: config file %s is readable by group or others (mode %o); it holds secrets: "
        "chmod 600 it",
        service,
        path,
        stat.S_IMODE(mode),
    )
    return True


# What `scsync init` writes where only the operator can know the value (the site's
# token, the site's database password), and what deploy/config/*.toml carry instead of
# a JWT secret. Every service refuses to start on one of them, naming the key.
PLACEHOLDER_TOKEN: Final = "SITE-TOKEN"
PLACEHOLDER_PASSWORD: Final = "PASSWORD"
PLACEHOLDER_SECRET: Final = "CHANGE-ME-scsync-init-writes-a-random-secret-here"
PLACEHOLDERS: Final = frozenset({PLACEHOLDER_TOKEN, PLACEHOLDER_PASSWORD, PLACEHOLDER_SECRET})
POSTGRES_SCHEMES: Final = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+pg8000")


def read_config_file(path: str | Path, section: str) -> dict[str, Any]:
    """The ``[section]`` table of a TOML file, or its top level when it has none."""
    p = Path(path)
    shown = repr(str(p))
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"config file {shown} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {shown} cannot be read: it is a directory") from None
    except OSError as exc:
        raise ConfigError(f"config file {shown} cannot be read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {shown} is not UTF-8 text: {exc.reason}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {shown} is not valid TOML: {exc}") from exc
    if section in data:
        table = data[section]
        if not isinstance(table, dict):
            raise ConfigError(f"config file {shown}: [{section}] must be a table")
        return dict(table)
    return {k: v for k, v in data.items() if k not in SECTIONS}


def _redacted(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable>"
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def check_postgres_url(key: str, value: object) -> str:
    """A database URL: postgresql:// (or a driver variant) with a host or a socket path."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"setting {key!r} must be a postgresql:// URL, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ConfigError(
            f"setting {key!r} is not a valid URL ({exc}): {_redacted(value)}"
        ) from exc
    if parts.scheme not in POSTGRES_SCHEMES:
        raise ConfigError(
            f"setting {key!r} must be a postgresql:// URL, got {parts.scheme or 'no'} scheme"
            f" in {_redacted(value)!r}"
        )
    if not parts.hostname and "host=" not in parts.query:
        raise ConfigError(f"setting {key!r} names no host: {_redacted(value)!r}")
    return value


def check_http_url(key: str, value: object) -> str:
    """An HTTP(S) base URL with a host."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"setting {key!r} must be an http(s):// URL, got {value!r}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018
    except ValueError as exc:
        raise ConfigError(
            f"setting {key!r} is not a valid URL ({exc}): {_redacted(value)}"
        ) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"setting {key!r} must be an http(s):// URL, got {_redacted(value)!r}")
    return value


def placeholder_in(value: object) -> str | None:
    """The placeholder of `scsync init` that `value` is, or holds as a URL's password."""
    if not isinstance(value, str) or not value:
        return None
    if value in PLACEHOLDERS:
        return value
    if "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            return None
        if password in PLACEHOLDERS:
            return password
    return None


def check_not_placeholder(key: str, value: object) -> None:
    """ConfigError (naming `key`) when `value` is still what `scsync init` wrote for it."""
    found = placeholder_in(value)
    if found is not None:
        raise ConfigError(
            f"setting {key!r} still holds {found!r}, the placeholder written by scsync init:"
            " put in the real value (docs/operations.md, 3. Register a site)"
        )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def layered_settings(
    cls: type[SettingsT], *layers: Mapping[str, Any] | None, env: bool = True
) -> type[SettingsT]:
    """``cls`` reading, highest first: its keyword arguments, the process's environment
    (when ``env``), then ``layers`` in order (a config file's table, a fallback...);
    every service's settings are layered so (pydantic-settings sources)."""
    given = [dict(values) for values in layers if values]

    class Layered(cls):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (
                init_settings,
                *((env_settings,) if env else ()),
                *(InitSettingsSource(settings_cls, init_kwargs=values) for values in given),
            )

    return Layered
