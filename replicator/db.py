"""psycopg (async) connections of the lanes and the one boundary where driver errors
become replicator errors."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
from psycopg import errors as pg_errors

from replicator.errors import ReplicationFailed, Unavailable
from schema.urls import libpq_url

# Errors after which the same batch may simply be tried again later.
_TRANSIENT = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.QueryCanceled,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
)


def conninfo(url: str, connect_timeout_s: int, application_name: str) -> str:
    """A libpq conninfo with a bounded connect time and TCP keepalives, so a dead peer
    (cable pulled, traffic dropped) is noticed instead of waited on for ever."""
    return psycopg.conninfo.make_conninfo(
        libpq_url(url),
        connect_timeout=connect_timeout_s,
        keepalives=1,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
        application_name=application_name,
    )


async def connect(
    url: str, connect_timeout_s: int, application_name: str, autocommit: bool = False
) -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        return await psycopg.AsyncConnection.connect(
            conninfo(url, connect_timeout_s, application_name), autocommit=autocommit
        )
    except psycopg.OperationalError as exc:
        raise Unavailable(f"cannot connect ({application_name}): {first_line(exc)}") from exc
    except OSError as exc:
        raise Unavailable(f"cannot connect ({application_name}): {exc}") from exc


def is_data_error(exc: BaseException) -> bool:
    """A database error that is about the data of a batch (retrying it unchanged fails
    the same way), as opposed to the connection or a transient lock/timeout."""
    return (
        isinstance(exc, psycopg.DatabaseError)
        and not isinstance(exc, (psycopg.OperationalError, *_TRANSIENT))
        and not isinstance(exc, pg_errors.InsufficientPrivilege)
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
