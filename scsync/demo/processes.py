"""The demo's process supervisor: every service is a real child process with its own
log file, stopped (SIGTERM, then SIGKILL) in reverse start order on any exit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class DemoError(Exception):
    """A demo step could not be carried out (a service did not start, a command failed)."""


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def scsync_argv(*args: str) -> list[str]:
    """The CLI as a child process of the same interpreter (works without the venv on PATH)."""
    return [sys.executable, "-m", "scsync", *args]


class Supervisor:
    def __init__(self, log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.base_env = {**os.environ, **(env or {})}
        self.procs: dict[str, Proc] = {}
        self.order: list[str] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Proc:
        if name in self.procs and self.procs[name].popen.poll() is None:
            raise DemoError(f"{name} is running already")
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                list(argv),
                env={**self.base_env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Own process group: a Ctrl-C at the terminal reaches the demo only, which
                # then stops each service in order instead of all of them at once.
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs[name] = proc
        if name in self.order:
            self.order.remove(name)
        self.order.append(name)
        return proc

    def wait_for(
        self,
        name: str,
        ready: Callable[[], bool],
        timeout: float,
        what: str,
    ) -> None:
        """Poll `ready` until true; fail early (with the log's tail) when the process dies."""
        proc = self.procs[name]
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if ready():
                    return
            if proc.popen.poll() is not None:
                raise DemoError(
                    f"{name} exited with {proc.popen.returncode} before {what}:\n{proc.tail()}"
                )
            if time.monotonic() > deadline:
                raise DemoError(f"{name}: no {what} within {timeout:.0f} s:\n{proc.tail()}")
            time.sleep(0.1)

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        proc = self.procs.get(name)
        if proc is None or proc.popen.poll() is not None:
            return None if proc is None else proc.popen.returncode
        with contextlib.suppress(ProcessLookupError):
            proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            return proc.popen.wait(10)

    def stop_all(self) -> None:
        for name in reversed(self.order):
            with contextlib.suppress(Exception):
                self.stop(name)

    def alive(self) -> list[str]:
        return [n for n in self.order if self.procs[n].popen.poll() is None]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run one `scsync` command to completion; its stdout, or DemoError with its stderr."""
    done = subprocess.run(
        scsync_argv(*args),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise DemoError(
            f"scsync {' '.join(args[:3])} failed ({done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done.stdout
