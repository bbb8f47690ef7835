"""Real processes for the lockd tests: the service itself (``scsync lockd run``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from scsync.embedded_pg import free_port

SECRET = "lockd-test-secret-0123456789abcdef-0123456789"


@dataclass
class LockdProcess:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/locks"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=0.5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextmanager
def lockd_process(db_url: str, *extra: str) -> Iterator[LockdProcess]:
    port = free_port()
    env = {**os.environ, "SCSYNC_JWT_SECRET": SECRET}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scsync",
            "lockd",
            "run",
            "--db-url",
            db_url,
            "--port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = LockdProcess(proc, port)
    try:
        deadline = time.monotonic() + 30
        while not _healthy(server.url):
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"lockd exited with {proc.returncode}: {err[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("lockd did not become healthy within 30 s")
            time.sleep(0.1)
        yield server
    finally:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
