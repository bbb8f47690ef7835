"""The one exception base of scsync and the schema package's errors.

Every error scsync raises on purpose derives from :class:`ScsyncError`, which carries
what each boundary needs: the HTTP ``status`` and stable ``code`` of the JSON error body
``{"error": code, "message": ..., "field": ..., **extra}`` (the web apps' one error
middleware, ``schema.web``), the CLI's exit code (``scsync.errors``), and a
``category`` that says what a caller can do about it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final


class Category(StrEnum):
    """What the one who meets the error can do about it."""

    USAGE = "usage"  # a setting or a command's argument is wrong: fix it
    UNAVAILABLE = "unavailable"  # something needed cannot be reached: retry later
    REFUSED = "refused"  # not allowed, malformed, or in conflict with the current state
    FAILED = "failed"  # the operation failed (a broken schema, a bug)


EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_UNAVAILABLE: Final = 3
EXIT_CODES: Final = {
    Category.USAGE: EXIT_USAGE,
    Category.UNAVAILABLE: EXIT_UNAVAILABLE,
    Category.REFUSED: EXIT_FAILED,
    Category.FAILED: EXIT_FAILED,
}


class ScsyncError(Exception):
    """Base of every error scsync raises on purpose.

    A subclass names its ``category`` (its ``exit_code`` follows unless it sets one)
    and, when it is an answer of a web app, its ``status`` and ``code`` and ``public =
    True``: its message goes to the client. Any other error a handler lets through is
    answered 500 ``internal_error`` without its message, and logged.
    """

    status = 500
    code = "internal_error"
    category: Category = Category.FAILED
    exit_code: int = EXIT_FAILED
    public = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "exit_code" not in cls.__dict__:
            cls.exit_code = EXIT_CODES[cls.category]

    def __init__(self, message: str = "", *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message, "field": self.field}
        out.update(self.extra)
        return out


class SchemaError(ScsyncError):
    """Base of every error raised by the schema package."""


class ConfigError(SchemaError):
    """A setting (URL, side name, node id) is missing or malformed."""

    category = Category.USAGE


class DatabaseUnavailable(SchemaError):
    """The database could not be reached."""

    category = Category.UNAVAILABLE


class MigrationError(SchemaError):
    """A migration could not be applied or the schema does not match."""


class ClockMovedBackwards(SchemaError):
    """The database clock stepped back; ids are refused rather than repeated."""


class NodeNotConfigured(SchemaError):
    """The database has no node id yet (scsync db set-node)."""


def first_line(exc: BaseException) -> str:
    """An error's first line (a driver's message goes on with DETAIL and HINT lines)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
