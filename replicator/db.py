"""psycopg (async) connections of the lanes and the one boundary where driver errors
become replicator errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg

from replicator.errors import ReplicationFailed, Unavailable
from schema.lanes import TRANSIENT as _TRANSIENT
from schema.lanes import first_line, is_data_error
from schema.notifications import keepalive_conninfo

__all__ = ["connect", "first_line", "is_data_error", "wrap_errors"]


async def connect(
    url: str, connect_timeout_s: int, application_name: str, autocommit: bool = False
) -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        return await psycopg.AsyncConnection.connect(
            keepalive_conninfo(url, connect_timeout_s, application_name), autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect ({application_name}): {first_line(exc)}") from exc
    except OSError as exc:
        raise Unavailable(f"cannot connect ({application_name}): {exc}") from exc


@contextlib.asynccontextmanager
async def wrap_errors(what: str) -> AsyncIterator[None]:
    """Driver errors -> Unavailable (retry later) or ReplicationFailed (a bug/broken schema)."""
    try:
        yield
    except (psycopg.OperationalError, OSError, *_TRANSIENT) as exc:
        raise Unavailable(f"{what}: {first_line(exc)}") from exc
    except psycopg.Error as exc:
        if isinstance(exc, psycopg.InterfaceError):
            raise Unavailable(f"{what}: {first_line(exc)}") from exc
        raise ReplicationFailed(f"{what}: {first_line(exc)}") from exc
