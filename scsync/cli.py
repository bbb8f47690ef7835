"""``scsync``: the operator's command line. It wires the packages together; each
sub-command is a thin call into schema/, replicator/, lockd/ or api/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from schema import database
from scsync.commands import COMMANDS
from scsync.commands.examples import HelpFormatter
from scsync.errors import CliError, to_cli_error

# A command either returns its exit code or is a coroutine function: the CLI then runs
# it with the one asyncio.run of the process (the runtime database layer is async).
Handler = Callable[[argparse.Namespace], int | Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit 2, like argparse, but without the usage block: the
        # message names the problem and `--help` is one command away.
        raise CliError(f"{self.prog}: {message} (see --help)", 2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="scsync",
        description="Two-way sync between an SC Server (local) and SC Server Cloud.",
        epilog="Every command's --help (scsync db upgrade --help) states its options'\n"
        "defaults and ends with examples.\n\n"
        "examples:\n"
        "  scsync init --side local --output /etc/scsync/local.toml\n"
        "  scsync db upgrade --side local\n"
        "  scsync status --config /etc/scsync/local.toml\n"
        "  scsync demo --once",
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        handler: Handler = args.handler
        result = handler(args)
        return result if isinstance(result, int) else database.run(lambda: result)
    except KeyboardInterrupt:
        print("scsync: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        mapped = to_cli_error(exc)
        if mapped is None:
            raise
        print(f"scsync: error: {mapped}", file=sys.stderr)
        return mapped.exit_code


if __name__ == "__main__":
    sys.exit(main())
