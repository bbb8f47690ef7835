"""`scsync replicator run` as a real process: live sync on hints, SIGTERM, sd_notify."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.replicator.conftest import Replicators, World, rows, wait_until


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
        time.sleep(0.5)  # the listeners connect right after READY
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
        messages = set()
        notify.settimeout(0.5)
        try:
            while True:
                messages.add(notify.recv(100))
        except TimeoutError:
            pass
        assert b"STOPPING=1" in messages
    finally:
        notify.close()


def test_sigterm_while_the_cloud_is_unreachable_exits_promptly(
    world: World, replicators: Replicators
) -> None:
    # A port nobody listens on: the lanes sit in backoff, the stop must not wait.
    proc = replicators.start(
        world.site1, cloud_db_url="postgresql://nobody@127.0.0.1:9/none", backoff_max_s=30.0
    )
    time.sleep(2.0)
    assert proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    assert "retrying in" in replicators.log_of(0)
