"""`scsync init`: write the commented configuration file of a side."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from schema.errors import ConfigError


def _init(args: argparse.Namespace) -> int:
    from scsync.config_example import render

    text = render(args.side)
    if not args.output or args.output == "-":
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} exists already (use --force to overwrite)")
    try:
        # Created 0600: the file holds the JWT secret and database passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if args.side == "local":
        # The services refuse to start on the placeholders until these are filled in.
        print(
            f"wrote {path} (local side); before the services start, put in the site's values"
            " from `scsync site register`: site_id, cloud_api_url, and the site's token"
            " in site_token and lockd_token ([files] too, when the file lanes run)"
        )
    else:
        print(f"wrote {path} (cloud side) with a new jwt_secret; check db_url and s3_bucket")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="write a commented configuration file for a side",
        epilog="examples:\n"
        "  scsync init --side local --output /etc/scsync/local.toml\n"
        "  scsync init --side cloud > cloud.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--side", required=True, choices=("local", "cloud"))
    p.add_argument("--output", "-o", help="file to write (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(handler=_init)
