"""The lanes' connections, and the replicator's table in the one translation of driver
errors (:class:`schema.database.Translation`): a lane keeps one connection of its own
(its advisory lock and replication origin live in that session), not a pooled one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

from replicator.errors import ReplicationFailed, Unavailable
from schema.database import Conn, DbError, Translation, open_connection
from schema.errors import first_line
from schema.lanes import TRANSIENT_CODES, is_data_error

__all__ = ["connect", "first_line", "is_data_error", "translation", "wrap_errors"]


def translation(what: str) -> Translation:
    """Driver errors of ``what``: the server out of reach or a transient refusal (a
    deadlock, a lock timeout, a shutdown) -> :class:`Unavailable` (the lane retries
    later); any other -> :class:`ReplicationFailed` (a bug or a broken schema)."""

    def unavailable(err: DbError) -> Exception:
        return Unavailable(f"{what}: {err.message}")

    return Translation(
        dict.fromkeys(TRANSIENT_CODES, unavailable),
        unavailable=lambda message: Unavailable(f"{what}: {message}"),
        other=lambda err: ReplicationFailed(f"{what}: {err.message}"),
    )


async def connect(
    url: str, connect_timeout_s: int, application_name: str, autocommit: bool = False
) -> Conn:
    what = f"cannot connect ({application_name})"
    with _socket_errors(what):
        return await open_connection(
            url,
            translation(what),
            name=application_name,
            connect_timeout_s=connect_timeout_s,
            autocommit=autocommit,
        )


@contextlib.contextmanager
def _socket_errors(what: str) -> Iterator[None]:
    """A socket error psycopg did not wrap: the server out of reach, as for the driver's."""
    try:
        yield
    except OSError as exc:
        raise Unavailable(f"{what}: {exc}") from exc


@contextlib.asynccontextmanager
async def wrap_errors(what: str) -> AsyncIterator[None]:
    """Driver errors of the block leave as replicator errors (:func:`translation`)."""
    with translation(what).errors(), _socket_errors(what):
        yield
