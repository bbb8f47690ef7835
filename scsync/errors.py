"""The one place where errors of every package become CLI messages and exit codes:
each carries its own (``schema.errors.ScsyncError``: a category and its exit code)."""

from __future__ import annotations

from schema.errors import EXIT_CODES, EXIT_FAILED, Category, ScsyncError

_CATEGORIES = {code: category for category, code in EXIT_CODES.items()}


class CliError(ScsyncError):
    """A problem the CLI reports as one line and a non-zero exit."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.category = _CATEGORIES.get(exit_code, Category.FAILED)


def to_cli_error(exc: Exception) -> CliError | None:
    """Map a known error to a CliError; None for anything unexpected (a bug)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ScsyncError):
        return CliError(str(exc), exc.exit_code)
    return None
