"""`scsync status`: one screen of sync health for a site (or for the whole cloud).

Site: lanes (waiting changes, lag, rows moved, last apply), outbox depth both sides,
parked rows, open conflicts, backfill progress, live leases. The figures are read from
the databases the replicator uses (its settings file), so status works while the
replicator is down, which is when it is needed most.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import psycopg

from schema import database
from schema.database import Conn, Translation, fetch_all, fetch_one
from schema.errors import EXIT_UNAVAILABLE, ConfigError, DatabaseUnavailable


def _errors(what: str) -> Translation:
    """This command's table: unreachable, or a status query refused, is exit 3."""
    return Translation(
        unavailable=lambda message: DatabaseUnavailable(
            f"cannot reach the {what} database: {message}"
        ),
        other=lambda e: DatabaseUnavailable(f"status query failed: {e.message}"),
    )


def _connect(url: str, what: str) -> AbstractAsyncContextManager[Conn]:
    return database.connect(url, _errors(what), name="scsync-status")


async def _one(conn: Conn, name: str, params: dict[str, Any]) -> Any:
    return await fetch_one(conn, name, params)


async def _leases(conn: Conn, site_id: int | None) -> dict[str, Any]:
    try:
        live, by_local, by_cloud = await _one(conn, "ops_leases_live", {"site_id": site_id})
    except psycopg.errors.InsufficientPrivilege:
        # A site's own role may not read the lease table; an operator's URL may.
        return {"error": "this database role cannot read leases (pass --cloud-url)"}
    return {"live": live, "by_local": by_local, "by_cloud": by_cloud}


async def _waiting(source: Conn, site: dict[str, int]) -> dict[str, Any]:
    """A lane's backlog at its source: changes waiting and the age of the oldest (= lag)."""
    waiting, age = await _one(source, "replicator_outbox_depth", site) or (0, None)
    return {"waiting": int(waiting), "lag_s": 0.0 if age is None else round(float(age), 1)}


async def _cloud_from_db(url: str, site: dict[str, int]) -> dict[str, Any]:
    """The site's cloud figures read with an operator's database URL (--cloud-url), in
    the shape of the cloud API's /v1/sync/status."""
    async with _connect(url, "cloud") as conn:
        depth, age = await _one(conn, "replicator_outbox_depth", site) or (0, None)
        return {
            "outbox_depth": int(depth),
            "oldest_change_age_s": None if age is None else float(age),
            "conflicts_open": int((await _one(conn, "replicator_conflicts_open", site))[0]),
            "cursors": [
                {
                    "lane": r[0],
                    "last_applied_at": None if r[3] is None else r[3].isoformat(),
                    "rows_applied": int(r[5] or 0),
                }
                for r in await fetch_all(conn, "replicator_cursors", site)
            ],
            "parked": await fetch_all(conn, "replicator_dead_letters", site),
            "leases": await _leases(conn, site["site_id"]),
        }


async def _cloud_from_api(settings: Any) -> dict[str, Any]:
    """The site's cloud figures from the cloud API (the site's only way there)."""
    import aiohttp

    from replicator.cloud_client import cloud_status
    from replicator.errors import ReplicatorError

    try:
        return await cloud_status(settings)
    except (ReplicatorError, aiohttp.ClientError) as exc:
        raise DatabaseUnavailable(f"cannot reach the cloud API: {exc}") from exc


async def site_status(settings: Any, cloud_url: str | None = None) -> dict[str, Any]:
    """Every figure of one site, as a JSON-able dict. With the cloud unreachable (a long
    outage, when status matters most) the local figures are still given, the cloud's
    are None and ``cloud_error`` says why. The cloud's figures come from the cloud API
    (``/v1/sync/status``, the site's token), or with ``cloud_url`` (an operator's
    database URL) from the cloud database."""
    from replicator.files.backfill import read_progress
    from replicator.wal import capture_status_of

    site = {"site_id": int(settings.site_id)}
    async with _connect(settings.local_db_url, "local") as local:
        cloud: dict[str, Any] | None = None
        cloud_error = None
        try:
            cloud = (
                await _cloud_from_db(cloud_url, site)
                if cloud_url
                else await _cloud_from_api(settings)
            )
        except DatabaseUnavailable as exc:
            cloud_error = str(exc)

        def from_cloud(what: Any) -> Any:
            return None if cloud is None else what(cloud)

        local_cursors = [tuple(r) for r in await fetch_all(local, "replicator_cursors", site)]
        pull_rows = [r for r in local_cursors if r[0] == "pull"]
        push_rows = from_cloud(lambda c: [r for r in c["cursors"] if r["lane"] == "push"])
        local_waiting = await _waiting(local, site)
        cloud_waiting = from_cloud(
            lambda c: {
                "waiting": int(c["outbox_depth"]),
                "lag_s": 0.0
                if c["oldest_change_age_s"] is None
                else round(float(c["oldest_change_age_s"]), 1),
            }
        ) or {"waiting": None, "lag_s": None}
        lanes = {
            "push": {
                **local_waiting,
                "rows_moved": from_cloud(lambda c: sum(int(r["rows_applied"]) for r in push_rows)),
                "last_applied_at": from_cloud(
                    lambda c: next(
                        (r["last_applied_at"] for r in push_rows if r["last_applied_at"]),
                        None,
                    )
                ),
            },
            "pull": {
                **cloud_waiting,
                "rows_moved": sum(int(r[5] or 0) for r in pull_rows),
                "last_applied_at": next(
                    (r[3].isoformat() for r in pull_rows if r[3] is not None), None
                ),
            },
        }
        figures: dict[str, Any] = {
            "site_id": site["site_id"],
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cloud_error": cloud_error,
            "lanes": lanes,
            "outbox_depth": {
                "local": lanes["push"]["waiting"],
                "cloud": lanes["pull"]["waiting"],
            },
            "parked": {
                "local": len(await fetch_all(local, "replicator_dead_letters", site)),
                "cloud": from_cloud(lambda c: len(c["parked"])),
            },
            "conflicts_open": {
                "local": int((await _one(local, "replicator_conflicts_open", site))[0]),
                "cloud": from_cloud(lambda c: int(c["conflicts_open"])),
            },
            "leases": from_cloud(lambda c: c["leases"]) or {"error": "the cloud is unreachable"},
            "capture": capture_status_of(await fetch_one(local, "capture_status")).as_dict(),
            "backfill": (await read_progress(local, site["site_id"])).as_dict(),
        }
    return figures


async def cloud_status(url: str) -> dict[str, Any]:
    """Per-site figures of the whole cloud (an operator's database URL)."""
    async with _connect(url, "cloud") as conn:
        return await _cloud_figures(conn)


async def _cloud_figures(conn: Conn) -> dict[str, Any]:
    outbox = {
        r[0]: (int(r[1]), float(r[2] or 0)) for r in await fetch_all(conn, "ops_outbox_by_site")
    }
    conflicts = {r[0]: int(r[1]) for r in await fetch_all(conn, "ops_conflicts_by_site")}
    parked = {r[0]: int(r[1]) for r in await fetch_all(conn, "ops_parked_by_site")}
    cursors: dict[int, dict[str, Any]] = {}
    for lane, sid, last, _src, rows, since in await fetch_all(conn, "ops_cursors_all"):
        cursors.setdefault(sid, {})[lane] = {
            "rows_moved": int(rows or 0),
            "last_applied_at": None if last is None else last.isoformat(),
            "since_s": None if since is None else round(float(since), 1),
        }
    sites = []
    for sid, name, node, disabled in await fetch_all(conn, "ops_sites"):
        depth, age = outbox.get(sid, (0, 0.0))
        sites.append(
            {
                "site_id": sid,
                "name": name,
                "node_id": node,
                "disabled": disabled,
                "pull_waiting": depth,
                "pull_lag_s": round(age, 1),
                "push": cursors.get(sid, {}).get("push"),
                "conflicts_open": conflicts.get(sid, 0),
                "parked": parked.get(sid, 0),
                "leases": await _leases(conn, sid),
            }
        )
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sites": sites,
        "leases": await _leases(conn, None),
    }


def _ago(iso: str | None) -> str:
    if iso is None:
        return "never"
    when = dt.datetime.fromisoformat(iso)
    secs = (dt.datetime.now(dt.UTC) - when).total_seconds()
    return f"{when:%Y-%m-%d %H:%M:%S} ({max(0, secs):.0f} s ago)"


def _n(value: Any) -> str:
    return "?" if value is None else str(value)


def _mib(n: Any) -> str:
    return f"{(n or 0) / 1048576:.1f} MiB"


def _capture_line(c: dict[str, Any]) -> str:
    if c["mode"] != "wal":
        return "capture         triggers"
    if c["slot"] is None:
        return "capture         wal: NO SLOT (the replicator makes it again and resyncs)"
    return (
        f"capture         wal: slot {c['slot']} ({'active' if c['active'] else 'idle'}), "
        f"keeps {_mib(c['retained_bytes'])} of WAL, wal_status {c['wal_status']}, "
        f"confirmed at {c['confirmed_lsn']} (cloud committed, site acked), "
        f"{_mib(c['unconfirmed_bytes'])} past it"
    )


def render_site(f: dict[str, Any]) -> str:
    bf = f["backfill"]
    le = f["leases"]
    lines = [
        f"scsync status — site {f['site_id']} — {f['at']}",
        "",
        f"{'lane':<6} {'waiting':>8} {'lag':>9} {'rows moved':>11}  last applied",
    ]
    if f.get("cloud_error"):
        lines.insert(1, f"CLOUD UNREACHABLE: {f['cloud_error']} (cloud figures: ?)")
    for name, lane in f["lanes"].items():
        lag = "?" if lane["lag_s"] is None else f"{lane['lag_s']:.1f}"
        lines.append(
            f"{name:<6} {_n(lane['waiting']):>8} {lag:>7} s {_n(lane['rows_moved']):>11}  "
            + ("?" if lane["rows_moved"] is None else _ago(lane["last_applied_at"]))
        )
    eta = bf.get("eta_s")
    lines += [
        "",
        f"outbox depth    local {_n(f['outbox_depth']['local'])}  "
        f"cloud {_n(f['outbox_depth']['cloud'])}",
        f"parked rows     local {_n(f['parked']['local'])}  cloud {_n(f['parked']['cloud'])}",
        f"conflicts open  local {_n(f['conflicts_open']['local'])}  "
        f"cloud {_n(f['conflicts_open']['cloud'])}",
        f"backfill        {bf['state']}: rows {bf['rows_done']}/{bf['rows_total']}, "
        f"{_mib(bf['bytes_done'])}/{_mib(bf['bytes_total'])}, "
        f"{bf['rows_per_s']} rows/s, ETA {'-' if eta is None else f'{eta:.0f} s'}",
        "leases live     "
        + (
            le["error"]
            if "error" in le
            else f"{le['live']} (editing by local {le['by_local']}, by cloud {le['by_cloud']})"
        ),
        _capture_line(f["capture"]),
    ]
    return "\n".join(lines)


def render_cloud(f: dict[str, Any]) -> str:
    le = f["leases"]
    lines = [
        f"scsync status — cloud — {f['at']}",
        f"leases live {le.get('live')} (editing by local {le.get('by_local')}, "
        f"by cloud {le.get('by_cloud')})",
        "",
        f"{'site':<4} {'name':<18} {'pull waiting':>12} {'lag':>8} {'pushed rows':>11} "
        f"{'conflicts':>9} {'parked':>6} {'leases':>6}  last push",
    ]
    for s in f["sites"]:
        push = s["push"] or {}
        lines.append(
            f"{s['site_id']:<4} {s['name'][:18]:<18} {s['pull_waiting']:>12} "
            f"{s['pull_lag_s']:>6.1f} s {push.get('rows_moved', 0):>11} "
            f"{s['conflicts_open']:>9} {s['parked']:>6} {s['leases'].get('live', '-'):>6}  "
            f"{_ago(push.get('last_applied_at'))}"
        )
    return "\n".join(lines)


async def _status(args: argparse.Namespace) -> int:
    if args.side == "cloud":
        url = args.url or os.environ.get("SCSYNC_CLOUD_DB_URL")
        if not url:
            raise ConfigError("no cloud database URL: pass --url or set SCSYNC_CLOUD_DB_URL")
        figures = await cloud_status(url)
        print(json.dumps(figures, indent=2) if args.json else render_cloud(figures))
        return 0
    from replicator.settings import load_settings

    settings = load_settings(Path(args.config) if args.config else None)
    figures = await site_status(settings, args.cloud_url)
    print(json.dumps(figures, indent=2) if args.json else render_site(figures))
    # The figures are printed either way; the exit code tells a script the cloud is down.
    return EXIT_UNAVAILABLE if figures["cloud_error"] else 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="one screen: lanes, lag, outbox depth, parked rows, conflicts, backfill, leases",
        epilog="examples:\n"
        "  scsync status --config /etc/scsync/local.toml\n"
        "  scsync status --config local.toml --json\n"
        "  scsync status --side cloud --url postgresql://scsync@cloud-db/scsync_cloud",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--side", choices=("local", "cloud"), default="local")
    p.add_argument("--config", help="the site's config file ([replicator] settings)")
    p.add_argument(
        "--cloud-url",
        help="site: read the cloud database with an operator's URL instead of asking the "
        "cloud API with the site's token",
    )
    p.add_argument("--url", help="cloud: an operator's cloud database URL")
    p.add_argument("--json", action="store_true", help="the figures as JSON")
    p.set_defaults(handler=_status)
