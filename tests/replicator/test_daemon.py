"""`scsync replicator run` as a real process: live sync on hints, SIGTERM, sd_notify."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.polling import queued_datagrams, wait_until
from tests.replicator.conftest import Replicators
from tests.world import World, rows


def _listening(world: World) -> bool:
    """The push lane's hint connection has run its first statement, its LISTEN (it
    connects right after READY)."""
    with world.site1.local.connect(autocommit=True) as c:
        row = c.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scsync-listen-push'"
            " AND state = 'idle' AND query <> ''"
        ).fetchone()
    return row is not None and row[0] == 1


def test_daemon_syncs_both_ways_on_hints_and_stops_on_sigterm(
    world: World, replicators: Replicators, tmp_path: Path
) -> None:
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(20)
    # A long poll interval: only NOTIFY hints can make the changes arrive in time.
    proc = replicators.start(
        world.site1,
        env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"},
        poll_interval_s=60.0,
    )
    try:
        assert notify.recv(100) == b"READY=1"
        assert notify.recv(100) == b"WATCHDOG=1"
        wait_until(lambda: _listening(world), 10, "the push lane's LISTEN connection")
        with world.site1.local.connect(autocommit=True) as c:
            c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'L', 'l')")
        wait_until(lambda: len(rows(world.cloud, "patients")) == 1, 15, "push")
        with world.cloud.connect(autocommit=True) as c:
            c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'C', 'c')")
            # Another site's hint must not matter, and its row must not arrive.
            c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (2, 'X', 'x')")
        wait_until(lambda: len(rows(world.site1.local, "patients")) == 2, 15, "pull")
        assert {r["patient_code"] for r in rows(world.site1.local, "patients").values()} == {
            "L",
            "C",
        }
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - started < 10
        assert b"STOPPING=1" in queued_datagrams(notify)  # it exited: all it sent is here
    finally:
        notify.close()


def test_sigterm_while_the_cloud_is_unreachable_exits_promptly(
    world: World, replicators: Replicators
) -> None:
    # A port nobody listens on: the lanes sit in backoff, the stop must not wait.
    proc = replicators.start(world.site1, cloud_api_url="http://127.0.0.1:9", backoff_max_s=30.0)
    wait_until(lambda: "retrying in" in replicators.log_of(0), 30, "a failed connect")
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10


def test_killed_between_cloud_apply_and_local_ack_then_cloud_edit_is_no_conflict(
    world: World, replicators: Replicators
) -> None:
    """The replicator process is SIGKILLed after the cloud applied a batch and before the
    site recorded it; meanwhile a cloud user edits one of those rows. On restart the old
    change is recognised as a duplicate: no false conflict, the cloud edit kept."""
    local = world.site1.local
    with local.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) "
            "SELECT 1, 'R' || g, 'original' FROM generate_series(1, 5) g"
        )
    with local.connect() as blocker:
        # The ack deletes from the outbox: holding this lock parks the replicator right
        # after the cloud's commit, where a crash hurts most.
        blocker.execute("LOCK TABLE scsync_outbox IN EXCLUSIVE MODE")
        proc = replicators.start(world.site1, lanes=["push", "pull"])
        wait_until(lambda: len(rows(world.cloud, "patients")) == 5, 20, "the cloud's apply")
        with world.cloud.connect() as c:
            assert c.execute("SELECT count(*) FROM scsync_inbox").fetchone() == (1,)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        # Its ack statement still waits in the server for our lock; a dead client's
        # backend goes too (the server would find out at its next write).
        blocker.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'scsync-push-src'"
        )
        blocker.rollback()
    with local.connect() as c:
        assert c.execute("SELECT count(*) FROM scsync_outbox").fetchone() == (5,)
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'cloud edit' WHERE patient_code = 'R3'")
    proc = replicators.start(world.site1, lanes=["push", "pull"])

    def settled() -> bool:
        names = {r["patient_code"]: r["name"] for r in rows(local, "patients").values()}
        return names.get("R3") == "cloud edit"

    wait_until(settled, 20, "the cloud edit to reach the site")
    local_rows, cloud_rows = rows(local, "patients"), rows(world.cloud, "patients")
    assert {(r["id"], r["revision"], r["name"]) for r in local_rows.values()} == {
        (r["id"], r["revision"], r["name"]) for r in cloud_rows.values()
    }
    for db in (local, world.cloud):
        with db.connect() as c:
            assert c.execute("SELECT count(*) FROM scsync_conflicts").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM patients WHERE in_conflict").fetchone() == (0,)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_connections_killed_on_both_sides_are_reopened(
    world: World, replicators: Replicators
) -> None:
    proc = replicators.start(world.site1, poll_interval_s=0.5)
    wait_until(lambda: "running lanes" in replicators.log_of(0), 30, "the daemon")
    for round_ in range(2):
        for db in (world.site1.local, world.cloud):
            with db.connect(autocommit=True) as c:
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'scsync-%%' AND datname = current_database()"
                )
        with world.site1.local.connect(autocommit=True) as c:
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'l')",
                (f"L{round_}",),
            )
        with world.cloud.connect(autocommit=True) as c:
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'c')",
                (f"C{round_}",),
            )
        expected = 2 * (round_ + 1)

        def synced(n: int = expected) -> bool:
            return (
                len(rows(world.site1.local, "patients")) == n == len(rows(world.cloud, "patients"))
            )

        wait_until(synced, 30, "sync after the connections were killed")
    assert proc.poll() is None
    assert "retrying in" in replicators.log_of(0) or "reconnecting in" in replicators.log_of(0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
