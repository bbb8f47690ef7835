"""`scsync <command> --help`, for every command and sub-command: it ends with an example
that runs that command (and parses), and every option argparse gives a default states
it."""

from __future__ import annotations

import argparse
import shlex

import pytest

from scsync.cli import build_parser, main
from scsync.commands.examples import every_parser, missing_examples
from scsync.errors import CliError


def _help(words: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def _option_block(text: str, option: str) -> str:
    """The help lines of one option: its own line and the indented ones after it."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"  {option}"):
            block = [line]
            for more in lines[i + 1 :]:
                if not more.startswith("   ") or more.lstrip().startswith("-"):
                    break
                block.append(more)
            return " ".join(part.strip() for part in block)
    raise AssertionError(f"{option} is not in the help:\n{text}")


def _has_default(action: argparse.Action) -> bool:
    default = action.default
    return default is not None and default is not False and default != argparse.SUPPRESS


COMMANDS = [words for words, _ in every_parser(build_parser())]


def test_every_command_is_walked() -> None:
    assert {w[0] for w in COMMANDS if w} >= {"init", "db", "site", "demo", "backfill"}
    assert ("db", "set-node") in COMMANDS and ("conflicts", "resolve") in COMMANDS
    assert missing_examples(build_parser()) == []


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "scsync")
def test_help_shows_an_example_and_every_default(
    words: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("USER", raising=False)  # conflicts resolve --by: $USER, else cli
    text = _help(words, capsys)
    assert "examples:" in text, text
    examples = text.split("examples:", 1)[1].splitlines()
    command = " ".join(("scsync", *words))
    assert any(command in line for line in examples), text
    for line in (ln.strip() for ln in examples if ln.strip().startswith(("scsync", "SCSYNC_"))):
        # The scsync part of a pipeline, without a redirection or a trailing comment.
        part = line.split("  #")[0].split("|")[-1].split(" > ")[0]
        argv = [w for w in shlex.split(part) if "=" not in w or w.startswith("-")]
        assert argv[0] == "scsync", line
        try:
            build_parser().parse_args(argv[1:])
        except (SystemExit, CliError) as exc:
            pytest.fail(f"example does not parse: {line} ({exc})")
    parser = dict(every_parser(build_parser()))[words]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        if _has_default(action):
            block = _option_block(text, action.option_strings[0])
            assert "default" in block and str(action.default) in block, block
