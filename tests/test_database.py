"""schema.database, the runtime database layer: its error tables, keepalives, row shapes
and the one placeholder style of the named queries."""

from __future__ import annotations

import re

import psycopg
import psycopg_pool
import pytest
from psycopg.rows import class_row, dict_row
from sqlalchemy.exc import DBAPIError

from api import store
from api.errors import Conflict, DatabaseError, ValidationFailed
from lockd import db as lockd_db
from lockd.errors import (
    InvalidChange,
    LeaseExpired,
    LeaseNotHeld,
    LockdError,
    LockdUnavailable,
    NoLease,
)
from schema import database
from schema.conflicts import ERRORS as CONFLICTS
from schema.conflicts import ConflictError, ConflictNotFound
from schema.database import SCHEMA, DbError, Translation
from schema.db import NodeConfig
from schema.errors import (
    ClockMovedBackwards,
    DatabaseUnavailable,
    NodeNotConfigured,
    SchemaError,
)
from schema.sql import _queries
from tests.pg import TestDatabase


def _raised(conn: psycopg.Connection[tuple[object, ...]], sqlstate: str) -> psycopg.Error:
    """The driver's error for a statement failing with ``sqlstate`` (and a column)."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'refused here'"
            f" USING ERRCODE = '{sqlstate}', COLUMN = 'notes'; END $$"
        )
    conn.rollback()
    assert caught.value.sqlstate == sqlstate
    return caught.value


def test_each_table_maps_real_driver_errors(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        said = "refused here"  # the server's message, passed on
        cases: list[tuple[Translation, str, type[Exception], str | None, str]] = [
            (SCHEMA, "SC001", NodeNotConfigured, None, said),
            (SCHEMA, "SC002", ClockMovedBackwards, None, said),
            (SCHEMA, "SC999", SchemaError, None, said),
            (CONFLICTS, "SC210", ConflictNotFound, None, said),
            (CONFLICTS, "SC211", ConflictError, None, said),
            (lockd_db.ERRORS, "SCL05", NoLease, None, said),
            (lockd_db.ERRORS, "SCL10", LeaseNotHeld, None, said),
            (lockd_db.ERRORS, "SCL11", LeaseExpired, None, said),
            (lockd_db.ERRORS, "SCL22", InvalidChange, "changes.notes", said),
            (lockd_db.ERRORS, "23503", InvalidChange, "changes", said),
            (lockd_db.ERRORS, "22001", InvalidChange, "changes", said),
            (store.ERRORS, "23505", Conflict, "notes", "same unique values exists"),
            (store.ERRORS, "23503", ValidationFailed, "notes", "referenced record does not"),
            (store.ERRORS, "23514", ValidationFailed, "notes", f"the database: {said}"),
            (store.ERRORS, "22007", ValidationFailed, None, f"the database: {said}"),
        ]
        for table, code, cls, field, words in cases:
            out = table.translate(_raised(conn, code))
            assert type(out) is cls, (code, out)
            assert words in str(out), (code, out)
            assert getattr(out, "field", None) == field, (code, out)
        # Unmapped: the API lets the error through (a 500), lockd says what it was.
        unmapped = _raised(conn, "42P01")
        assert store.ERRORS.translate(unmapped) is unmapped
        other = lockd_db.ERRORS.translate(unmapped)
        assert type(other) is LockdError and "42P01" in str(other)


def test_the_longest_matching_code_wins() -> None:
    table = Translation(
        {
            "23": lambda e: ValidationFailed("class 23"),
            "23505": lambda e: Conflict("exact"),
        }
    )
    assert isinstance(table.translate(_pg8000_error("23505")), Conflict)
    assert isinstance(table.translate(_pg8000_error("23503")), ValidationFailed)


def _pg8000_error(code: str) -> Exception:
    """pg8000's shape: the protocol fields as a dict in args[0]."""
    return Exception({"C": code, "M": "from pg8000", "c": "notes"})


def test_pg8000_and_sqlalchemy_wrapped_errors_read_alike() -> None:
    raw = _pg8000_error("SC001")
    assert DbError.of(raw) == DbError("SC001", "from pg8000", "notes", None, None)
    wrapped = DBAPIError("SELECT 1", {}, raw)
    assert isinstance(SCHEMA.translate(wrapped), NodeNotConfigured)


def test_unreachable_is_each_tables_unavailable_error() -> None:
    timeout = psycopg_pool.PoolTimeout("couldn't get a connection after 10 sec")
    lost = psycopg.OperationalError("server closed the connection unexpectedly")
    for exc in (timeout, lost, ConnectionRefusedError("connection refused")):
        assert isinstance(store.ERRORS.translate(exc), DatabaseError)
        assert isinstance(lockd_db.ERRORS.translate(exc), LockdUnavailable)
        assert isinstance(SCHEMA.translate(exc), DatabaseUnavailable)
    # A scsync error is never translated again; anything else is left alone.
    mine = NoLease("no lease")
    assert lockd_db.ERRORS.translate(mine) is mine
    bug = KeyError("x")
    assert store.ERRORS.translate(bug) is bug and store.ERRORS.maybe(bug) is None


async def test_an_unreachable_database_is_one_error_at_connect() -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect to the database"):
        async with database.connect("postgresql://x@127.0.0.1:1/none", SCHEMA):
            pass


async def test_pooled_connections_are_named_with_keepalives_and_tuple_rows(
    local_db: TestDatabase,
) -> None:
    pool = database.make_pool(local_db.url, name="scsync-test-pool", max_size=1)
    await database.open_pool(pool, SCHEMA)
    try:
        async with pool.connection() as conn:
            params = conn.info.get_parameters()
            assert params["keepalives"] == "1"
            assert params["keepalives_idle"] == "5"
            assert params["connect_timeout"] == "10"
            name = await (await conn.execute("SHOW application_name")).fetchone()
            assert name == ("scsync-test-pool",)
            assert conn.autocommit
            node = await database.fetch_one(conn, "node_get", row=class_row(NodeConfig))
            assert node == NodeConfig(node_id=1, side="local", site_id=1)
            as_dict = await database.fetch_one(conn, "node_get", row=dict_row)
            assert as_dict == {"node_id": 1, "side": "local", "site_id": 1}
        # The shapes were the cursors': the same (only) connection still gives tuples.
        async with pool.connection() as conn:
            assert await database.fetch_one(conn, "node_get") == (1, "local", 1)
    finally:
        await pool.close()


def test_every_named_query_takes_psycopg_placeholders_only() -> None:
    colon_bind = re.compile(r"(?<![:\w]):[A-Za-z_]\w*")
    for name, text in _queries().items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        assert not colon_bind.search(code), name


def test_a_named_query_ends_at_its_statement() -> None:
    """The comment lines after a block introduce the next one: they are not part of it,
    so a block can stand as a fragment inside another statement."""
    for name, text in _queries().items():
        last = text.rstrip().splitlines()[-1].lstrip()
        assert not last.startswith("--"), name
    # A fragment whose file goes on with the next block's header comment.
    assert database.named("sync_backfill_blob_state").as_string(None).endswith("END")
