"""What systemd runs: the replicator unit's command (`scsync replicator run`, here with its
file lanes on) and its alias `scsync files run` speak the notify protocol (READY=1,
WATCHDOG=1, STOPPING=1) to a real datagram socket, and the units and the example configs
agree with each other. (The row lanes alone are proven the same way in
tests/replicator/test_daemon.py; `systemd-analyze verify` runs on every unit in
tests/test_systemd_units.py.)"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from api.settings import load_settings as load_api
from replicator.settings import load_settings as load_replicator
from replicator.sites import register_site
from scsync.commands.file_lanes import ENV as FILE_ENV
from tests.pg import TestDatabase
from tests.polling import queued_datagrams
from tests.world import replicator_toml

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
CONFIGS = ROOT / "deploy" / "config"


def _exec_start(unit: str) -> list[str]:
    """The unit's command line after the program (`replicator run --config FILE`)."""
    text = (UNITS / unit).read_text(encoding="utf-8")
    m = re.search(r"^ExecStart=/\S+/scsync (.*)$", text, re.MULTILINE)
    assert m, unit
    return m.group(1).split()


@pytest.mark.parametrize(
    "command",
    [_exec_start("scsync-replicator.service")[:2], ["files", "run"]],
    ids=["unit-command", "files-run-alias"],
)
def test_replicator_with_file_lanes_notifies_ready_watchdog_and_stopping(
    local_db: TestDatabase, cloud_db: TestDatabase, tmp_path: Path, command: list[str]
) -> None:
    creds = cloud_db.call(register_site, "clinic-notify")
    config = tmp_path / "local.toml"
    config.write_text(
        "[replicator]\n"
        # READY comes before the lanes reach the cloud API: none is needed here.
        + replicator_toml(local_db.url, "http://127.0.0.1:9", creds.site_id)
        + "[files]\n"
        'blobs_url = "http://127.0.0.1:9/v1/blobs"\ntoken = "t"\n'
        f"store = {json.dumps(str(tmp_path / 'store'))}\n",
        encoding="utf-8",
    )
    sock_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(sock_path))
    notify.settimeout(30)
    log = open(tmp_path / "files.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "scsync", *command, "--config", str(config)],
        env={
            **os.environ,
            "NOTIFY_SOCKET": str(sock_path),
            "WATCHDOG_USEC": "400000",
            # The [files] table alone must turn the file lanes on.
            **{name: "" for name in FILE_ENV.values()},
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        assert notify.recv(100) == b"READY=1"
        # WATCHDOG_USEC = 0.4 s: a ping every 0.2 s, several while we listen.
        pings = [notify.recv(100) for _ in range(3)]
        assert pings == [b"WATCHDOG=1"] * 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert b"STOPPING=1" in queued_datagrams(notify)  # it exited: all it sent is here
        assert "file lanes on" in (tmp_path / "files.log").read_text(errors="replace")
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _exec_config(unit: str) -> str:
    text = (UNITS / unit).read_text(encoding="utf-8")
    m = re.search(r"^ExecStart=.* --config (\S+)$", text, re.MULTILINE)
    assert m, unit
    return m.group(1)


def test_units_point_at_the_example_config_layout() -> None:
    assert (UNITS / "scsync-replicator.service").exists()
    assert _exec_config("scsync-replicator.service") == _exec_config("scsync-api-local.service")
    assert _exec_start("scsync-replicator.service") == [
        "replicator",
        "run",
        "--config",
        "/etc/scsync/local.toml",
    ]
    for unit in ("scsync-replicator.service", "scsync-api-local.service"):
        assert Path(_exec_config(unit)).name == "local.toml"
    assert Path(_exec_config("scsync-api-cloud.service")).name == "cloud.toml"


def test_example_configs_load_in_every_service() -> None:
    """With the installation's own values in place of the placeholders (which every
    service refuses as shipped: tests/ops/test_placeholders.py)."""
    local, cloud = CONFIGS / "local.toml", CONFIGS / "cloud.toml"
    secret = {"SCSYNC_API_JWT_SECRET": "a-real-secret-of-this-installation-0123456789"}
    token = {"SCSYNC_API_LOCKD_TOKEN": "a-real-site-token"}
    assert load_api("local", local, env={**secret, **token}).side == "local"
    assert load_api("cloud", cloud, env=secret).side == "cloud"
    assert load_replicator(local, site_token="a-real-site-token").site_id >= 1


def test_example_configs_are_what_init_writes() -> None:
    from scsync.config_example import PLACEHOLDER_SECRET, render

    for side in ("local", "cloud"):
        text = (CONFIGS / f"{side}.toml").read_text(encoding="utf-8")
        assert text == render(side, PLACEHOLDER_SECRET), (
            f"deploy/config/{side}.toml is stale: regenerate it with "
            f"scsync.config_example.render({side!r}, PLACEHOLDER_SECRET)"
        )


def test_lockd_runs_from_the_cloud_config_file(cloud_db: TestDatabase, tmp_path: Path) -> None:
    """`scsync lockd run --config cloud.toml`: the database and secret from [api], the
    port and TTL from [lockd]; flags and environment stay unset."""
    from scsync.embedded_pg import free_port

    port = free_port()
    config = tmp_path / "cloud.toml"
    config.write_text(
        f"[api]\ndb_url = {json.dumps(cloud_db.url)}\n"
        'jwt_secret = "ops-deploy-tests-secret-0123456789abcdef"\n'
        f"[lockd]\nport = {port}\nttl_s = 12.5\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCSYNC_")}
    log = open(tmp_path / "lockd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "scsync", "lockd", "run", "--config", str(config)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        import time
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v1/locks/health", timeout=2
                ) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "lockd.log").read_text()
                assert time.monotonic() < deadline, "lockd did not answer"
                time.sleep(0.2)
        sweep = subprocess.run(
            [sys.executable, "-m", "scsync", "lockd", "sweep", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert sweep.returncode == 0, sweep.stderr
        assert "expired" in json.loads(sweep.stdout)
    finally:
        proc.terminate()
        proc.wait(15)
