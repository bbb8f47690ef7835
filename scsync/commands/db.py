"""`scsync db ...`: schema upgrade/downgrade/current/check and the node id."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from schema import migrate
from schema.errors import ConfigError

URL_ENV = {"local": "SCSYNC_LOCAL_DB_URL", "cloud": "SCSYNC_CLOUD_DB_URL"}


def db_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    env = URL_ENV.get(args.side, "")
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"no database URL: pass --url or set {env}")
    return value


def _db_upgrade(args: argparse.Namespace) -> int:
    migrate.check_side(args.side)
    url = db_url(args)
    migrate.upgrade(url, args.side, args.revision)
    print(f"{args.side} database upgraded to {migrate.current_revision(url, args.side)}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    migrate.check_side(args.side)
    migrate.downgrade(db_url(args), args.side, args.revision)
    print(f"{args.side} database downgraded to {args.revision}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    migrate.check_side(args.side)
    url = db_url(args)
    current = migrate.current_revision(url, args.side)
    head = migrate.head_revision(args.side)
    print(f"{args.side}: at {current or 'nothing (empty database)'}, head is {head}")
    return 0


def _db_check(args: argparse.Namespace) -> int:
    migrate.check_side(args.side)
    migrate.check(db_url(args), args.side)
    print(f"{args.side} database is at head and matches the declared schema")
    return 0


def _db_dump_schema(args: argparse.Namespace) -> int:
    from schema import dump

    side = migrate.check_side(args.side)
    text = dump.dump_url(db_url(args), dump.side_title(side))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


async def _db_set_node(args: argparse.Namespace) -> int:
    from schema import database, db

    side = migrate.check_side(args.side)
    async with database.connect(db_url(args), database.SCHEMA) as conn:
        node = await db.set_node(conn, args.node_id, side, args.site_id)
    print(
        f"{side} database is node {node.node_id}"
        + (f" of site {node.site_id}" if node.site_id else "")
    )
    return 0


def register(sub: Any) -> None:
    """Add `db` to the top-level sub-parsers (argparse gives them no public type)."""
    db = sub.add_parser(
        "db",
        help="database schema: upgrade, downgrade, current, check, dump-schema, set-node",
        epilog="examples:\n"
        "  scsync db upgrade --side local --url postgresql://scsync@127.0.0.1/scsync\n"
        "  SCSYNC_CLOUD_DB_URL=postgresql://... scsync db check --side cloud\n"
        "  scsync db dump-schema --side local --url postgresql://scsync@127.0.0.1/scsync"
        " > local.sql  # compare with schema/sql/current_local.sql",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    db_sub = db.add_subparsers(dest="db_command", required=True)

    def side_and_url(p: argparse.ArgumentParser) -> None:
        p.add_argument("--side", required=True, help="local or cloud")
        p.add_argument(
            "--url", help="database URL (default: SCSYNC_LOCAL_DB_URL / SCSYNC_CLOUD_DB_URL)"
        )

    up = db_sub.add_parser("upgrade", help="apply migrations (default: to head)")
    side_and_url(up)
    up.add_argument("--revision", default="head", help="the revision to reach")
    up.set_defaults(handler=_db_upgrade)

    down = db_sub.add_parser("downgrade", help="revert migrations (default: to base = empty)")
    side_and_url(down)
    down.add_argument(
        "--revision",
        default="base",
        help="the revision to go back to: an id, -1 for one step, base for an empty database",
    )
    down.set_defaults(handler=_db_downgrade)

    cur = db_sub.add_parser("current", help="show the database's revision and the head")
    side_and_url(cur)
    cur.set_defaults(handler=_db_current)

    chk = db_sub.add_parser("check", help="fail unless at head and equal to the declared schema")
    side_and_url(chk)
    chk.set_defaults(handler=_db_check)

    dump = db_sub.add_parser(
        "dump-schema",
        help="print the database's schema as schema/sql/current_<side>.sql shows it",
        description="A normalised dump of the database's schema read from its catalogs "
        "(schema/dump.py); `python -m schema.dump` regenerates the checked-in files.",
    )
    side_and_url(dump)
    dump.add_argument("--output", help="write to this file (default: standard output)")
    dump.set_defaults(handler=_db_dump_schema)

    node = db_sub.add_parser("set-node", help="set this database's Snowflake node id")
    side_and_url(node)
    node.add_argument("--node-id", type=int, required=True, help="0..4095, unique per database")
    node.add_argument("--site-id", type=int, help="the site this local database belongs to")
    node.set_defaults(handler=_db_set_node)
