"""Errors of the schema package: the one hierarchy the CLI and APIs map to messages."""

from __future__ import annotations

from typing import Any


class SchemaError(Exception):
    """Base of every error raised by the schema package."""


class ConfigError(SchemaError):
    """A setting (URL, side name, node id) is missing or malformed."""


class DatabaseUnavailable(SchemaError):
    """The database could not be reached."""


class MigrationError(SchemaError):
    """A migration could not be applied or the schema does not match."""


class ClockMovedBackwards(SchemaError):
    """The database clock stepped back; ids are refused rather than repeated."""


class NodeNotConfigured(SchemaError):
    """The database has no node id yet (scsync db set-node)."""


class CodedError(Exception):
    """An error with an HTTP ``status``, a stable ``code`` and the ``field`` it is about.

    The base of the HTTP-facing hierarchies (lockd's and the API's), which each map it
    once to the JSON body ``{"error": code, "message": ..., "field": ..., **extra}``.
    """

    status = 500
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message, "field": self.field}
        out.update(self.extra)
        return out
