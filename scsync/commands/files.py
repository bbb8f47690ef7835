"""`scsync policy|sync|restore|backfill ...`: the site's file scope and its backfill.

The local database and the cloud's blob API come from flags, the environment or the
site's config file: ``SCSYNC_LOCAL_DB_URL``, ``SCSYNC_BLOBS_URL`` (the cloud API's
``.../v1/blobs``) and ``SCSYNC_SITE_TOKEN`` (this site's JWT). The cloud itself is
reached as the replicator reaches it, through the cloud API with the site's token: its
settings (``cloud_api_url``, ``site_token``, ``site_id``, ``ca_file``) are the
replicator's (replicator/settings.py). A site holds no cloud database URL: a leftover
``--cloud-url`` / ``SCSYNC_CLOUD_DB_URL`` / ``[backfill] cloud_db_url`` is an error
naming what replaced it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from schema.database import DbError, Translation
from schema.errors import ConfigError, DatabaseUnavailable
from scsync.commands import file_lanes
from scsync.commands.replicator import run_daemon

ENV = {
    "local_url": "SCSYNC_LOCAL_DB_URL",
    "cloud_api_url": "SCSYNC_CLOUD_API_URL",
    "blobs_url": file_lanes.ENV["blobs_url"],
    "token": file_lanes.ENV["token"],
}


# The same values in the site's config file (scsync init): section and key.
CONFIG_KEYS = {
    "local_url": ("replicator", "local_db_url"),
    "cloud_api_url": ("replicator", "cloud_api_url"),
    "blobs_url": ("files", "blobs_url"),
    "token": ("files", "token"),
}

CLOUD_DB_URL_ENV = "SCSYNC_CLOUD_DB_URL"


def _database_error(e: DbError) -> Exception:
    from replicator.files.errors import FilesError

    return FilesError(f"database error: {e.message}")


# The file commands' table of driver errors (schema.database): unreachable is exit 3.
ERRORS = Translation(
    unavailable=lambda message: DatabaseUnavailable(f"database unreachable: {message}"),
    other=_database_error,
)
CLOUD_DB_URL_GONE = (
    "a site command takes no cloud database URL any more: a site reaches the cloud only "
    "through the cloud API. Remove {what} and give cloud_api_url (the cloud API's https:// "
    "URL; --cloud-api-url, SCSYNC_CLOUD_API_URL or [replicator] of --config) and site_token "
    "(this site's token from POST /v1/sites/{{id}}/token; --token, SCSYNC_SITE_TOKEN or "
    "[replicator] of --config)"
)


def _from_config(args: argparse.Namespace, name: str) -> str | None:
    config = getattr(args, "config", None)
    if not config:
        return None
    from schema.config import read_config_file

    section, key = CONFIG_KEYS[name]
    value = read_config_file(config, section).get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"setting {key!r} of [{section}] in {config} must be a string")
    return value


def _opt(args: argparse.Namespace, name: str, required: bool = True) -> str | None:
    """A flag, else its environment variable, else the --config file."""
    value = getattr(args, name, None) or os.environ.get(ENV[name]) or _from_config(args, name)
    if required and not value:
        flag = "--" + name.replace("_", "-")
        section, key = CONFIG_KEYS[name]
        raise ConfigError(f"missing {flag} (or {ENV[name]}, or {key} in [{section}] of --config)")
    return value


def _need(args: argparse.Namespace, name: str) -> str:
    value = _opt(args, name)
    assert value is not None
    return value


def _no_cloud_db_url(args: argparse.Namespace) -> None:
    """A leftover cloud database URL of the commands before the cloud API: refused,
    naming what replaced it (never silently ignored: the operator meant the cloud)."""
    what = None
    if getattr(args, "cloud_url", None):
        what = "--cloud-url"
    elif not hasattr(args, "cloud_api_url"):
        return  # a command that never reached the cloud (policy show, backfill status)
    elif os.environ.get(CLOUD_DB_URL_ENV):
        what = f"{CLOUD_DB_URL_ENV} from the environment"
    elif getattr(args, "config", None):
        from schema.config import read_config_file

        if "cloud_db_url" in read_config_file(args.config, "backfill"):
            what = f"cloud_db_url from [backfill] of {args.config}"
    if what is not None:
        raise ConfigError(CLOUD_DB_URL_GONE.format(what=what))


def _has_cloud_api(args: argparse.Namespace) -> bool:
    """Whether the cloud API is configured (the commands that may also run locally only
    then change the cloud copies at once)."""
    return bool(_opt(args, "cloud_api_url", required=False))


async def _site_settings(args: argparse.Namespace, local_url: str) -> Any:
    """The replicator's settings of this site (its config file's [replicator] table and
    SCSYNC_* variables, the flags winning), checked against the local database's site."""
    from replicator.settings import load_settings

    overrides: dict[str, Any] = {"local_db_url": local_url}
    if getattr(args, "cloud_api_url", None):
        overrides["cloud_api_url"] = args.cloud_api_url
    if getattr(args, "token", None):
        overrides["site_token"] = args.token
    config = getattr(args, "config", None)
    settings = load_settings(Path(config) if config else None, **overrides)
    site_id = await _site_id(local_url)
    if settings.site_id != site_id:
        raise ConfigError(
            f"site_id {settings.site_id} of the settings is not the local database's site "
            f"{site_id} (scsync db set-node); the cloud takes the site from the token"
        )
    return settings


async def _site_id(local_url: str) -> int:
    from schema import db

    async with _local(local_url) as conn:
        node = await db.get_node(conn)
    if node is None or node.site_id is None:
        raise ConfigError("the local database has no site id (scsync db set-node)")
    return node.site_id


@asynccontextmanager
async def _transfer(args: argparse.Namespace, site_id: int) -> AsyncIterator[Any]:
    """A Transfer bound to the cloud's blob API, journaling into the local DB."""
    import aiohttp

    from replicator.files.localdb import make_pool
    from replicator.files.transfer import BlobApi, DbJournal, Transfer, TransferConfig

    concurrency = getattr(args, "concurrency", 4)
    pool = make_pool(_need(args, "local_url"), max_size=concurrency + 1)
    await pool.open(wait=False)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            api = BlobApi(session, _need(args, "blobs_url"), _need(args, "token"), site_id)
            yield Transfer(api, DbJournal(pool), TransferConfig(concurrency=concurrency))
    finally:
        await pool.close()


def _local(url: str) -> AbstractAsyncContextManager[Any]:
    """One connection to the local database for a command (schema.database)."""
    from replicator.files.localdb import APP_NAME
    from schema import database

    return database.connect(url, ERRORS, name=APP_NAME)


# -- policy -----------------------------------------------------------------------------------


def _parse_ref(text: str) -> tuple[str, int]:
    table, _, rid = text.partition(":")
    if not rid.isdigit():
        raise ConfigError(f"a record is TABLE:ID, not {text!r}")
    return table, int(rid)


async def _policy_show(args: argparse.Namespace) -> int:
    from replicator.files import policy

    async with _local(_need(args, "local_url")) as conn:
        p = await policy.get_policy(conn)
    print(json.dumps(p.describe(), indent=2))
    return 0


async def _policy_set(args: argparse.Namespace) -> int:
    from replicator.files import policy
    from schema.scope_policy import ScopePolicy

    local_url = _need(args, "local_url")
    # Checked first: the cloud's settings wrong or missing changes nothing locally.
    apply = _has_cloud_api(args) and not args.no_apply
    settings = await _site_settings(args, local_url) if apply else None
    async with _local(local_url) as conn, conn.transaction():
        current = await policy.get_policy(conn)
        new = ScopePolicy(
            mode=args.mode or current.mode,
            tables=_split(args.tables, current.tables),
            modalities=_split(args.modalities, current.modalities),
            since_date=(
                None
                if args.since == "none"
                else dt.date.fromisoformat(args.since)
                if args.since
                else current.since_date
            ),
            last_days=(
                None
                if args.last_days == 0
                else args.last_days
                if args.last_days is not None
                else current.last_days
            ),
            old_data=args.old_data or current.old_data,
        )
        await policy.set_policy(conn, new)
        for ref in args.select or ():
            table, rid = _parse_ref(ref)
            await policy.select(conn, table, [rid])
        for ref in args.unselect or ():
            table, rid = _parse_ref(ref)
            await policy.unselect(conn, table, [rid])
    print(json.dumps(new.describe(), indent=2))
    if settings is not None:
        report = await _apply_old_data(args, local_url, settings)
        print(
            f"old data ({report.option}): {len(report.records)} cloud record(s) changed, "
            f"{len(report.blobs_deleted)} blob(s) deleted"
        )
    return 0


def _split(value: str | None, current: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return current
    return tuple(v.strip() for v in value.split(",") if v.strip())


async def _apply_old_data(args: argparse.Namespace, local_url: str, settings: Any) -> Any:
    from replicator.files import policy
    from replicator.files.cloud import FilesCloud
    from replicator.files.errors import ApiRefused

    async with _local(local_url) as lconn, FilesCloud(settings) as cloud:
        if not _opt(args, "blobs_url", required=False):
            return await policy.apply_old_data(lconn, cloud, settings.site_id)
        async with _transfer(args, settings.site_id) as transfer:

            async def delete_blob(sha: str) -> bool:
                try:
                    await transfer.api.delete(sha)
                except ApiRefused as exc:
                    if exc.status == 409:
                        return False
                    raise
                return True

            return await policy.apply_old_data(lconn, cloud, settings.site_id, delete_blob)


# -- per-record switch and restore ----------------------------------------------------------


def _sync_switch(enabled: bool) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def handler(args: argparse.Namespace) -> int:
        from replicator.files import policy
        from replicator.files.cloud import FilesCloud

        local_url = _need(args, "local_url")
        # Checked first: nothing changes locally when the cloud part cannot run.
        settings = await _site_settings(args, local_url) if _has_cloud_api(args) else None
        async with _local(local_url) as conn:
            await policy.set_sync_enabled(conn, args.table, args.id, enabled)
        word = "enabled" if enabled else "disabled"
        print(f"sync {word} for {args.table} {args.id}")
        if settings is not None:
            async with FilesCloud(settings) as cloud:
                found = await policy.mark_cloud_copy(cloud, args.table, args.id, enabled)
            state = "active" if enabled else "deleted"
            print(f"cloud copy marked {state}" if found else "no cloud copy yet")
        return 0

    return handler


async def _restore(args: argparse.Namespace) -> int:
    from replicator.files import policy
    from replicator.files.cloud import FilesCloud

    local_url = _need(args, "local_url")
    settings = await _site_settings(args, local_url)
    async with _local(local_url) as lconn, FilesCloud(settings) as cloud:
        await policy.restore(lconn, cloud, args.table, args.id, settings.site_id)
    print(f"{args.table} {args.id} restored: active on the cloud, pinned in scope")
    return 0


# -- backfill ---------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _fmt_eta(eta: float | None) -> str:
    if eta is None:
        return "--:--"
    eta = int(eta)
    return f"{eta // 3600}:{eta % 3600 // 60:02d}:{eta % 60:02d}"


def _describe(p: Any) -> str:
    return (
        f"rows {p.rows_done:,}/{p.rows_total:,}  bytes {_fmt_bytes(p.bytes_done)}/"
        f"{_fmt_bytes(p.bytes_total)}  {p.rows_per_s:,.0f} rows/s  "
        f"{_fmt_bytes(p.bytes_per_s)}/s  ETA {_fmt_eta(p.eta_s)}"
    )


async def _backfill_start(args: argparse.Namespace) -> int:
    from replicator.files.backfill import Backfill, BackfillConfig, Progress
    from replicator.files.cloud import FilesCloud

    local_url = _need(args, "local_url")
    settings = await _site_settings(args, local_url)
    site_id = settings.site_id
    config = BackfillConfig(
        batch_rows=args.batch_rows,
        file_batch_rows=args.file_batch_rows,
        batches_in_flight=args.batches_in_flight,
        rows_per_s=args.rows_per_s,
        bytes_per_s=args.bytes_per_s,
        metrics_path=Path(args.metrics_file) if args.metrics_file else None,
    )
    bar = None if args.no_progress or not sys.stderr.isatty() else _RichBar()

    def on_progress(p: Progress) -> None:
        if bar is not None:
            bar.update(p)
        elif args.log_progress:
            print(json.dumps(p.as_dict()), flush=True)

    async def run(transfer: Any) -> Progress:
        from replicator.files.localdb import LocalDb
        from replicator.files.service import outbox_gate

        cloud = FilesCloud(settings)
        try:
            async with LocalDb.opened(local_url, max_size=1) as gate_db:
                lane = Backfill(
                    local_url,
                    cloud,
                    site_id,
                    transfer=transfer,
                    config=config,
                    on_progress=on_progress,
                    live_gate=None if args.no_yield_to_live else outbox_gate(gate_db, site_id),
                )
                return await lane.run()
        finally:
            await cloud.close()

    try:
        if _opt(args, "blobs_url", required=False):
            async with _transfer(args, site_id) as transfer:
                result = await run(transfer)
        else:
            result = await run(None)
    finally:
        if bar is not None:
            bar.close()
    print(f"backfill {result.state}: {_describe(result)}")
    print(json.dumps(result.as_dict()))
    return 0


class _RichBar:
    """rich's progress bar with the backfill's own figures (rows, bytes, rate, ETA)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn

        self.progress = Progress(
            TextColumn("[bold]backfill[/] {task.fields[table]}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("backfill", total=1, table="", detail="")

    def update(self, p: Any) -> None:
        self.progress.update(
            self.task,
            total=max(1, p.rows_total),
            completed=p.rows_done,
            table=p.table or "",
            detail=_describe(p),
        )

    def close(self) -> None:
        self.progress.stop()


async def _backfill_status(args: argparse.Namespace) -> int:
    from replicator.files.backfill import read_progress

    local_url = _need(args, "local_url")
    site_id = await _site_id(local_url)
    async with _local(local_url) as conn:
        p = await read_progress(conn, site_id)
    if args.json:
        print(json.dumps(p.as_dict()))
    elif args.metrics:
        print(p.metrics_text(), end="")
    else:
        print(f"backfill {p.state}: {_describe(p)}")
    return 0


async def _backfill_pause(args: argparse.Namespace) -> int:
    from replicator.files.backfill import set_state

    async with _local(_need(args, "local_url")) as conn:
        await set_state(conn, "paused")
    print("backfill paused (the running lane stops after its current batch)")
    return 0


# -- the replicator with its file lanes -------------------------------------------------------


def _files_run(args: argparse.Namespace) -> int:
    # The alias of `scsync replicator run` for sites that must not run without files.
    return run_daemon(args, files_required=True)


# -- registration -----------------------------------------------------------------------------


Handler = Callable[[argparse.Namespace], int]
AsyncHandler = Callable[[argparse.Namespace], Awaitable[int]]


def _guarded(handler: Handler | AsyncHandler) -> Callable[[argparse.Namespace], Any]:
    """Database errors become the CLI's one-line errors (:data:`ERRORS`: exit 3 when
    unreachable); a leftover cloud database URL is refused before anything runs."""
    if inspect.iscoroutinefunction(handler):

        async def run_async(args: argparse.Namespace) -> int:
            _no_cloud_db_url(args)
            with ERRORS.errors():
                return int(await handler(args))

        return run_async

    def run(args: argparse.Namespace) -> int:
        _no_cloud_db_url(args)
        with ERRORS.errors():
            return int(handler(args))  # type: ignore[arg-type]

    return run


def _common(p: argparse.ArgumentParser, cloud: bool = True, blobs: bool = False) -> None:
    p.add_argument(
        "--config", help="the site's config file: URLs and token when not given otherwise"
    )
    p.add_argument("--local-url", help="local database URL (default: SCSYNC_LOCAL_DB_URL)")
    if cloud:
        p.add_argument(
            "--cloud-api-url",
            help="the cloud API (default: SCSYNC_CLOUD_API_URL, or cloud_api_url in "
            "[replicator] of --config)",
        )
        p.add_argument(
            "--token",
            help="this site's token (default: SCSYNC_SITE_TOKEN, or site_token in [replicator])",
        )
    # Refused with a message naming its replacement (_no_cloud_db_url).
    p.add_argument("--cloud-url", help=argparse.SUPPRESS)
    if blobs:
        p.add_argument("--blobs-url", help="the cloud's blob API (default: SCSYNC_BLOBS_URL)")


def register(sub: Any) -> None:
    pol = sub.add_parser("policy", help="the site's file sync scope: show, set")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    show = pol_sub.add_parser("show", help="print the current scope policy")
    _common(show, cloud=False)
    show.set_defaults(handler=_guarded(_policy_show))
    st = pol_sub.add_parser(
        "set",
        help="change the scope (only the options given change)",
        epilog="examples:\n"
        "  scsync policy set --mode all\n"
        "  scsync policy set --mode selective --tables images --modalities CT,CBCT "
        "--last-days 365 --old-data backup\n"
        "  scsync policy set --select images:123 --unselect captures:456",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(st, blobs=True)
    st.add_argument("--mode", choices=["all", "selective"])
    st.add_argument("--tables", help="comma-separated: images,captures,project_files ('' = any)")
    st.add_argument("--modalities", help="comma-separated modalities ('' = any)")
    st.add_argument("--since", help="YYYY-MM-DD, or 'none'")
    st.add_argument("--last-days", type=int, help="N days back (0 = no limit)")
    st.add_argument("--old-data", choices=["keep", "delete", "backup"])
    st.add_argument("--select", action="append", metavar="TABLE:ID", help="pin a record in scope")
    st.add_argument("--unselect", action="append", metavar="TABLE:ID")
    st.add_argument(
        "--no-apply", action="store_true", help="do not apply the old-data option to the cloud"
    )
    st.set_defaults(handler=_guarded(_policy_set))

    sync = sub.add_parser("sync", help="per-record sync switch: disable, enable")
    sync_sub = sync.add_subparsers(dest="sync_command", required=True)
    for name, enabled in (("disable", False), ("enable", True)):
        p = sync_sub.add_parser(name, help=f"{name} sync of one record")
        _common(p)
        p.add_argument("table")
        p.add_argument("id", type=int)
        p.set_defaults(handler=_guarded(_sync_switch(enabled)))

    rs = sub.add_parser("restore", help="bring a backed-up record back on the cloud")
    _common(rs)
    rs.add_argument("table")
    rs.add_argument("id", type=int)
    rs.set_defaults(handler=_guarded(_restore))

    fr = sub.add_parser("files", help="the replicator with its file lanes required: run")
    fr_sub = fr.add_subparsers(dest="files_command", required=True)
    run = fr_sub.add_parser(
        "run",
        help="alias of `scsync replicator run` that refuses to start without the file "
        "settings (blobs_url, token, store)",
    )
    run.add_argument("--config", help="the site's config file: [replicator] and [files]")
    file_lanes.add_arguments(run)
    run.set_defaults(handler=_guarded(_files_run))

    bf = sub.add_parser("backfill", help="send what never crossed: start, status, pause")
    bf_sub = bf.add_subparsers(dest="backfill_command", required=True)
    start = bf_sub.add_parser("start", help="run the backfill in the foreground")
    _common(start, blobs=True)
    start.add_argument(
        "--rows-per-s", type=float, help="throttle: rows per second (default: no limit)"
    )
    start.add_argument(
        "--bytes-per-s", type=float, help="throttle: file bytes per second (default: no limit)"
    )
    start.add_argument("--batch-rows", type=int, default=5000, help="rows per batch")
    start.add_argument(
        "--file-batch-rows", type=int, default=20, help="rows per batch of a table with files"
    )
    start.add_argument(
        "--batches-in-flight",
        type=int,
        default=2,
        help="batches copied and applied at once, each on its own connections (default 2)",
    )
    start.add_argument("--concurrency", type=int, default=4, help="file transfers in flight")
    start.add_argument("--metrics-file", help="write Prometheus text metrics here")
    start.add_argument(
        "--no-yield-to-live",
        action="store_true",
        help="do not wait for the live lane's outbox to drain before each batch",
    )
    start.add_argument("--no-progress", action="store_true", help="no progress bar")
    start.add_argument("--log-progress", action="store_true", help="print progress as JSON lines")
    start.set_defaults(handler=_guarded(_backfill_start))
    status = bf_sub.add_parser("status", help="rows, bytes, rate and ETA")
    _common(status, cloud=False)
    status.add_argument("--json", action="store_true")
    status.add_argument("--metrics", action="store_true", help="Prometheus text format")
    status.set_defaults(handler=_guarded(_backfill_status))
    pause = bf_sub.add_parser("pause", help="stop the running backfill after its batch")
    _common(pause, cloud=False)
    pause.set_defaults(handler=_guarded(_backfill_pause))
