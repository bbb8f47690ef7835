"""Every `scsync <command> --help` ends with commands an operator can copy and states
every option's default. Registered last: it adds no command, it only fills in the
epilogs the command modules left without examples and sets one help formatter.

Examples are keyed by the command's words ("site disable"). A sub-command without its
own entry shows its group's examples that run it; groups and sub-commands left with
none are listed by ``missing_examples`` (a test keeps that empty)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any, Final

EXAMPLES: Final[dict[str, tuple[str, ...]]] = {
    "db downgrade": (
        "scsync db downgrade --side local --revision -1    # one revision back",
        "scsync db downgrade --side local --revision base  # an empty database",
    ),
    "db current": (
        "scsync db current --side cloud --url postgresql://scsync@cloud-db/scsync_cloud",
    ),
    "db set-node": (
        "scsync db set-node --side cloud --node-id 0",
        "scsync db set-node --side local --node-id 1 --site-id 1",
    ),
    "lockd sweep": ("scsync lockd sweep --config /etc/scsync/cloud.toml",),
    "site disable": ("scsync site disable 3 --url postgresql://scsync@cloud-db/scsync_cloud",),
    "site enable": ("scsync site enable 3 --url postgresql://scsync@cloud-db/scsync_cloud",),
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


HelpFormatter = argparse.RawDescriptionHelpFormatter  # epilogs keep their lines


def state_default(action: argparse.Action) -> None:
    """An option given a default by argparse says it in its help (``(default: 5000)``)
    unless the help already does. An option whose default is None or False has none to
    state: leaving it out means what its help says (a variable, the config file, off)."""
    text = action.help or ""
    default = action.default
    has_default = default is not None and default is not False and default != argparse.SUPPRESS
    takes_it = bool(action.option_strings) or action.nargs in ("?", "*")
    if has_default and takes_it and text != argparse.SUPPRESS and "default" not in text:
        action.help = f"{text} (default: %(default)s)".strip()


def every_parser(
    parser: argparse.ArgumentParser, words: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) of ``parser`` and of every command below it."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from every_parser(child, (*words, name))


def example_lines(parser: argparse.ArgumentParser) -> list[str]:
    """The lines of the epilog's "examples:" section."""
    epilog = parser.epilog or ""
    if "examples:" not in epilog:
        return []
    section = epilog.split("examples:", 1)[1]
    return [line.strip() for line in section.strip("\n").splitlines() if line.strip()]


def _runs(line: str, words: tuple[str, ...]) -> bool:
    return f"scsync {' '.join(words)}" in line


def missing_examples(root: argparse.ArgumentParser) -> list[str]:
    """Commands whose help shows no example that runs them."""
    return [
        " ".join(words)
        for words, parser in every_parser(root)
        if words and not any(_runs(line, words) for line in example_lines(parser))
    ]


def register(sub: Any) -> None:
    for name, lines in EXAMPLES.items():
        words = tuple(name.split())
        parser = sub.choices.get(words[0])
        for word in words[1:]:
            parser = _child(parser, word)
        if parser is not None and not example_lines(parser):
            _add_examples(parser, lines)
    for name, group in sub.choices.items():
        for words, parser in every_parser(group, (name,)):
            parser.formatter_class = HelpFormatter
            for action in parser._actions:
                state_default(action)
            if len(words) > 1 and not example_lines(parser):
                # A sub-command: its group's examples that run it.
                parent = _parent_examples(sub, words)
                _add_examples(parser, [line for line in parent if _runs(line, words)])


def _child(parser: argparse.ArgumentParser | None, word: str) -> argparse.ArgumentParser | None:
    if parser is None:
        return None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(word)
    return None


def _parent_examples(sub: Any, words: tuple[str, ...]) -> list[str]:
    parser = sub.choices.get(words[0])
    for word in words[1:-1]:
        parser = _child(parser, word)
    return [] if parser is None else example_lines(parser)


def _add_examples(parser: argparse.ArgumentParser, lines: Any) -> None:
    lines = list(lines)
    if not lines:
        return
    text = "examples:\n" + "\n".join(f"  {line}" for line in lines)
    parser.epilog = f"{parser.epilog}\n\n{text}" if parser.epilog else text
