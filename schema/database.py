"""The one runtime database layer of scsync: async psycopg 3.

Every process reaches a scsync database at run time through this module (migrations
keep SQLAlchemy and alembic; ``schema.dump`` is a tool of its own; the listeners use
:mod:`schema.notifications`, on the same :func:`~schema.notifications.keepalive_conninfo`):

- :func:`make_pool`: one ``psycopg_pool.AsyncConnectionPool`` per process and database,
  with TCP keepalives, a bounded connect time and the process's ``application_name``.
  Its connections are in autocommit: a single statement is one round trip; whatever
  needs a transaction says so with :func:`transaction` (``conn.transaction()``).
  Connections come back with tuple rows; a fetch that wants another shape names it
  (``row=dict_row``, ``class_row(SomeDataclass)``) on its own cursor, so no code
  switches a pooled connection's row factory.
- :func:`named`: the one way to get a named query of ``schema/sql/queries*.sql``
  (``%(name)s`` placeholders), with identifiers composed by ``psycopg.sql``.
- :func:`fetch_one`, :func:`fetch_all`, :func:`fetch_value`, :func:`execute`.
- :class:`Translation`: the one translation of driver errors to scsync's exceptions.
  Each boundary (the API, lockd, the schema helpers, ...) declares its table of
  SQLSTATEs (exact codes such as lockd's ``SCL05`` or class prefixes such as ``23``)
  and what "unreachable" becomes; :meth:`Translation.translate` is the only code that
  reads a driver error.
- :func:`run`: the CLI's one ``asyncio.run`` around the layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.rows import AsyncRowFactory, TupleRow, dict_row, tuple_row

from schema.errors import (
    ClockMovedBackwards,
    DatabaseUnavailable,
    NodeNotConfigured,
    SchemaError,
    ScsyncError,
)
from schema.notifications import keepalive_conninfo
from schema.sql import query
from schema.urls import CONNECT_TIMEOUT_S

T = TypeVar("T")
R = TypeVar("R")

Conn = psycopg.AsyncConnection[TupleRow]
Pool = psycopg_pool.AsyncConnectionPool[Conn]
Query = sql.SQL | sql.Composed
Params = Mapping[str, Any] | None

__all__ = [
    "SCHEMA",
    "Conn",
    "DbError",
    "Pool",
    "Translation",
    "connect",
    "dict_row",
    "execute",
    "fetch_all",
    "fetch_one",
    "fetch_value",
    "make_pool",
    "named",
    "open_connection",
    "open_pool",
    "run",
    "transaction",
]


# --- pools and connections -----------------------------------------------------------


def make_pool(
    url: str,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 10,
    timeout_s: float = 10.0,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
) -> Pool:
    """The pool of a process on one database (not opened: :func:`open_pool`). ``name``
    is the ``application_name`` its backends carry in ``pg_stat_activity``."""
    return psycopg_pool.AsyncConnectionPool(
        keepalive_conninfo(url, connect_timeout_s, name),
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True},
        connection_class=Conn,
        open=False,
        timeout=timeout_s,
        name=name,
    )


async def open_pool(pool: Pool, translation: Translation, *, timeout_s: float = 15.0) -> None:
    """Open ``pool``, waiting for its first connections; an unreachable database is the
    boundary's "unavailable" error (the pool closed again)."""
    try:
        await pool.open(wait=True, timeout=timeout_s)
    except (psycopg.Error, psycopg_pool.PoolTimeout, ConnectionError) as exc:
        await pool.close()
        raise translation.translate(exc) from exc


async def open_connection(
    url: str,
    translation: Translation,
    *,
    name: str,
    connect_timeout_s: int = CONNECT_TIMEOUT_S,
    autocommit: bool = True,
) -> Conn:
    """One connection outside any pool (autocommit unless told), with the pool's
    keepalives and a bounded connect time (the caller closes it); errors translated.
    For a session that must stay one backend: an advisory lock, a replication origin."""
    with translation.errors():
        return await psycopg.AsyncConnection.connect(
            keepalive_conninfo(url, connect_timeout_s, name), autocommit=autocommit
        )


@contextlib.asynccontextmanager
async def connect(
    url: str, translation: Translation, *, name: str = "scsync-cli"
) -> AsyncIterator[Conn]:
    """One autocommit connection for the block (the CLI's, a short-lived tool's)."""
    conn = await open_connection(url, translation, name=name)
    try:
        with translation.errors():
            yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def transaction(pool: Pool, translation: Translation | None = None) -> AsyncIterator[Conn]:
    """A pooled connection inside one transaction (committed when the block ends)."""
    with translation.errors() if translation is not None else contextlib.nullcontext():
        async with pool.connection() as conn, conn.transaction():
            yield conn


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The CLI's one way into the layer: ``run(lambda: work(...))``."""
    return asyncio.run(main())


# --- named queries ---------------------------------------------------------------------


def named(name: str, **identifiers: sql.Composable) -> Query:
    """The named query ``name`` (``%(param)s`` placeholders); ``identifiers`` fill its
    ``{placeholders}`` (``sql.Identifier``, never text from input)."""
    text = sql.SQL(query(name))  # type: ignore[arg-type,unused-ignore]  # file text
    return text.format(**identifiers) if identifiers else text


def _stmt(q: str | Query) -> Query:
    return named(q) if isinstance(q, str) else q


async def execute(conn: Conn, q: str | Query, params: Params = None) -> int:
    """Run a statement; the number of rows it touched."""
    cur = await conn.execute(_stmt(q), params)
    return cur.rowcount


@overload
async def fetch_one(
    conn: psycopg.AsyncConnection[Any], q: str | Query, params: Params = None
) -> TupleRow | None: ...
@overload
async def fetch_one(
    conn: psycopg.AsyncConnection[Any],
    q: str | Query,
    params: Params = None,
    *,
    row: AsyncRowFactory[R],
) -> R | None: ...
async def fetch_one(
    conn: psycopg.AsyncConnection[Any],
    q: str | Query,
    params: Params = None,
    *,
    row: AsyncRowFactory[Any] = tuple_row,
) -> Any:
    """The first row of a query (None when none), shaped by ``row`` (``dict_row``,
    ``class_row(Dataclass)``, ``namedtuple_row``; tuples by default)."""
    async with conn.cursor(row_factory=row) as cur:
        await cur.execute(_stmt(q), params)
        return await cur.fetchone()


@overload
async def fetch_all(
    conn: psycopg.AsyncConnection[Any], q: str | Query, params: Params = None
) -> list[TupleRow]: ...
@overload
async def fetch_all(
    conn: psycopg.AsyncConnection[Any],
    q: str | Query,
    params: Params = None,
    *,
    row: AsyncRowFactory[R],
) -> list[R]: ...
async def fetch_all(
    conn: psycopg.AsyncConnection[Any],
    q: str | Query,
    params: Params = None,
    *,
    row: AsyncRowFactory[Any] = tuple_row,
) -> Any:
    """Every row of a query, shaped by ``row``."""
    async with conn.cursor(row_factory=row) as cur:
        await cur.execute(_stmt(q), params)
        return await cur.fetchall()


async def fetch_value(
    conn: psycopg.AsyncConnection[Any], q: str | Query, params: Params = None
) -> Any:
    """The first column of the first row (None when no row)."""
    async with conn.cursor(row_factory=tuple_row) as cur:
        await cur.execute(_stmt(q), params)
        found = await cur.fetchone()
    return None if found is None else found[0]


# --- error translation ------------------------------------------------------------------

_KEY = re.compile(r"Key \(([^)]*)\)")


@dataclass(frozen=True)
class DbError:
    """What translation reads of a driver error (psycopg's, pg8000's, or either wrapped
    by SQLAlchemy): its SQLSTATE, primary message and the column it names."""

    sqlstate: str | None
    message: str
    column: str | None = None
    constraint: str | None = None
    detail: str | None = None

    @property
    def field(self) -> str | None:
        """The column a constraint error is about: named by the server, else the
        ``Key (col)`` of its detail, else the constraint's name."""
        if self.column:
            return self.column
        found = _KEY.search(self.detail or "")
        if found:
            return found.group(1)
        return self.constraint or None

    @classmethod
    def of(cls, exc: BaseException) -> DbError:
        orig = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError
        if orig is not None:
            exc = orig
        diag = getattr(exc, "diag", None)
        if isinstance(exc, psycopg.Error) and diag is not None:
            return cls(
                exc.sqlstate,
                str(diag.message_primary or _first_line(exc)),
                diag.column_name,
                diag.constraint_name,
                diag.message_detail,
            )
        args = getattr(exc, "args", ())
        if args and isinstance(args[0], dict):  # pg8000: a dict of protocol fields
            f = args[0]
            return cls(f.get("C"), str(f.get("M", exc)), f.get("c"), f.get("n"), f.get("D"))
        return cls(None, _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else repr(exc)


Make = Callable[[DbError], Exception]


def _unreachable(exc: BaseException) -> bool:
    """The server could not be reached or went away (rather than refusing a statement)."""
    if isinstance(exc, psycopg_pool.PoolTimeout | ConnectionError | TimeoutError):
        return True
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if type(orig).__module__.startswith("pg8000") and type(orig).__name__ == "InterfaceError":
        return True
    code = DbError.of(exc).sqlstate
    return code is not None and code.startswith(("08", "57P"))


@dataclass(frozen=True)
class Translation:
    """One boundary's table from driver errors to its exceptions.

    ``codes``: SQLSTATE (exact, or a class prefix such as ``"23"`` or ``"SC"``) to the
    exception to raise; the longest matching key wins. ``unavailable``: what an
    unreachable server becomes (run before the table for errors without a SQLSTATE of
    their own). ``other``: what any other driver error becomes (None: it stays itself).
    """

    codes: Mapping[str, Make] = field(default_factory=dict)
    unavailable: Callable[[str], Exception] = DatabaseUnavailable
    other: Make | None = None

    def extend(self, codes: Mapping[str, Make], **changes: Any) -> Translation:
        """This table with more (or overriding) codes."""
        merged = {**self.codes, **codes}
        return Translation(
            merged,
            changes.get("unavailable", self.unavailable),
            changes.get("other", self.other),
        )

    def translate(self, exc: Exception) -> Exception:
        """The exception to raise (``from exc``) for a driver error; ``exc`` itself when
        the table has nothing for it (a scsync error already, or unmapped)."""
        if isinstance(exc, ScsyncError):
            return exc
        err = DbError.of(exc)
        code = err.sqlstate
        if code is not None:
            for size in range(len(code), 1, -1):
                make = self.codes.get(code[:size])
                if make is not None:
                    return make(err)
        if _unreachable(exc):
            return self.unavailable(err.message)
        if self.other is not None and _is_driver_error(exc):
            return self.other(err)
        return exc

    def maybe(self, exc: Exception) -> Exception | None:
        """:meth:`translate`, None when it has nothing (for the web apps' hooks)."""
        out = self.translate(exc)
        return None if out is exc else out

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Driver errors raised in the block leave translated (the original as
        ``__cause__``). Works in ``async with`` blocks too: wrap them in ``with``."""
        try:
            yield
        except Exception as exc:
            out = self.translate(exc)
            if out is exc:
                raise
            raise out from exc


def _is_driver_error(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, psycopg.Error | psycopg_pool.PoolTimeout) or type(
        orig
    ).__module__.startswith("pg8000")


def to(cls: Callable[..., Exception], *, field: str | None = None) -> Make:
    """A table entry: raise ``cls(message, field=field)``."""
    return lambda e: cls(e.message, field=field)


# The schema package's own SQLSTATEs (raised by its SQL functions): SC001 no node id,
# SC002 the clock stepped back, any other SCxxx a schema error. Packages extend it.
SCHEMA = Translation(
    {"SC001": to(NodeNotConfigured), "SC002": to(ClockMovedBackwards), "SC": to(SchemaError)},
    unavailable=lambda message: DatabaseUnavailable(f"cannot connect to the database: {message}"),
)


async def translated(translation: Translation, work: Awaitable[T]) -> T:
    """``await work`` with its driver errors translated."""
    with translation.errors():
        return await work
