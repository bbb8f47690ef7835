"""`scsync api ...`: run the local or cloud API; hash a password for user_accounts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import signal
import socket
import sys
from typing import Any


def _sd_notify(message: str) -> None:
    """systemd's notify protocol (Type=notify, WatchdogSec): one datagram, no library."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode())


async def _watchdog(interval_s: float) -> None:
    while True:
        _sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


async def _serve(side: str, config: str | None) -> int:
    from aiohttp import web

    from api.app import make_app
    from api.logs import SafeAccessLogger, configure
    from api.settings import load_settings
    from schema.config import warn_if_readable

    configure("WARNING")  # until the settings name the level
    warn_if_readable(config, f"api ({side})")
    settings = load_settings(side, config)
    configure(settings.log_level)
    app = make_app(side, settings)
    # Method, path, status, time: no query string (?token=), header or body.
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log_class=SafeAccessLogger,
        access_log=logging.getLogger("scsync.api.access"),
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, shutdown_timeout=5.0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(json.dumps({"listening": f"http://{host}:{port}", "side": side}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _sd_notify("READY=1")
    watchdog: asyncio.Task[None] | None = None
    usec = os.environ.get("WATCHDOG_USEC")
    if usec and usec.isdigit():
        watchdog = asyncio.create_task(_watchdog(int(usec) / 2e6))
    try:
        await stop.wait()
    finally:
        _sd_notify("STOPPING=1")
        if watchdog is not None:
            watchdog.cancel()
        await runner.cleanup()
    return 0


def _run(args: argparse.Namespace) -> int:
    import uvloop

    # libuv's loop: the API is syscall-bound (many sockets, small frames); see bench/ws.py.
    return uvloop.run(_serve(args.side, args.config))


def _hash_password(args: argparse.Namespace) -> int:
    from api.passwords import hash_password

    password = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("password: ")
    print(hash_password(password))
    return 0


def register(sub: Any) -> None:
    """Add `api` to the top-level sub-parsers."""
    api = sub.add_parser(
        "api",
        help="the local and cloud HTTP/WebSocket APIs",
        epilog="examples:\n"
        "  scsync api run --side local --config /etc/scsync/local.toml\n"
        "  SCSYNC_API_PORT=8081 scsync api run --side cloud --config cloud.toml\n"
        "  echo secret | scsync api hash-password --stdin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    api_sub = api.add_subparsers(dest="api_command", required=True)
    run = api_sub.add_parser("run", help="serve the API until SIGTERM/SIGINT")
    run.add_argument("--side", required=True, choices=("local", "cloud"))
    run.add_argument("--config", help="TOML settings file (SCSYNC_API_<KEY> overrides it)")
    run.set_defaults(handler=_run)
    hp = api_sub.add_parser("hash-password", help="print a user_accounts password hash")
    hp.add_argument("--stdin", action="store_true", help="read the password from stdin")
    hp.set_defaults(handler=_hash_password)
