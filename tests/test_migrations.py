"""Migrations build the declared schema on both sides, with both drivers, and undo it."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from schema import dump, migrate
from schema.errors import MigrationError
from schema.tables import SYNCED_TABLES, metadata_for
from tests.pg import TestDatabase

pytestmark = pytest.mark.dblevel


def _objects(tdb: TestDatabase) -> dict[str, list[str]]:
    with tdb.engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars()
        functions = conn.execute(
            text(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public' ORDER BY 1"
            )
        ).scalars()
        sequences = conn.execute(
            text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1")
        ).scalars()
        return {"tables": list(tables), "functions": list(functions), "sequences": list(sequences)}


@pytest.mark.parametrize("driver", ["psycopg", "pg8000"])
@pytest.mark.parametrize("side", ["local", "cloud"])
def test_up_down_up_equals_metadata(empty_db: TestDatabase, side: str, driver: str) -> None:
    url = empty_db.url_with(driver)
    nothing = dump.dump_url(url)
    migrate.upgrade(url, side)
    assert migrate.current_revision(url, side) == migrate.head_revision(side)
    assert migrate.schema_diff(url, side) == []
    migrate.check(url, side)
    created = _objects(empty_db)
    expected_tables = set(metadata_for(side).tables)  # type: ignore[arg-type]
    assert expected_tables | {"alembic_version"} == set(created["tables"])
    assert "scsync_snowflake" in created["functions"]

    schema = dump.dump_url(url)  # function and trigger definitions by body, not only names

    migrate.downgrade(url, side)
    assert _objects(empty_db) == {"tables": [], "functions": [], "sequences": []}
    assert dump.dump_url(url) == nothing

    migrate.upgrade(url, side)
    assert _objects(empty_db) == created
    assert not dump.diff(schema, dump.dump_url(url), "first upgrade", "up, down, up again")
    assert migrate.schema_diff(url, side) == []


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_every_synced_table_is_registered_with_its_file_column(
    empty_db: TestDatabase, side: str
) -> None:
    migrate.upgrade(empty_db.url, side)
    with empty_db.engine.connect() as conn:
        registered: dict[str, str | None] = dict(
            conn.execute(text("SELECT table_name, file_column FROM scsync_synced_tables")).all()
        )
        triggers = conn.execute(
            text(
                "SELECT event_object_table, trigger_name FROM information_schema.triggers"
                " WHERE trigger_name LIKE 'scsync_%' GROUP BY 1, 2"
            )
        ).all()
    assert registered == SYNCED_TABLES
    names = ("scsync_stamp", "scsync_capture_ins", "scsync_capture_upd", "scsync_capture_del")
    node = {("scsync_node", "scsync_node_sequences")}  # revisions follow the node id
    assert {(t, n) for t in SYNCED_TABLES for n in names} | node == set(triggers)


def test_check_reports_a_database_behind_head(empty_db: TestDatabase) -> None:
    with pytest.raises(MigrationError, match="at revision None"):
        migrate.check(empty_db.url, "local")


def test_check_reports_drift_from_declared_schema(empty_db: TestDatabase) -> None:
    migrate.upgrade(empty_db.url, "cloud")
    with empty_db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE patients ADD COLUMN handmade text"))
    with pytest.raises(MigrationError, match="handmade"):
        migrate.check(empty_db.url, "cloud")


def test_side_specific_columns(local_db: TestDatabase, cloud_db: TestDatabase) -> None:
    def columns(tdb: TestDatabase, table: str) -> set[str]:
        with tdb.engine.connect() as conn:
            return set(
                conn.execute(
                    text(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = :t"
                    ),
                    {"t": table},
                ).scalars()
            )

    local_cols, cloud_cols = columns(local_db, "images"), columns(cloud_db, "images")
    assert local_cols - cloud_cols == {"local_path"}
    assert cloud_cols - local_cols == {"lifecycle"}


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_alembic_command_line_with_named_environments(empty_db: TestDatabase, side: str) -> None:
    """What a DBA runs: `alembic -n SIDE upgrade head -x url=...` from the repository root."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    alembic = [sys.executable, "-m", "alembic", "-c", str(root / "alembic.ini"), "-n", side]
    up = subprocess.run(
        [*alembic, "-x", f"url={empty_db.url_with('pg8000')}", "upgrade", "head"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
    assert up.returncode == 0, up.stderr
    assert migrate.schema_diff(empty_db.url, side) == []
    env_var = "SCSYNC_LOCAL_DB_URL" if side == "local" else "SCSYNC_CLOUD_DB_URL"
    import os

    down = subprocess.run(
        [*alembic, "downgrade", "base"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
        env={**os.environ, env_var: empty_db.url},
    )
    assert down.returncode == 0, down.stderr
    assert _objects(empty_db)["tables"] == ["alembic_version"]
