"""`scsync lockd ...`: run the lease service alone, sweep once, show or break a lease."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from schema.errors import ConfigError

SECRET_ENV = "SCSYNC_JWT_SECRET"
URL_ENV = "SCSYNC_CLOUD_DB_URL"


def _url(args: argparse.Namespace) -> str:
    value = args.db_url or os.environ.get(URL_ENV)
    if not value:
        raise ConfigError(f"no cloud database URL: pass --db-url or set {URL_ENV}")
    from schema.config import check_postgres_url

    return check_postgres_url("db_url", value)


def _config(args: argparse.Namespace) -> Any:
    from lockd.manager import LockdConfig

    try:
        return LockdConfig(
            ttl_s=args.ttl_s,
            idle_warn_s=args.idle_warn_s or None,
            idle_close_s=args.idle_close_s or None,
            sweep_interval_s=args.sweep_interval_s,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _run(args: argparse.Namespace) -> int:
    from lockd import web

    secret = os.environ.get(SECRET_ENV, "")
    if len(secret.encode()) < 32:
        raise ConfigError(f"set {SECRET_ENV} to the JWT secret (at least 32 bytes)")
    print(f"lockd listening on http://{args.host}:{args.port}{args.prefix}", flush=True)
    web.run(
        host=args.host,
        port=args.port,
        db_url=_url(args),
        jwt_secret=secret,
        config=_config(args),
        prefix=args.prefix,
        reuse_port=args.reuse_port,
    )
    return 0


async def _with_manager(args: argparse.Namespace, op: str) -> Any:
    from lockd.db import make_pool
    from lockd.manager import LeaseManager

    async with make_pool(_url(args), min_size=1, max_size=1) as pool:
        manager = LeaseManager(pool, _config(args))
        if op == "sweep":
            return await manager.sweep()
        if op == "get":
            return (await manager.get(args.table, args.row_id)).raw
        return await manager.force_break(
            args.table, args.row_id, by=args.by, reason=args.reason or ""
        )


def _op(op: str) -> Any:
    def handler(args: argparse.Namespace) -> int:
        print(json.dumps(asyncio.run(_with_manager(args, op)), default=str))
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
        p.add_argument("--db-url", help=f"cloud database URL (default: {URL_ENV})")
        p.add_argument("--ttl-s", type=float, default=30.0, help="lease TTL (default 30)")
        p.add_argument("--idle-warn-s", type=float, default=600.0, help="0 = no idle policy")
        p.add_argument("--idle-close-s", type=float, default=300.0)
        p.add_argument("--sweep-interval-s", type=float, default=1.0)

    run = lk_sub.add_parser("run", help="serve lockd over HTTP (JWT secret from the env)")
    common(run)
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8470)
    run.add_argument("--prefix", default="/v1/locks")
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
