"""schema.columns is the one description of the synced tables' column roles: the
metadata has exactly its columns, and the lists hard-coded in the SQL functions (read
from the schema dumps, which tests/test_schema_dump.py keeps equal to a migrated
database) are the same, so a column added to one and not the other fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import Table

from schema.columns import (
    ACCOUNT_COLUMNS,
    APPLY_SETS_COLUMNS,
    BADGE_COLUMNS,
    BOOKKEEPING_COLUMNS,
    COLUMNS,
    SIDE_ONLY_COLUMNS,
    Role,
    having,
)
from schema.sql import read_sql
from schema.tables import SYNCED_TABLES, _blob_columns, _standard_columns, metadata_for
from schema.tables_types import SIDES, Side


def _function(side: Side, name: str) -> str:
    """The body of one function of the side's schema dump."""
    text = read_sql(f"current_{side}.sql")
    m = re.search(
        rf"^CREATE OR REPLACE FUNCTION public\.{name}\(.*?^\$function\$;$", text, re.M | re.S
    )
    assert m, f"{name} is not in current_{side}.sql"
    return m.group(0)


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'([a-z_0-9]+)'", text))


def _table(side: Side, name: str) -> Table:
    return metadata_for(side).tables[name]


@pytest.mark.parametrize("side", SIDES)
def test_every_synced_table_has_exactly_the_described_columns(side: Side) -> None:
    for name, file_column in SYNCED_TABLES.items():
        expected = {
            c.name
            for c in COLUMNS.values()
            if side in c.sides
            and (file_column is not None or not c.file_only)
            and (c.tables is None or name in c.tables)
        }
        have = set(_table(side, name).columns.keys())
        assert have & set(COLUMNS) == expected, (side, name)
        generated = {c.name for c in _table(side, name).columns if c.computed is not None}
        assert generated == having(Role.GENERATED) & expected, (side, name)


@pytest.mark.parametrize("side", SIDES)
def test_the_standard_and_file_columns_are_described(side: Side) -> None:
    """A new standard or file column (schema.tables) needs its roles here, in order."""
    declared = [c.name for c in (*_standard_columns(side), *_blob_columns(side))]
    assert declared == [n for n, c in COLUMNS.items() if c.tables is None and side in c.sides]


@pytest.mark.parametrize("side", SIDES)
def test_sql_bookkeeping_columns_are_the_bookkeeping_role(side: Side) -> None:
    body = _function(side, "scsync_bookkeeping_columns")
    assert _quoted(body) == BOOKKEEPING_COLUMNS


@pytest.mark.parametrize("side", SIDES)
def test_sql_apply_sets_the_columns_of_the_set_by_apply_role(side: Side) -> None:
    body = _function(side, "scsync_replicator_apply")
    m = re.search(r"INSERT INTO %1\$I \(%2\$s, ([a-z_, ]+)%5\$s\)", body)
    assert m, "the apply function's INSERT column list moved"
    written = {c.strip() for c in m.group(1).split(",")}
    written |= set(re.findall(r"ins_extra_cols \|\| ', ([a-z_]+)'", body))
    assert written == APPLY_SETS_COLUMNS
    # The rest of what never crosses is computed, or the site's file store's own.
    assert having(Role.GENERATED) | {"local_path"} == SIDE_ONLY_COLUMNS - APPLY_SETS_COLUMNS


@pytest.mark.parametrize("side", SIDES)
def test_sql_capture_badge_is_the_badge_role(side: Side) -> None:
    body = _function(side, "scsync_capture_rows")
    m = re.search(r"\(n\.([a-z_, .n]+)\)\s+IS DISTINCT FROM \(o\.", body)
    assert m, "the capture's badge comparison moved"
    moved = {c.strip().removeprefix("n.") for c in m.group(1).split(",")}
    moved |= set(re.findall(r"'OR n\.([a-z_]+) IS DISTINCT FROM o\.\1'", body))
    assert moved == BADGE_COLUMNS


@pytest.mark.parametrize("side", SIDES)
def test_sql_lockd_apply_refuses_the_account_columns(side: Side) -> None:
    body = _function(side, "scsync_lockd_apply")
    m = re.search(r"OR k IN \(([^)]*)\)", body)
    assert m, "scsync_lockd_apply's account columns moved"
    assert _quoted(m.group(1)) == ACCOUNT_COLUMNS


def test_a_column_missing_from_a_role_would_fail() -> None:
    """The comparisons above are of whole sets: one column less is a difference."""
    body = _function("local", "scsync_bookkeeping_columns")
    assert _quoted(body) != BOOKKEEPING_COLUMNS - {"in_conflict"}


def test_sql_backfill_apply_sets_only_columns_the_site_never_sends() -> None:
    """The site sends a table's columns minus SIDE_ONLY_COLUMNS; what the cloud's
    backfill apply adds itself must be among those, else it would be named twice."""
    text = read_sql("queries_files.sql")
    lists = re.findall(r"INSERT INTO \{table\} \(\{columns\}, ([a-z_, ]+)\{file_column\}\)", text)
    assert len(lists) == 1, "the backfill apply's INSERT column list moved"
    # A file-bearing table's apply adds the column api/sync_files.py fills the slot with.
    code = (Path(__file__).parents[1] / "api" / "sync_files.py").read_text()
    file_column = re.findall(r'file_column = sql\.SQL\(", ([a-z_]+)"\)', code)
    assert len(file_column) == 1, "api/sync_files.py's file column moved"
    added = {c.strip() for c in lists[0].split(",")} | set(file_column)
    assert added <= APPLY_SETS_COLUMNS, sorted(added - APPLY_SETS_COLUMNS)


@pytest.mark.parametrize("side", SIDES)
def test_sql_resolve_sets_only_columns_it_does_not_copy(side: Side) -> None:
    """scsync_resolve_conflict copies the kept version's columns but id and the
    bookkeeping ones, and sets those itself."""
    body = _function(side, "scsync_resolve_conflict")
    assert "scsync_bookkeeping_columns() || ARRAY['id']" in body
    m = re.search(r"INSERT INTO %1\$I \(id, %2\$s, ([a-z_, ]+)\)", body)
    assert m, "scsync_resolve_conflict's INSERT column list moved"
    added = {c.strip() for c in m.group(1).split(",")}
    assert added <= BOOKKEEPING_COLUMNS, sorted(added - BOOKKEEPING_COLUMNS)
