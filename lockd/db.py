"""lockd's boundary with the driver, on schema.database: its pool and its error table.

Every psycopg error that leaves lockd passes through :func:`translate_error` (the table
:data:`ERRORS`), which maps lockd's own SQLSTATEs (``SCLnn``) and the data errors of a
bad save to :mod:`lockd.errors`, and everything about reaching the server to
:class:`~lockd.errors.LockdUnavailable`.
"""

from __future__ import annotations

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
from schema import database
from schema.database import DbError, Translation, to


def _invalid_column(e: DbError) -> LockdError:
    return InvalidChange(e.message, field=f"changes.{e.column}" if e.column else "changes")


# lockd's table (schema.database.Translation): its own SQLSTATEs (SCLnn, raised by the
# functions of baseline_lockd_cloud.sql), a value the column refuses (type, range,
# not-null, check, foreign key), and an unreachable database.
ERRORS = Translation(
    {
        "SCL03": to(Forbidden),
        "SCL04": to(RecordNotFound),
        "SCL05": to(NoLease),
        "SCL09": to(VersionConflict),
        "SCL10": to(LeaseNotHeld),
        "SCL11": to(LeaseExpired),
        "SCL12": to(BadRequest, field="holder"),
        "SCL13": to(NotEditable, field="table"),
        "SCL22": _invalid_column,
        "SCL23": _invalid_column,
        "22": to(InvalidChange, field="changes"),
        "23502": to(InvalidChange, field="changes"),
        "23503": to(InvalidChange, field="changes"),
        "23514": to(InvalidChange, field="changes"),
    },
    unavailable=lambda message: LockdUnavailable(f"lockd's database is unreachable: {message}"),
    other=lambda e: LockdError(f"database error {e.sqlstate}: {e.message}"),
)

Pool = database.Pool


def translate_error(exc: Exception) -> Exception:
    """The lockd error for a driver error (the caller raises it ``from exc``)."""
    return ERRORS.translate(exc)


def make_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> Pool:
    """lockd's pool when it is served alone (the cloud API shares its own). Not opened:
    ``await pool.open()`` or use it as an async context manager."""
    return database.make_pool(url, name="scsync-lockd", min_size=min_size, max_size=max_size)
