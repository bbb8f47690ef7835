"""The one place where errors of every package become CLI messages and exit codes."""

from __future__ import annotations

from api.errors import ApiError
from api.errors import ConfigError as ApiConfigError
from lockd.errors import LockdError, LockdUnavailable
from replicator.errors import ReplicatorError, SettingsError, Unavailable
from replicator.files.errors import (
    CloudUnavailable,
    DatabaseUnreachable,
    FilesError,
    PolicyError,
)
from schema.errors import ConfigError, DatabaseUnavailable, SchemaError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_FAILED = 1


class CliError(Exception):
    """A problem the CLI reports as one line and a non-zero exit."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def to_cli_error(exc: Exception) -> CliError | None:
    """Map a known error to a CliError; None for anything unexpected (a bug)."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, ConfigError):
        return CliError(str(exc), EXIT_USAGE)
    if isinstance(exc, DatabaseUnavailable):
        return CliError(str(exc), EXIT_UNAVAILABLE)
    if isinstance(exc, SchemaError):
        return CliError(str(exc), EXIT_FAILED)
    if isinstance(exc, ApiConfigError):
        return CliError(str(exc), EXIT_USAGE)
    if isinstance(exc, ApiError):
        return CliError(str(exc), EXIT_FAILED)
    if isinstance(exc, LockdUnavailable):
        return CliError(str(exc), EXIT_UNAVAILABLE)
    if isinstance(exc, LockdError):
        return CliError(str(exc), EXIT_FAILED)
    if isinstance(exc, PolicyError):
        return CliError(str(exc), EXIT_USAGE)
    if isinstance(exc, DatabaseUnreachable | CloudUnavailable):
        return CliError(str(exc), EXIT_UNAVAILABLE)
    if isinstance(exc, FilesError):
        return CliError(str(exc), EXIT_FAILED)
    if isinstance(exc, SettingsError):
        return CliError(str(exc), EXIT_USAGE)
    if isinstance(exc, Unavailable):
        return CliError(str(exc), EXIT_UNAVAILABLE)
    if isinstance(exc, ReplicatorError):
        return CliError(str(exc), EXIT_FAILED)
    return None
