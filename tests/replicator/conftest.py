"""`scsync replicator run` as real processes (the world of two sites: tests/world.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.world import Site


class Replicators:
    """`scsync replicator run` as real processes; all of them killed at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, site: Site, env: dict[str, str] | None = None, **overrides: Any
    ) -> subprocess.Popen[bytes]:
        values: dict[str, Any] = {
            "local_db_url": site.local.url,
            "cloud_api_url": site.cloud_api_url,
            "site_token": site.token,
            "poll_interval_s": 1.0,
            "op_timeout_s": 10.0,
            "connect_timeout_s": 3,
            "backoff_initial_s": 0.2,
            "backoff_max_s": 2.0,
            "dead_letter_initial_s": 0.5,
            "dead_letter_max_s": 2.0,
            "log_level": "INFO",
        }
        values.update(overrides)
        config = self.tmp_path / f"replicator-{site.creds.site_id}-{len(self.procs)}.toml"
        config.write_text(
            "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()), encoding="utf-8"
        )
        log = open(  # noqa: SIM115 - the process owns it until it exits
            self.tmp_path / f"replicator-{len(self.procs)}.log", "wb"
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", "replicator", "run", "--config", str(config)],
            env={
                **os.environ,
                "SCSYNC_SITE_ID": str(site.creds.site_id),  # settings from env vars too
                **(env or {}),
            },
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_of(self, index: int) -> str:
        return (self.tmp_path / f"replicator-{index}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def replicators(tmp_path: Path) -> Iterator[Replicators]:
    reps = Replicators(tmp_path)
    try:
        yield reps
    finally:
        reps.kill_all()
