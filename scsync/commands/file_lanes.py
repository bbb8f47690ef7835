"""The file settings of the site's replicator, read in one place for the two commands
that start it: ``scsync replicator run`` (file lanes when configured) and its alias
``scsync files run`` (file lanes required).

Each of ``blobs_url``, ``token`` and ``store`` comes from its flag, else its environment
variable, else the ``[files]`` table of ``--config``; the token, else the site's own
token (``site_token`` of ``[replicator]``, which ``SCSYNC_SITE_TOKEN`` also sets): one
token per site serves the lanes and the files. The settings go together: all of them
turn the file lanes on, none of them leaves them off, anything in between is a
configuration error naming what is missing (a half-configured site would otherwise
look like one that chose to run without files). The site's token alone is not a file
setting: a site configured by environment runs its row lanes without files.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from schema.errors import ConfigError

if TYPE_CHECKING:
    from replicator.files.service import FilesSettings

KEYS: Final = ("blobs_url", "token", "store")
ENV: Final = {
    "blobs_url": "SCSYNC_BLOBS_URL",
    "token": "SCSYNC_SITE_TOKEN",
    "store": "SCSYNC_FILE_STORE",
}
FLAG: Final = {key: "--" + key.replace("_", "-") for key in KEYS}


def where(key: str) -> str:
    """The places a file setting can be given, for messages."""
    return f"{FLAG[key]}, {ENV[key]} or {key} in [files] of --config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The file lanes' flags (both commands take the same ones)."""
    parser.add_argument("--blobs-url", help=f"the cloud's blob API (default: {ENV['blobs_url']})")
    parser.add_argument("--token", help=f"this site's JWT (default: {ENV['token']})")
    parser.add_argument("--store", help=f"local file store root (default: {ENV['store']})")
    # None = not given: a tuning flag alone must not look like file settings were given.
    parser.add_argument(
        "--poll-s", type=float, help="on-demand/download poll in seconds (default: 1)"
    )
    parser.add_argument("--concurrency", type=int, help="file transfers in flight (default: 4)")


def _from_table(table: Mapping[str, Any], key: str, config: str | Path | None) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"setting {key!r} of [files] in {config} must be a string")
    return value


def read_file_settings(
    config: str | Path | None,
    *,
    blobs_url: str | None = None,
    token: str | None = None,
    store: str | None = None,
    poll_s: float | None = None,
    concurrency: int | None = None,
    env: Mapping[str, str] | None = None,
    required: bool = False,
    site_token: str | None = None,
) -> FilesSettings | None:
    """The file lanes' settings, or None when none of them is given (and not ``required``).

    Flags (the keyword arguments) win over ``env`` (default: ``os.environ``), which wins
    over the ``[files]`` table of ``config``. Raises ConfigError naming the missing
    settings when only some are given, or none while ``required``.
    """
    from schema.config import check_http_url, check_not_placeholder, read_config_file

    env = os.environ if env is None else env
    table = read_config_file(config, "files") if config else {}
    flags = {"blobs_url": blobs_url, "token": token, "store": store}
    values: dict[str, str] = {}
    for key in KEYS:
        # An empty value counts as not given, as an unset variable would. The site's
        # token (its variable is the replicator's too) is no sign of file settings.
        from_env = env.get(ENV[key]) if key != "token" else None
        value = flags[key] or from_env or _from_table(table, key, config)
        if value:
            values[key] = value
    tuning = [f for f, v in (("--poll-s", poll_s), ("--concurrency", concurrency)) if v is not None]
    if not values and not tuning and not required:
        return None
    site = flags["token"] or env.get(ENV["token"]) or values.get("token") or site_token
    if site:
        values["token"] = site
    missing = [key for key in KEYS if key not in values]
    if missing:
        listed = "; ".join(f"{key} ({where(key)})" for key in missing)
        if values or tuning:
            hint = "" if required else ", or none of them to run the row lanes only"
            given = ", ".join([*values, *tuning])
            raise ConfigError(
                f"incomplete file settings: {given} given, missing {listed}; "
                f"the file lanes need blobs_url, token and store together{hint}"
            )
        raise ConfigError(f"the file lanes need blobs_url, token and store: missing {listed}")
    check_http_url("blobs_url", values["blobs_url"])
    check_not_placeholder("token", values["token"])
    if poll_s is not None and not poll_s > 0:
        raise ConfigError(f"--poll-s must be a positive number of seconds, got {poll_s}")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")

    from replicator.files.service import FilesSettings

    tuned: dict[str, Any] = {}
    if poll_s is not None:
        tuned["poll_s"] = poll_s
    if concurrency is not None:
        tuned["concurrency"] = concurrency
    return FilesSettings(
        blobs_url=values["blobs_url"],
        token=values["token"],
        store_root=Path(values["store"]),
        **tuned,
    )


def from_args(
    args: argparse.Namespace, required: bool, site_token: str | None = None
) -> FilesSettings | None:
    """:func:`read_file_settings` for a command that took :func:`add_arguments`."""
    return read_file_settings(
        args.config,
        blobs_url=args.blobs_url,
        token=args.token,
        store=args.store,
        poll_s=args.poll_s,
        concurrency=args.concurrency,
        required=required,
        site_token=site_token,
    )
