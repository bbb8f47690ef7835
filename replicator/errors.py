"""Errors of the replicator core (lanes, daemon, site registration).

Driver errors are wrapped at one boundary (:func:`replicator.db.wrap_errors`), keeping
the original as ``__cause__``.
"""

from __future__ import annotations

from schema.errors import Category, ScsyncError


class ReplicatorError(ScsyncError):
    """Base of every error raised by the replicator core."""


class SettingsError(ReplicatorError):
    """The replicator's settings are missing or malformed."""

    category = Category.USAGE


class Unavailable(ReplicatorError):
    """A database or the cloud API could not be reached or the link broke: retry with
    backoff."""

    category = Category.UNAVAILABLE


class LaneBusy(ReplicatorError):
    """Another replicator already runs this lane for this site."""

    category = Category.REFUSED


class Refused(ReplicatorError):
    """The cloud API refused a request (token, wall, malformed): not weather, but the
    lane still retries with backoff, so a renewed token is picked up without a restart."""

    category = Category.REFUSED


class ApplyFailed(ReplicatorError):
    """A record could not be applied at the destination (it gets parked)."""


class ReplicationFailed(ReplicatorError):
    """An unexpected database error in a lane (a bug or a broken schema)."""
