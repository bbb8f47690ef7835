"""The embedded PostgreSQL 18: real initdb/pg_ctl, real connections, no mocks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from scsync.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError, free_port


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _cluster_pids(postmaster: int) -> set[int]:
    """The postmaster and every process it spawned (backends, checkpointer, ...)."""
    pids = {postmaster}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.add(int(entry.name))
    return pids


def _postmasters_for(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(data_dir).encode() in argv and _alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("embedded") / "data")
    with server:
        yield server


def test_tcp_connection_and_settings(pg: EmbeddedPostgres) -> None:
    assert pg.url == f"postgresql://postgres@127.0.0.1:{pg.port}/postgres"
    with psycopg.connect(pg.url) as conn:
        row = conn.execute(
            "SELECT current_setting('server_version_num')::int, inet_server_port(),"
            " current_setting('wal_level'), current_setting('max_connections'),"
            " current_setting('max_replication_slots'), current_setting('max_wal_senders'),"
            " current_setting('max_locks_per_transaction'), current_setting('fsync'),"
            " current_setting('server_encoding'),"
            " (SELECT datcollate FROM pg_database WHERE datname = current_database()),"
            " current_user"
        ).fetchone()
    assert row is not None
    version, port, wal, conns, slots, senders, locks, fsync, enc, collate, user = row
    assert version // 10000 == 18
    assert port == pg.port
    assert wal == "logical"
    assert (conns, slots, senders, locks) == ("300", "64", "64", "256")
    assert fsync == "off"
    assert (enc, collate) == ("UTF8", "C")
    assert user == "postgres"


def test_unix_socket_connection(pg: EmbeddedPostgres) -> None:
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").is_socket()
    # Unix socket paths are limited to ~107 bytes; the socket dir must stay well under.
    assert len(str(pg.socket_dir / f".s.PGSQL.{pg.port}")) < 100
    with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user="postgres") as conn:
        row = conn.execute("SELECT inet_server_addr(), current_setting('wal_level')").fetchone()
    assert row == (None, "logical")  # no server address: it really is the socket
    with psycopg.connect(pg.socket_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_url_for_drivers(pg: EmbeddedPostgres) -> None:
    base = f"postgres@127.0.0.1:{pg.port}/app"
    assert pg.url_for("app") == f"postgresql://{base}"
    assert pg.url_for("app", "psycopg") == f"postgresql+psycopg://{base}"
    assert pg.url_for("app", "pg8000") == f"postgresql+pg8000://{base}"
    with pytest.raises(ValueError):
        pg.url_for("app", "asyncpg")


def test_log_file_in_data_dir(pg: EmbeddedPostgres) -> None:
    assert pg.log_path.parent == pg.data_dir
    assert "database system is ready to accept connections" in pg.log_path.read_text()


def test_restart_keeps_data(pg: EmbeddedPostgres) -> None:
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('survives restart')")
    old_pid = pg.pid
    pg.restart()
    assert pg.pid is not None and pg.pid != old_pid
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("survives restart",)]


def test_two_servers_side_by_side(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    with EmbeddedPostgres(tmp_path / "second") as other:
        assert other.port != pg.port
        assert other.socket_dir != pg.socket_dir
        with (
            psycopg.connect(pg.url, autocommit=True) as a,
            psycopg.connect(other.url, autocommit=True) as b,
        ):
            a.execute("CREATE TABLE IF NOT EXISTS only_in_first (x int)")
            assert b.execute("SELECT to_regclass('only_in_first')").fetchone() == (None,)
            assert a.execute("SELECT to_regclass('only_in_first')").fetchone() == ("only_in_first",)


def test_explicit_port_and_durable(tmp_path: Path) -> None:
    port = free_port()
    with EmbeddedPostgres(tmp_path / "d", port, durable=True) as server:
        assert server.port == port
        with psycopg.connect(server.url) as conn:
            row = conn.execute(
                "SELECT current_setting('fsync'), current_setting('synchronous_commit'),"
                " current_setting('full_page_writes')"
            ).fetchone()
        assert row == ("on", "on", "on")


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    data_dir = tmp_path / "short-lived"
    server = EmbeddedPostgres(data_dir)
    server.start()
    conn = psycopg.connect(server.url)  # an open session means a backend process exists
    try:
        assert server.pid is not None
        pids = _cluster_pids(server.pid)
        assert len(pids) > 2
        server.stop()
        assert not [p for p in pids if _alive(p)]
    finally:
        conn.close()
    assert _postmasters_for(server.data_dir) == []
    assert not server.is_running()
    assert not server.socket_dir.exists()
    server.stop()  # idempotent


def test_stop_after_postmaster_killed(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "killed")
    server.start()
    assert server.pid is not None
    pids = _cluster_pids(server.pid)
    os.kill(server.pid, signal.SIGKILL)
    # Wait for the death itself, so the test covers "postmaster already gone" rather than
    # racing the signal.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and server.is_running():
        time.sleep(0.01)
    server.stop()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)]
    # The stale postmaster.pid must not prevent a fresh start on the same directory.
    server.start()
    server.stop()


def test_file_instead_of_dir_is_an_error(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-dir"
    bogus.write_text("x")
    with pytest.raises(EmbeddedPostgresError, match="not a directory"):
        EmbeddedPostgres(bogus).start()


def test_non_empty_non_cluster_dir_is_an_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("not a cluster")
    with pytest.raises(EmbeddedPostgresError, match="neither empty nor a PostgreSQL cluster"):
        EmbeddedPostgres(junk).start()


def test_startup_failure_reports_server_log(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "bad", settings={"shared_buffers": "not-a-size"})
    with pytest.raises(EmbeddedPostgresError) as info:
        server.start()
    assert "shared_buffers" in str(info.value)
    assert "server log tail" in str(info.value)
    assert _postmasters_for(server.data_dir) == []


def test_port_in_use_explicit_is_an_error(pg: EmbeddedPostgres, tmp_path: Path) -> None:
    with pytest.raises(EmbeddedPostgresError, match=r"could not bind|Address already in use"):
        EmbeddedPostgres(tmp_path / "clash", pg.port).start()


def test_main_runs_until_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "cli"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scsync.embedded_pg", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:"), proc.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _postmasters_for(data_dir.absolute()) == []


def test_auto_port_taken_before_start_is_replaced(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "race")
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        taken = server.port
        with server:
            assert server.port != taken
            with psycopg.connect(server.url) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        squatter.close()
