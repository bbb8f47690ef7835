"""The checked-in schema of each side (schema/sql/current_<side>.sql) is what the
migrations make: a migration that changes the schema without regenerating the file
(`python -m schema.dump`) fails here with the difference."""

from __future__ import annotations

import pytest

from schema import dump, migrate
from schema.tables import Side
from tests.pg import TestDatabase

# The dump leaves out what tells PostgreSQL 15 from 18 (NOT NULL constraints as rows,
# the MAINTAIN privilege), so the database-level run on the machine's 15 compares too.
pytestmark = pytest.mark.dblevel


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_checked_in_schema_is_what_the_migrations_make(empty_db: TestDatabase, side: Side) -> None:
    migrate.upgrade(empty_db.url, side)
    actual = dump.dump_url(empty_db.url, dump.side_title(side))
    path = dump.default_path(side)
    expected = path.read_text(encoding="utf-8")
    changes = dump.diff(expected, actual, str(path), f"a freshly migrated {side} database")
    assert not changes, (
        f"{path.name} is not the schema the migrations make; if the migration is right,"
        f" regenerate it with `python -m schema.dump` and commit it:\n{changes}"
    )


def test_dump_sees_a_changed_function_body(empty_db: TestDatabase) -> None:
    """A body changed under the same name and signature is a difference."""
    migrate.upgrade(empty_db.url, "local")
    before = dump.dump_url(empty_db.url)
    with empty_db.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE OR REPLACE FUNCTION scsync_clock_ms() RETURNS bigint LANGUAGE sql"
            " AS 'SELECT 42::bigint'"
        )
    after = dump.dump_url(empty_db.url)
    changes = dump.diff(before, after, "before", "after")
    assert "SELECT 42::bigint" in changes


def test_a_downgrade_can_name_an_earlier_definition() -> None:
    """What a later revision's downgrade uses to put back a function of the baseline
    (schema.sql.restore_functions) finds it by name, as CREATE OR REPLACE."""
    from schema.sql import function_definitions

    (snowflake,) = function_definitions("baseline_capture.sql", "scsync_snowflake")
    assert snowflake.startswith("CREATE OR REPLACE FUNCTION scsync_snowflake()")
    with pytest.raises(KeyError, match="scsync_nothing"):
        function_definitions("baseline_capture.sql", "scsync_nothing")
