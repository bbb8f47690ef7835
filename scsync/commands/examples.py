"""Examples for the `--help` of command groups whose own module gives none, so that
every `scsync <group> --help` ends with commands an operator can copy. Registered last:
it only fills in an epilog, it adds no command."""

from __future__ import annotations

import argparse
from typing import Any, Final

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "policy": (
        "scsync policy show --local-url postgresql://scsync@127.0.0.1/scsync",
        "scsync policy set --mode selective --tables images --modalities CT,CBCT --last-days 365",
    ),
    "sync": (
        "scsync sync disable images 913748735987549184 --config /etc/scsync/local.toml",
        "scsync sync enable images 913748735987549184 --config /etc/scsync/local.toml",
    ),
    "restore": ("scsync restore images 913748735987549184 --config /etc/scsync/local.toml",),
    "files": (
        "scsync files run --config /etc/scsync/local.toml  # = replicator run, [files] required",
    ),
    "backfill": (
        "scsync backfill start --config /etc/scsync/local.toml --bytes-per-s 20000000",
        "scsync backfill status",
        "scsync backfill pause",
    ),
    "replicator": (
        "scsync replicator run --config /etc/scsync/local.toml",
        "scsync replicator status --config /etc/scsync/local.toml",
    ),
    "conflicts": (
        "scsync conflicts list --side cloud --url postgresql://scsync@cloud-db/scsync_cloud",
        "scsync conflicts show 913748 --side cloud",
        "scsync conflicts resolve 913748 --keep local --side cloud --by it-admin",
    ),
    "site": (
        "scsync site register clinic-north --url postgresql://scsync@cloud-db/scsync_cloud",
        "scsync site list --url postgresql://scsync@cloud-db/scsync_cloud",
    ),
}


def register(sub: Any) -> None:
    for name, lines in EXAMPLES.items():
        parser = sub.choices.get(name)
        if parser is None or (parser.epilog and "example" in parser.epilog):
            continue
        text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
        parser.epilog = f"{parser.epilog}\n\n{text}" if parser.epilog else text
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
