"""Programmatic alembic for both sides: what ``scsync db upgrade|current|check`` call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, pool
from sqlalchemy.exc import DBAPIError, OperationalError

from schema.errors import ConfigError, DatabaseUnavailable, MigrationError
from schema.tables import SIDES, Side, metadata_for
from schema.urls import create_engine

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def check_side(side: str) -> Side:
    if side not in SIDES:
        raise ConfigError(f"unknown side {side!r} (use 'local' or 'cloud')")
    return side


def alembic_config(side: str) -> Config:
    """An alembic Config equal to ``alembic -n SIDE``, usable without the repo's ini."""
    checked = check_side(side)
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS / checked))
    return cfg


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise DatabaseUnavailable(
                f"cannot connect to the database: {_first_line(exc)}"
            ) from exc
        except OSError as exc:  # pg8000 raises socket errors as they are
            raise DatabaseUnavailable(f"cannot connect to the database: {exc}") from exc
        with conn:
            yield conn
    finally:
        engine.dispose()


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _run(side: str, url: str, fn: Any, *args: Any) -> None:
    cfg = alembic_config(side)
    with _connection(url) as conn:
        cfg.attributes["connection"] = conn
        try:
            fn(cfg, *args)
        except DBAPIError as exc:
            raise MigrationError(f"migration failed: {_first_line(exc)}") from exc
        except CommandError as exc:
            hint = ""
            if "Can't locate revision" in str(exc):
                # The development revisions 0002-0013 were squashed into the baseline.
                hint = (
                    f" (this release knows {side} revisions up to"
                    f" {head_revision(side)}; a database made by a development build before"
                    " the baseline is made afresh: docs/schema.md)"
                )
            raise MigrationError(f"migration failed: {exc}{hint}") from exc
        conn.commit()


def upgrade(url: str, side: str, revision: str = "head") -> None:
    _run(side, url, command.upgrade, revision)


def downgrade(url: str, side: str, revision: str = "base") -> None:
    _run(side, url, command.downgrade, revision)
    if revision == "base":
        # alembic keeps its (now empty) version table; base means an empty database.
        with _connection(url) as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
            conn.commit()


def current_revision(url: str, side: str) -> str | None:
    check_side(side)
    with _connection(url) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(side: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(side)).get_current_head()


def schema_diff(url: str, side: str) -> list[Any]:
    """Differences between the database and the declared tables (empty when equal)."""
    checked = check_side(side)
    with _connection(url) as conn:
        mc = MigrationContext.configure(conn, opts={"compare_server_default": False})
        return list(compare_metadata(mc, metadata_for(checked)))


def check(url: str, side: str) -> None:
    """Raise MigrationError unless the database is at head and equals the metadata."""
    current = current_revision(url, side)
    head = head_revision(side)
    if current != head:
        raise MigrationError(f"{side} database is at revision {current}, head is {head}")
    diff = schema_diff(url, side)
    if diff:
        raise MigrationError(f"{side} database differs from the declared schema: {diff}")
