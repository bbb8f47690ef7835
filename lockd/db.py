"""lockd's boundary with the driver: connection pools and error translation.

Every psycopg error that leaves lockd passes through :func:`translate_error`, which maps
lockd's own SQLSTATEs (``SCLnn``, raised by the functions of baseline_lockd_cloud.sql) and
the data errors of a bad save to :mod:`lockd.errors`, and everything about reaching the
server to :class:`~lockd.errors.LockdUnavailable`.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from lockd.errors import (
    BadRequest,
    Forbidden,
    InvalidChange,
    LeaseExpired,
    LeaseNotHeld,
    LockdError,
    LockdUnavailable,
    NoLease,
    NotEditable,
    RecordNotFound,
    VersionConflict,
)
from schema.urls import libpq_url

_BY_SQLSTATE: dict[str, type[LockdError]] = {
    "SCL03": Forbidden,
    "SCL04": RecordNotFound,
    "SCL05": NoLease,
    "SCL09": VersionConflict,
    "SCL10": LeaseNotHeld,
    "SCL11": LeaseExpired,
}

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]


def translate_error(exc: BaseException) -> LockdError:
    """The lockd error for a driver error (the caller raises it ``from exc``)."""
    if isinstance(exc, PoolTimeout):
        return LockdUnavailable(f"no database connection available: {exc}")
    if isinstance(exc, psycopg.Error):
        code = exc.sqlstate
        message = (exc.diag.message_primary if exc.diag else None) or str(exc).strip()
        if code in ("SCL22", "SCL23"):
            column = exc.diag.column_name if exc.diag else None
            return InvalidChange(message, field=f"changes.{column}" if column else "changes")
        if code == "SCL12":
            return BadRequest(message, field="holder")
        if code == "SCL13":
            return NotEditable(message, field="table")
        if code in _BY_SQLSTATE:
            return _BY_SQLSTATE[code](message)
        # A value the column refuses (type, range, not-null, check, foreign key).
        if code is not None and (code.startswith("22") or code in ("23502", "23503", "23514")):
            return InvalidChange(message, field="changes")
        if isinstance(exc, psycopg.OperationalError) or code is None or code.startswith("08"):
            return LockdUnavailable(f"lockd's database is unreachable: {message}")
        return LockdError(f"database error {code}: {message}")
    return LockdUnavailable(f"lockd's database is unreachable: {exc}")


def make_pool(url: str, *, min_size: int = 2, max_size: int = 20, **kwargs: Any) -> Pool:
    """An autocommit pool (each lease operation is one statement = one transaction).
    Not opened: ``await pool.open()`` or use it as an async context manager."""
    return AsyncConnectionPool(
        libpq_url(url),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "connect_timeout": 10},
        open=False,
        timeout=10.0,
        **kwargs,
    )
