"""`scsync lockd ...`: run the lease service alone, sweep once, show or break a lease."""

from __future__ import annotations

import argparse
import json
from typing import Any

from schema.errors import ConfigError

URL_ENV = "SCSYNC_CLOUD_DB_URL"


def _settings(args: argparse.Namespace) -> Any:
    """Flags, then the environment and the --config file (lockd/settings.py)."""
    from lockd.settings import load_lockd_settings

    return load_lockd_settings(getattr(args, "config", None), vars(args))


def _config(settings: Any) -> Any:
    from lockd.manager import LockdConfig

    try:
        return LockdConfig(
            ttl_s=settings.ttl_s,
            idle_warn_s=settings.idle_warn_s or None,
            idle_close_s=settings.idle_close_s or None,
            sweep_interval_s=settings.sweep_interval_s,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    from lockd import web
    from schema.config import warn_if_readable

    warn_if_readable(args.config, "lockd")
    settings = _settings(args)
    secret = settings.secret()
    db_url, config = settings.database_url(), _config(settings)
    from schema.redact import install

    install("WARNING")  # aiohttp quotes a refused request's headers: redacted
    print(f"lockd listening on http://{settings.host}:{settings.port}{args.prefix}", flush=True)
    web.run(
        host=settings.host,
        port=settings.port,
        db_url=db_url,
        jwt_secret=secret,
        config=config,
        prefix=args.prefix,
        reuse_port=args.reuse_port,
        revocation_check_s=settings.revocation_check_s,
    )
    return 0


async def _with_manager(args: argparse.Namespace, op: str) -> Any:
    from lockd.db import make_pool
    from lockd.manager import LeaseManager

    settings = _settings(args)
    async with make_pool(settings.database_url(), min_size=1, max_size=1) as pool:
        manager = LeaseManager(pool, _config(settings))
        if op == "sweep":
            return await manager.sweep()
        if op == "get":
            return (await manager.get(args.table, args.row_id)).raw
        return await manager.force_break(
            args.table, args.row_id, by=args.by, reason=args.reason or ""
        )


def _op(op: str) -> Any:
    async def handler(args: argparse.Namespace) -> int:
        print(json.dumps(await _with_manager(args, op), default=str))
        return 0

    return handler


def register(sub: Any) -> None:
    lk = sub.add_parser(
        "lockd",
        help="edit leases: run the lock service, sweep, show or break a lease",
        epilog="examples:\n"
        "  SCSYNC_JWT_SECRET=... scsync lockd run --db-url postgresql://.../cloud --port 8470\n"
        "  scsync lockd get --table patients --row-id 123\n"
        "  scsync lockd break --table patients --row-id 123 --by cloud:admin --reason stuck",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lk_sub = lk.add_subparsers(dest="lockd_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config", help="the cloud's config file: its [lockd] table (and [api] db_url)"
        )
        p.add_argument("--db-url", help=f"cloud database URL (default: {URL_ENV})")
        # Defaults are applied after the --config file (see DEFAULTS), hence None here.
        p.add_argument("--ttl-s", type=float, help="lease TTL (default 30)")
        p.add_argument("--idle-warn-s", type=float, help="0 = no idle policy (default 600)")
        p.add_argument("--idle-close-s", type=float, help="(default 300)")
        p.add_argument("--sweep-interval-s", type=float, help="(default 1)")

    run = lk_sub.add_parser("run", help="serve lockd over HTTP (JWT secret from the env)")
    common(run)
    run.add_argument("--host", help="(default 127.0.0.1)")
    run.add_argument("--port", type=int, help="(default 8470)")
    run.add_argument(
        "--revocation-check-s",
        type=float,
        help="a revoked token is refused within this many seconds, at most 30 (default 10)",
    )
    run.add_argument(
        "--prefix", default="/v1/locks", help="the URL path the lease endpoints are under"
    )
    run.add_argument(
        "--reuse-port",
        action="store_true",
        help="SO_REUSEPORT: several lockd processes may serve one port",
    )
    run.set_defaults(handler=_run)

    sweep = lk_sub.add_parser("sweep", help="expire leases and apply the idle policy once")
    common(sweep)
    sweep.set_defaults(handler=_op("sweep"))

    get = lk_sub.add_parser("get", help="show a record's lease")
    common(get)
    get.add_argument("--table", required=True)
    get.add_argument("--row-id", type=int, required=True)
    get.set_defaults(handler=_op("get"))

    brk = lk_sub.add_parser("break", help="admin: force-break a record's lease")
    common(brk)
    brk.add_argument("--table", required=True)
    brk.add_argument("--row-id", type=int, required=True)
    brk.add_argument("--by", required=True, help="who breaks it, e.g. cloud:admin")
    brk.add_argument("--reason")
    brk.set_defaults(handler=_op("break"))
