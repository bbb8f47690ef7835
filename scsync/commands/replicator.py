"""`scsync replicator run|status`, `scsync conflicts list|show|resolve`,
`scsync site register`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from schema import database
from schema.database import SCHEMA, fetch_all, fetch_one, fetch_value
from schema.errors import ConfigError, DatabaseUnavailable
from scsync.commands import file_lanes

# The cloud database of the site commands, unreachable: one line, exit 3.
CLOUD = SCHEMA.extend(
    {},
    unavailable=lambda message: DatabaseUnavailable(f"cannot reach the cloud database: {message}"),
)

URL_ENV = {"local": "SCSYNC_LOCAL_DB_URL", "cloud": "SCSYNC_CLOUD_DB_URL"}


def _settings(args: argparse.Namespace) -> Any:
    from replicator.settings import load_settings

    return load_settings(Path(args.config) if args.config else None)


def run_daemon(args: argparse.Namespace, files_required: bool = False) -> int:
    """The site's daemon, row lanes plus the file lanes when their settings are given;
    `replicator run` and its alias `files run` (``files_required``) both start it here."""
    from replicator import daemon
    from schema.config import warn_if_readable

    warn_if_readable(args.config, "files" if files_required else "replicator")
    settings = _settings(args)
    files = file_lanes.from_args(args, required=files_required, site_token=settings.site_token)
    return daemon.run(settings, files)


async def _status(args: argparse.Namespace) -> int:
    """The site's figures: the local database's directly, the cloud's through the cloud
    API (the site has no other way there)."""
    import aiohttp

    from replicator.cloud_client import cloud_status
    from replicator.errors import ReplicatorError

    settings = _settings(args)
    site = {"site_id": settings.site_id}
    out: dict[str, Any] = {"site_id": settings.site_id}
    try:
        async with database.connect(settings.local_db_url, SCHEMA) as conn:
            depth, age = await fetch_one(conn, "replicator_outbox_depth", site) or (0, None)
            open_conflicts = await fetch_value(conn, "replicator_conflicts_open", site) or 0
            cursors = await fetch_all(conn, "replicator_cursors", site)
            parked = await fetch_all(conn, "replicator_dead_letters", site)
        out["local"] = {
            "outbox_depth": depth,
            "oldest_change_age_s": None if age is None else round(float(age), 1),
            "conflicts_open": open_conflicts,
            "applied_here": [
                {
                    "lane": c[0],
                    "last_applied_at": str(c[3]),
                    "last_source_commit_at": str(c[4]),
                    "rows_applied": c[5],
                    "peer_schema_revision": c[6],
                }
                for c in cursors
            ],
            "parked": [
                {
                    "lane": p[0],
                    "table": p[1],
                    "row_id": p[2],
                    "reason": p[4],
                    "attempts": p[5],
                    "next_retry_at": str(p[7]),
                }
                for p in parked
            ],
        }
    except DatabaseUnavailable as exc:
        out["local"] = {"error": str(exc).strip().splitlines()[0]}
    try:
        cloud = await cloud_status(settings)
        age = cloud["oldest_change_age_s"]
        out["cloud"] = {
            "outbox_depth": cloud["outbox_depth"],
            "oldest_change_age_s": None if age is None else round(float(age), 1),
            "conflicts_open": cloud["conflicts_open"],
            "applied_here": cloud["cursors"],
            "parked": cloud["parked"],
        }
    except (ReplicatorError, aiohttp.ClientError, KeyError) as exc:
        out["cloud"] = {"error": str(exc)}
    print(json.dumps(out, indent=2))
    return 0


def _db_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url)
    env = URL_ENV[args.side]
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"no database URL: pass --url or set {env}")
    return value


async def _conflicts_list(args: argparse.Namespace) -> int:
    from schema import conflicts

    async with database.connect(_db_url(args), SCHEMA) as conn:
        found = await conflicts.list_conflicts(
            conn, site_id=args.site_id, status=None if args.all else "open"
        )
    if not found:
        print("no conflicts")
    for c in found:
        print(
            f"{c.id}  {c.table_name}/{c.row_id}  site {c.site_id}  {c.status}"
            f"  local r{c.local_revision} / cloud r{c.cloud_revision}"
            f"  detected {c.detected_at:%Y-%m-%d %H:%M:%S} on {c.detected_on}"
            + (f"  kept {c.resolution} by {c.resolved_by}" if c.resolution else "")
        )
    return 0


async def _conflicts_show(args: argparse.Namespace) -> int:
    from schema import conflicts

    async with database.connect(_db_url(args), SCHEMA) as conn:
        c = await conflicts.get_conflict(conn, args.id)
    print(
        json.dumps(
            {
                "id": c.id,
                "record": f"{c.table_name}/{c.row_id}",
                "site_id": c.site_id,
                "status": c.status,
                "base_revision": c.base_revision,
                "local": {"revision": c.local_revision, "row": c.local_row},
                "cloud": {"revision": c.cloud_revision, "row": c.cloud_row},
                "resolution": c.resolution,
                "resolved_by": c.resolved_by,
            },
            indent=2,
            default=str,
        )
    )
    return 0


async def _conflicts_resolve(args: argparse.Namespace) -> int:
    from schema import conflicts

    async with database.connect(_db_url(args), SCHEMA) as conn:
        revision = await conflicts.resolve_conflict(conn, args.id, keep=args.keep, by=args.by)
    print(
        f"conflict {args.id} resolved on the {args.side} side keeping the {args.keep} version"
        + (f" (new revision {revision})" if revision else "")
        + "; the replicator brings the other side along"
    )
    return 0


async def _site_register(args: argparse.Namespace) -> int:
    from replicator.sites import register_site

    url = args.url or os.environ.get(URL_ENV["cloud"])
    if not url:
        raise ConfigError(f"no cloud database URL: pass --url or set {URL_ENV['cloud']}")
    async with database.connect(url, CLOUD) as conn:
        creds = await register_site(conn, args.name, args.node_id)
    print(
        f"# site {creds.name!r} registered: site id {creds.site_id}, node id {creds.node_id}"
        " (no database role: the site reaches the cloud only through the cloud API)"
    )
    print(
        "# on the site: scsync db set-node --side local "
        f"--node-id {creds.node_id} --site-id {creds.site_id}"
    )
    print("# [replicator] settings of the site (TOML):")
    print(f"site_id = {creds.site_id}")
    if args.api_url:
        print(f"cloud_api_url = {json.dumps(args.api_url.rstrip('/'))}")
    for line in site_token_steps(creds.site_id, args.api_url):
        print(f"# {line}")
    return 0


def site_token_steps(site_id: int, api_url: str | None) -> list[str]:
    """How a registered site gets its token: nothing here issues one (it is a JWT signed
    with the cloud API's secret, which this command does not hold)."""
    where = f"{api_url.rstrip('/')}/v1/sites/{site_id}/token" if api_url else None
    steps = [
        "The site's token (site_token in [replicator], lockd_token in [api] of its config)",
        "comes from the cloud API, not from this command: a vendor admin signs in",
        "(POST /v1/auth/token)",
        f"and asks for it with POST /v1/sites/{site_id}/token on the cloud API"
        + (":" if where else " (--api-url prints the whole command)."),
    ]
    if where:
        steps.append(f'  curl -sS -X POST -H "Authorization: Bearer $VENDOR_ADMIN_TOKEN" {where}')
    steps += [
        "The answer's \"token\" goes into the site's config; it lasts 30 days unless the",
        'request body says {"ttl_s": N} (60 s to 366 days): ask for a new one before then.',
    ]
    return steps


async def _site_list(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get(URL_ENV["cloud"])
    if not url:
        raise ConfigError(f"no cloud database URL: pass --url or set {URL_ENV['cloud']}")
    async with database.connect(url, CLOUD) as conn:
        sites = await fetch_all(conn, "ops_sites")
    if not sites:
        print("no sites")
    for site_id, name, node_id, disabled in sites:
        print(f"{site_id:>5}  {name:<24} node {node_id:<5}" + ("  disabled" if disabled else ""))
    return 0


async def _site_disable(args: argparse.Namespace, disabled: bool = True) -> int:
    """Disable (or enable) a site: its site tokens are refused from now on by the cloud
    API, lockd and the blob endpoints (within their revocation_check_s); enabling it
    again needs a new site token."""
    url = args.url or os.environ.get(URL_ENV["cloud"])
    if not url:
        raise ConfigError(f"no cloud database URL: pass --url or set {URL_ENV['cloud']}")
    async with database.connect(url, CLOUD) as conn:
        row = await fetch_one(
            conn, "auth_site_disable", {"site_id": args.site_id, "disabled": disabled}
        )
    if row is None:
        raise ConfigError(f"no site {args.site_id}")
    word = "disabled: its tokens are refused" if disabled else "enabled: issue it a new token"
    print(f"site {args.site_id} {word} (token version {row[0]})")
    return 0


async def _site_enable(args: argparse.Namespace) -> int:
    return await _site_disable(args, disabled=False)


def register(sub: Any) -> None:
    """Add `replicator`, `conflicts` and `site` to the top-level sub-parsers."""
    rep = sub.add_parser(
        "replicator",
        help="the per-site sync daemon: run, status",
        epilog="settings: a TOML file (--config: [replicator] and [files]) and SCSYNC_*\n"
        "environment variables, e.g. SCSYNC_LOCAL_DB_URL, SCSYNC_CLOUD_API_URL,\n"
        "SCSYNC_SITE_TOKEN, SCSYNC_SITE_ID, SCSYNC_BATCH_SIZE; the file lanes run when\n"
        "blobs_url and store are given (SCSYNC_BLOBS_URL, SCSYNC_FILE_STORE or flags);\n"
        "their token is the site's own unless --token or token in [files] says otherwise",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rep_sub = rep.add_subparsers(dest="replicator_command", required=True)
    run = rep_sub.add_parser(
        "run",
        help="run push and pull until SIGTERM, with the file lanes (blob uploads before "
        "push, downloads after pull, on-demand requests) when blobs_url and store are "
        "given (the token: the site's own unless --token)",
    )
    run.add_argument("--config", help="the site's config file: [replicator] and [files]")
    file_lanes.add_arguments(run)
    run.set_defaults(handler=run_daemon)
    st = rep_sub.add_parser("status", help="outbox depth, lag, parked records, conflicts")
    st.add_argument("--config", help="TOML settings file")
    st.set_defaults(handler=_status)

    con = sub.add_parser("conflicts", help="records both sides changed: list, show, resolve")
    con_sub = con.add_subparsers(dest="conflicts_command", required=True)

    def side_and_url(p: argparse.ArgumentParser) -> None:
        p.add_argument("--side", default="local", choices=("local", "cloud"))
        p.add_argument(
            "--url", help="database URL (default: SCSYNC_LOCAL_DB_URL / SCSYNC_CLOUD_DB_URL)"
        )

    ls = con_sub.add_parser("list", help="open conflicts (--all: resolved ones too)")
    side_and_url(ls)
    ls.add_argument("--site-id", type=int, help="one site's only (default: every site)")
    ls.add_argument("--all", action="store_true")
    ls.set_defaults(handler=_conflicts_list)
    show = con_sub.add_parser("show", help="both versions of one conflict")
    side_and_url(show)
    show.add_argument("id", type=int)
    show.set_defaults(handler=_conflicts_show)
    res = con_sub.add_parser("resolve", help="keep one version; both sides converge on it")
    side_and_url(res)
    res.add_argument("id", type=int)
    res.add_argument("--keep", required=True, choices=("local", "cloud"))
    res.add_argument(
        "--by",
        default=os.environ.get("USER", "cli"),
        help="who resolves (default: $USER, else cli)",
    )
    res.set_defaults(handler=_conflicts_resolve)

    site = sub.add_parser(
        "site", help="cloud side: register a site, list the sites, disable or enable one"
    )
    site_sub = site.add_subparsers(dest="site_command", required=True)
    reg = site_sub.add_parser(
        "register", help="create a site and its node id; prints the site's settings"
    )
    reg.add_argument("name")
    reg.add_argument("--url", help="cloud database admin URL (default: SCSYNC_CLOUD_DB_URL)")
    reg.add_argument("--node-id", type=int, help="default: the next free one")
    reg.add_argument(
        "--api-url",
        help="the cloud API's base URL as the site reaches it (printed as cloud_api_url, "
        "with the exact token request)",
    )
    reg.set_defaults(handler=_site_register)
    ls_sites = site_sub.add_parser("list", help="the registered sites and their node ids")
    ls_sites.add_argument("--url", help="cloud database URL (default: SCSYNC_CLOUD_DB_URL)")
    ls_sites.set_defaults(handler=_site_list)
    for name, handler, text in (
        ("disable", _site_disable, "disable a site: its site tokens are refused"),
        ("enable", _site_enable, "enable a disabled site again (it needs a new token)"),
    ):
        sp = site_sub.add_parser(name, help=text)
        sp.add_argument("site_id", type=int)
        sp.add_argument("--url", help="cloud database admin URL (default: SCSYNC_CLOUD_DB_URL)")
        sp.set_defaults(handler=handler)
