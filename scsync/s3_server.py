"""A real S3 endpoint over HTTP for tests: moto in server mode, in its own process.

A separate process (rather than moto's in-process mock or ThreadedMotoServer) means the
code under test talks to S3 exactly as in production, over a socket with real signing, and
a test can kill the endpoint to simulate an outage.

moto keeps no request log, so the child wraps moto's WSGI app in a small middleware that
appends one ``METHOD PATH?QUERY`` line per request to a file; :meth:`S3Endpoint.request_log`
reads it back. A server-side copy (a PUT with ``x-amz-copy-source``, which moves no
bytes over the wire) is logged as ``COPY``, so that counting PUTs counts uploads.

The middleware also does what S3 does and moto 5 does not with an
``x-amz-checksum-sha256`` header on a PUT: S3 hashes the bytes it received and refuses
a mismatch with 400 ``BadDigest``; moto stores the declared value unchecked. Here the
body is hashed, a mismatch answered as S3 answers it, and a match handed to moto as a
checksummed upload, so a HEAD with checksum mode returns it as from S3. This
file doubles as the child's entry point (``--serve``), run by path
so the child needs neither ``scsync`` on ``sys.path`` nor anything beyond moto.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Endpoint", "S3EndpointError", "free_port"]

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

# Answered by the middleware itself, so readiness probes neither reach moto nor pollute
# the request log.
_HEALTH_PATH = "/__scsync_health__"
_PORT_RETRIES = 3
_FORM_TYPE = "application/x-www-form-urlencoded"


class S3EndpointError(RuntimeError):
    """The S3 endpoint process could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class S3Endpoint:
    """moto's S3 on ``http://127.0.0.1:PORT``, as a child process."""

    def __init__(self, port: int | None = None, *, check_checksums: bool = True) -> None:
        # check_checksums=False: moto's own behaviour (a declared SHA256 is stored
        # unchecked), for testing how scsync treats a store that does not check it.
        self.check_checksums = check_checksums
        self._port_chosen = port is None
        self.port = free_port() if port is None else port
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._final_log: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the server and wait until it answers HTTP."""
        if self.is_running():
            return
        self._workdir = Path(tempfile.mkdtemp(prefix="scsync-s3-"))
        self._final_log = []
        attempts = _PORT_RETRIES if self._port_chosen else 1
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._spawn_and_wait(timeout)
                    return
                except _BindFailed:
                    if attempt == attempts:
                        raise
                    self.port = free_port()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill the server process; idempotent. The request log stays readable."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._workdir is not None:
            self._final_log = self._read_log_lines()
        self._cleanup_workdir()

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

    def __del__(self) -> None:
        # A forgotten endpoint must not outlive the test session holding its port.
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
            self._cleanup_workdir()

    # -- clients and introspection ------------------------------------------------------

    def client(self) -> S3Client:
        """A boto3 S3 client bound to this endpoint (path-style, dummy credentials)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def request_log(self, *, include_query: bool = False) -> list[tuple[str, str]]:
        """``(method, path)`` for every request served so far, oldest first.

        Paths are URL-decoded (``/bucket/dir/key``); with ``include_query`` the raw query
        string is appended (``/bucket/key?partNumber=1&uploadId=...``), which tells
        multipart part uploads apart from plain PUTs.
        """
        lines = self._read_log_lines() if self._workdir is not None else self._final_log
        out: list[tuple[str, str]] = []
        for line in lines:
            method, _, rest = line.partition(" ")
            path, _, query = rest.partition("?")
            path = unquote(path)
            out.append((method, f"{path}?{query}" if include_query and query else path))
        return out

    def clear_request_log(self) -> None:
        """Forget requests logged so far (e.g. between tests sharing one endpoint)."""
        if self._workdir is not None:
            # Truncation is safe against the child's concurrent appends: it writes with
            # O_APPEND, so the next line lands at the new end of file.
            with contextlib.suppress(FileNotFoundError):
                os.truncate(self._log_path, 0)
        self._final_log = []

    # -- internals -----------------------------------------------------------------------

    @property
    def _log_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "requests.log"

    @property
    def _stderr_path(self) -> Path:
        assert self._workdir is not None
        return self._workdir / "server.err"

    def _read_log_lines(self) -> list[str]:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        # A line still being written has no newline yet; it will be complete on the next read.
        return [ln for ln in text.split("\n")[:-1] if ln]

    def _spawn_and_wait(self, timeout: float) -> None:
        self._log_path.touch()
        env = dict(os.environ)
        env["MOTO_PORT"] = str(self.port)
        with self._stderr_path.open("ab") as err:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    # -P: running a file by path would otherwise put scsync/ itself first on
                    # sys.path, where a module named like a stdlib one could shadow it.
                    "-P",
                    str(Path(__file__).resolve()),
                    "--serve",
                    "--port",
                    str(self.port),
                    "--log",
                    str(self._log_path),
                    *([] if self.check_checksums else ["--no-checksum-check"]),
                ],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                env=env,
                # Own session: a Ctrl-C aimed at the test runner is handled by stop(),
                # not delivered to the server halfway through a request.
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        probe = f"{self.url}{_HEALTH_PATH}"
        while True:
            if self._proc.poll() is not None:
                stderr_tail = self._stderr_tail()
                self._proc = None
                message = f"S3 endpoint on port {self.port} exited early:\n{stderr_tail}"
                if "Address already in use" in stderr_tail:
                    raise _BindFailed(message)
                raise S3EndpointError(message)
            try:
                with urllib.request.urlopen(probe, timeout=1.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                tail = self._stderr_tail()
                self.stop()
                raise S3EndpointError(
                    f"S3 endpoint on port {self.port} did not answer within {timeout}s:\n{tail}"
                )
            time.sleep(0.05)

    def _stderr_tail(self, lines: int = 30) -> str:
        try:
            text = self._stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.rstrip().splitlines()[-lines:]) or "(no output)"

    def _cleanup_workdir(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class _BindFailed(S3EndpointError):
    pass


# -- child process ----------------------------------------------------------------------

_StartResponse = Callable[..., Any]
_WSGIApp = Callable[[dict[str, Any], _StartResponse], Iterable[bytes]]


def _logging_middleware(app: _WSGIApp, log_path: str, check_checksums: bool = True) -> _WSGIApp:
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def wrapped(environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == _HEALTH_PATH:
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
            return [b"ok"]
        # Logged before dispatch, so the line is on disk before the client sees a response;
        # one os.write on an O_APPEND fd keeps lines from concurrent threads whole.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if not raw:
            query = environ.get("QUERY_STRING", "")
            raw = f"{path}?{query}" if query else path
        method = environ.get("REQUEST_METHOD", "?")
        logged = "COPY" if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ else method
        os.write(fd, f"{logged} {raw}\n".encode("utf-8", errors="replace"))
        if method == "PUT" and environ.get("CONTENT_TYPE", "").startswith(_FORM_TYPE):
            # Flask treats a form-encoded body as form fields and moto then stores an empty
            # object; real S3 stores the bytes. urllib sends this type by default, so a
            # presigned PUT from urllib would silently lose its data without this.
            environ["CONTENT_TYPE"] = "application/octet-stream"
        if check_checksums and method == "PUT" and "HTTP_X_AMZ_CHECKSUM_SHA256" in environ:
            refusal = _check_sha256(environ)
            if refusal is not None:
                start_response(
                    "400 Bad Request",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(refusal)))],
                )
                return [refusal]
        return app(environ, start_response)

    return wrapped


def _check_sha256(environ: dict[str, Any]) -> bytes | None:
    """S3's check of a declared SHA256 on a plain (not aws-chunked) body: None when the
    bytes match (the body is put back for moto), else S3's BadDigest error document."""
    if "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", ""):
        return None  # the SDK's streaming uploads; not what presigned PUTs send
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    declared = environ["HTTP_X_AMZ_CHECKSUM_SHA256"]
    if base64.b64encode(hashlib.sha256(body).digest()).decode() == declared:
        environ.setdefault("HTTP_X_AMZ_SDK_CHECKSUM_ALGORITHM", "SHA256")
        return None
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code>'
        b"<Message>The SHA256 you specified did not match the calculated checksum."
        b"</Message></Error>"
    )


def _serve(argv: list[str]) -> None:
    import logging

    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--no-checksum-check", action="store_true")
    args = parser.parse_args(argv)

    # werkzeug logs every request to stderr; the request log already records them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    # S3's app alone: moto's DomainDispatcherApplication finds the service of every
    # request under one process-wide lock, listing moto's ~150 package directories each
    # time (a third of this process's CPU with many small requests); this endpoint only
    # ever serves S3.
    app = create_backend_app("s3")
    run_simple(
        "127.0.0.1",
        args.port,
        _logging_middleware(app, args.log, check_checksums=not args.no_checksum_check),
        threaded=True,
        use_reloader=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    _serve(sys.argv[1:])
