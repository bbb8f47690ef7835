"""Errors of the schema package: the one hierarchy the CLI and APIs map to messages."""

from __future__ import annotations


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
