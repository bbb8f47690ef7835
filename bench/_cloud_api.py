"""The cloud API as its own process for the benchmarks that go through it (replication,
backfill, sites), as a site reaches it in production: ``scsync api run --side cloud``
on a loopback port, stopped with SIGTERM when the run ends."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

JWT_SECRET = "bench-secret-of-at-least-thirty-two-bytes"


class CloudApi:
    """The process, its base URL (once /health answers) and its log file."""

    def __init__(self, stack: ExitStack, cloud_url: str, workdir: Path, **settings: Any) -> None:
        from scsync.embedded_pg import free_port

        port = free_port()
        values: dict[str, Any] = {
            "db_url": cloud_url,
            "jwt_secret": JWT_SECRET,
            "port": port,
            "mount_blobs": False,
            **settings,
        }
        config = workdir / "cloud-api.toml"
        config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
        config.chmod(0o600)
        self.log = workdir / "cloud-api.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", "api", "run", "--side", "cloud", "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=stack.enter_context(open(self.log, "wb")),  # noqa: SIM115
        )
        stack.callback(self.stop)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the cloud API did not start ({self.log})") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
