"""The operator's CLI: `scsync --help` lists every command the issue names, every group
ends its help with examples, and every example parses as a real command line."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from api.settings import Settings as ApiSettings
from replicator.settings import Settings as ReplicatorSettings
from scsync.cli import build_parser
from scsync.errors import CliError

ROOT = Path(__file__).resolve().parents[2]


def _groups() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _subcommands(group: argparse.ArgumentParser) -> set[str]:
    for a in group._actions:
        if isinstance(a, argparse._SubParsersAction):
            return set(a.choices)
    return set()


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "scsync", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for cmd in [
        "init",
        "db",
        "site",
        "replicator",
        "api",
        "lockd",
        "status",
        "conflicts",
        "policy",
        "backfill",
        "sync",
        "restore",
        "demo",
    ]:
        assert re.search(rf"^\s+{cmd}\s", out, re.MULTILINE), cmd
    groups = _groups()
    assert {"upgrade", "current", "check"} <= _subcommands(groups["db"])
    assert {"register", "list"} <= _subcommands(groups["site"])
    assert {"enable", "disable"} <= _subcommands(groups["sync"])
    assert {"list", "show", "resolve"} <= _subcommands(groups["conflicts"])
    assert {"start", "status", "pause"} <= _subcommands(groups["backfill"])
    assert "run" in _subcommands(groups["replicator"]) and "run" in _subcommands(groups["lockd"])


@pytest.mark.parametrize("name", sorted(_groups()))
def test_every_group_has_examples_that_parse(name: str) -> None:
    group = _groups()[name]
    epilog = group.epilog or ""
    assert "examples:" in epilog, f"scsync {name} --help shows no examples"
    lines = [ln.strip() for ln in epilog.split("examples:", 1)[1].splitlines() if ln.strip()]
    assert lines
    for line in lines:
        # The scsync part of a pipeline, without a redirection or a trailing comment.
        command = line.split("  #")[0].split("|")[-1].split(" > ")[0]
        words = shlex.split(command)
        words = [w for w in words if "=" not in w or w.startswith("-")]  # VAR=... prefixes
        assert words[0] == "scsync", line
        try:
            build_parser().parse_args(words[1:])
        except (SystemExit, CliError) as exc:
            pytest.fail(f"example does not parse: {line} ({exc})")


def test_readme_configuration_reference_names_every_key() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    keys = set(ApiSettings.model_fields) - {"side"}
    for key in keys:
        assert f"| `{key}` | `SCSYNC_API_{key.upper()}` |" in readme, key
    for key in ReplicatorSettings.model_fields:
        assert f"| `{key}` | `SCSYNC_{key.upper()}` |" in readme, key


def test_runbook_commands_parse() -> None:
    """Every `scsync …` line of docs/operations.md's shell blocks is a valid command line
    (the values are the operator's; the command and its options must exist)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    lines = [
        ln.split("  #")[0].replace("…", "x")
        for block in blocks
        for ln in block.replace("\\\n", " ").splitlines()
        if ln.startswith("scsync ")
    ]
    assert len(lines) >= 12
    for line in lines:
        try:
            build_parser().parse_args(shlex.split(line)[1:])
        except (SystemExit, CliError) as exc:
            pytest.fail(f"docs/operations.md: {line} ({exc})")
