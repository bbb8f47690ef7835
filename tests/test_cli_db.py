"""`scsync db ...` as an operator runs it: a real process, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schema import migrate
from tests.pg import TestDatabase


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    for key in ("SCSYNC_LOCAL_DB_URL", "SCSYNC_CLOUD_DB_URL"):
        if env is None or key not in env:
            full_env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "scsync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.parametrize("driver", ["postgresql", "postgresql+pg8000"])
def test_unreachable_url_is_one_line_and_nonzero(driver: str) -> None:
    result = run_cli("db", "upgrade", "--side", "local", "--url", f"{driver}://x@127.0.0.1:1/none")
    _assert_one_line_error(result, "cannot connect to the database")
    assert result.returncode == 3


def test_wrong_side_name() -> None:
    result = run_cli("db", "upgrade", "--side", "middle", "--url", "postgresql://x@127.0.0.1/x")
    _assert_one_line_error(result, "unknown side 'middle'")
    assert result.returncode == 2


def test_malformed_url_and_missing_url() -> None:
    _assert_one_line_error(
        run_cli("db", "upgrade", "--side", "local", "--url", "not a url"), "not a database URL"
    )
    _assert_one_line_error(run_cli("db", "upgrade", "--side", "cloud"), "SCSYNC_CLOUD_DB_URL")
    _assert_one_line_error(
        run_cli("db", "upgrade", "--side", "local", "--url", "mysql://x@127.0.0.1/x"),
        "unsupported database 'mysql'",
    )


def test_missing_arguments_are_one_line() -> None:
    _assert_one_line_error(run_cli("db", "upgrade"), "--side")
    _assert_one_line_error(run_cli("db", "set-node", "--side", "local"), "--node-id")


@pytest.mark.dblevel
def test_upgrade_current_check_set_node(empty_db: TestDatabase) -> None:
    url = empty_db.libpq_url
    up = run_cli("db", "upgrade", "--side", "cloud", "--url", url)
    assert up.returncode == 0, up.stderr
    head = migrate.head_revision("cloud")
    assert f"upgraded to {head}" in up.stdout
    assert migrate.current_revision(url, "cloud") == head
    current = run_cli("db", "current", "--side", "cloud", env={"SCSYNC_CLOUD_DB_URL": url})
    assert current.returncode == 0 and f"at {head}, head is {head}" in current.stdout
    assert run_cli("db", "check", "--side", "cloud", "--url", url).returncode == 0
    node = run_cli("db", "set-node", "--side", "cloud", "--url", url, "--node-id", "0")
    assert node.returncode == 0, node.stderr
    # A legacy INSERT without site_id: the cloud has no site of its own to give it.
    import psycopg

    with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute(_LEGACY_INSERT)
    bad_node = run_cli("db", "set-node", "--side", "cloud", "--url", url, "--node-id", "5000")
    _assert_one_line_error(bad_node, "between 0 and 4095")
    wrong_side_check = run_cli("db", "check", "--side", "local", "--url", url)
    _assert_one_line_error(wrong_side_check, "differs from the declared schema")


@pytest.mark.dblevel
def test_dump_schema_prints_the_checked_in_schema(empty_db: TestDatabase, tmp_path: Path) -> None:
    from schema import dump

    url = empty_db.libpq_url
    assert run_cli("db", "upgrade", "--side", "local", "--url", url).returncode == 0
    printed = run_cli("db", "dump-schema", "--side", "local", "--url", url)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == dump.default_path("local").read_text(encoding="utf-8")
    out = tmp_path / "local.sql"
    written = run_cli("db", "dump-schema", "--side", "local", "--url", url, "--output", str(out))
    assert written.returncode == 0 and out.read_text(encoding="utf-8") == printed.stdout


@pytest.mark.dblevel
def test_unknown_revision_is_one_line(empty_db: TestDatabase) -> None:
    """A database of a development build before the baseline (at 0013, say)."""
    with empty_db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('0013')")
    result = run_cli("db", "upgrade", "--side", "local", "--url", empty_db.libpq_url)
    _assert_one_line_error(result, "Can't locate revision", "0013", "made afresh")


_LEGACY_INSERT = (
    "INSERT INTO patients (patient_code, name) VALUES ('L', 'Legacy') RETURNING site_id"
)


@pytest.mark.dblevel
def test_a_legacy_insert_without_site_id_gets_the_site_set_node_recorded(
    local_db: TestDatabase,
) -> None:
    """A legacy application's plain INSERT names no site_id: on a site's database it gets
    the site `scsync db set-node --site-id` recorded (3 here: not a fixture's 1 by
    chance). The cloud, with no site of its own, refuses it (the test above)."""
    import psycopg

    url = local_db.libpq_url
    node = run_cli(
        "db", "set-node", "--side", "local", "--url", url, "--node-id", "1", "--site-id", "3"
    )
    assert node.returncode == 0, node.stderr
    with psycopg.connect(url) as conn:
        assert conn.execute(_LEGACY_INSERT).fetchone() == (3,)
