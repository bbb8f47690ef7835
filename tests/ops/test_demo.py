"""`scsync demo` as an operator runs it: every check passes, nothing is left running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import psutil


def _leftovers(workdir: Path) -> list[str]:
    """Processes whose command line names the demo's working directory (all of them do:
    PostgreSQL data dirs, config files, file stores)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        with_dir = any(str(workdir) in part for part in (p.info["cmdline"] or []))
        if with_dir and p.pid != os.getpid():
            found.append(f"{p.pid}: {' '.join(p.info['cmdline'])[:200]}")
    return found


def _check_the_scenario(out: str, workdir: Path) -> None:
    """What the scenario's narration and the demo's files must show once the checks ran."""
    m = re.search(r"(\d+) checks passed, (\d+) failed", out)
    assert m is not None, out[-3000:]
    assert int(m.group(2)) == 0 and int(m.group(1)) >= 15, out[-3000:]
    for step in (
        "First connection: backfill",
        "Editing by local",
        "refused while the record is locked",
        "A cloud edit flows down",
        "record.editing by cloud",  # seen on the clinic's WebSocket (the relay)
        "offline edit offered, taken, conflict, resolved",
        "Sync turned off for one record",
    ):
        assert step in out
    assert "100.0%" in out  # the backfill's progress bar reached its end
    assert "FAILED" not in out
    # Every config file is 0600, and each clinic has a JWT secret of its own, not the
    # cloud's (a clinic could mint cloud tokens with it).
    configs = sorted(workdir.glob("*.toml"))
    assert len(configs) >= 3, configs
    secrets = []
    for cfg in configs:
        assert cfg.stat().st_mode & 0o077 == 0, (cfg, oct(cfg.stat().st_mode))
        data = tomllib.loads(cfg.read_text(encoding="utf-8"))
        secrets.append(data.get("api", data)["jwt_secret"])
    assert len(set(secrets)) == len(configs), "a JWT secret is shared between sides"


def test_demo_passes_every_check_serves_until_ctrl_c_then_stops_everything(
    tmp_path: Path,
) -> None:
    """The operator's demo in one run (a second whole run cost CI ~50 s): every check of
    the scenario passes, the demo reaches "serving", the status pages answer, and Ctrl-C
    (SIGINT) stops every process it started. Small data: the scenario is the same.
    ``--once`` (exit after the checks) is run by the failing-service test below."""
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scsync",
            "demo",
            "--workdir",
            str(workdir),
            "--patients",
            "12",
            "--images",
            "2",
            "--volume-mb",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("Ctrl-C stops every process"):
                break
        text = "".join(seen)
        assert "serving" in text, text[-4000:]
        _check_the_scenario(text, workdir)
        pages = re.findall(r"^   (?:cloud|clinic-\w+)\s+(http://127\.0\.0\.1:\d+)/ ", text, re.M)
        assert len(pages) == 3, text[-2000:]
        for page in pages:
            with urllib.request.urlopen(page + "/", timeout=5) as resp:
                assert resp.status == 200 and b"<html" in resp.read().lower()
        assert _leftovers(workdir), "the demo should have services running"
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=90)[0]
        assert proc.returncode == 130
        assert "stopping" in rest
        deadline = time.monotonic() + 10
        while _leftovers(workdir) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftovers(workdir) == []
    finally:
        if proc.poll() is None:
            # A failed check: Ctrl-C first, so the demo stops what it started (a SIGKILL
            # of the demo alone left its replicators and APIs running for the rest of
            # the suite); killed only if it does not stop.
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_demo_stops_every_process_when_a_service_fails(tmp_path: Path) -> None:
    """A service that cannot start (a bad port for every API) fails the demo with the
    service's own message, and what was already running is stopped."""
    workdir = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "scsync", "demo", "--once", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "SCSYNC_API_PORT": "not-a-port"},
    )
    assert done.returncode == 1, done.stdout[-3000:]
    assert "cloud-api exited with 2" in done.stdout
    assert "SCSYNC_API_PORT" in done.stdout  # the API's own message is shown
    assert "cloud PostgreSQL" in done.stdout  # things were running before the failure
    assert _leftovers(workdir) == []
