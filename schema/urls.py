"""Database URLs: one place that knows the drivers we support."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from schema.errors import ConfigError

DRIVERS = ("psycopg", "pg8000")


def sqlalchemy_url(url: str, driver: str | None = None) -> str:
    """A SQLAlchemy URL with an explicit driver; plain ``postgresql://`` means psycopg."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend != "postgresql":
        raise ConfigError(f"unsupported database {backend!r} in URL (need postgresql)")
    current = parsed.get_driver_name()
    wanted = driver or (current if current in DRIVERS else "psycopg")
    if wanted not in DRIVERS:
        raise ConfigError(f"unsupported driver {wanted!r} (use one of {', '.join(DRIVERS)})")
    return parsed.set(drivername=f"postgresql+{wanted}").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same database as a plain libpq URL, for psycopg's own connect()."""
    parsed = make_url(sqlalchemy_url(url))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


CONNECT_TIMEOUT_S = 10


def connect_args(url: str) -> dict[str, object]:
    """Driver arguments every engine gets: a bounded connect time, so an unreachable
    host is an error within seconds rather than a hang."""
    if make_url(sqlalchemy_url(url)).get_driver_name() == "pg8000":
        return {"timeout": CONNECT_TIMEOUT_S}
    return {"connect_timeout": CONNECT_TIMEOUT_S}


def create_engine(url: str, **kwargs: Any) -> Engine:
    """The one way packages make a SQLAlchemy engine for a scsync database."""
    return sa_create_engine(sqlalchemy_url(url), connect_args=connect_args(url), **kwargs)
