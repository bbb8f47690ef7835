"""Every event type, once: the API's live events (``scsync_api_events.type``, the
WebSocket's ``type``), the capture's batch rows they are fanned out from, and lockd's
lease events (``scsync_lease_events.event``).

The SQL writes most of them; ``tests/test_events.py`` checks that every event type
the SQL names is a member here and that every member is named somewhere (SQL or code).
A ``StrEnum``: a member is its string, in JSON, in a comparison and as a query parameter.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["ENDING_LEASE_EVENTS", "LEASE_EVENTS", "EventType"]


class EventType(StrEnum):
    # What the clients of the APIs are told (docs/api.md).
    RECORD_CHANGED = "record.changed"  # a content change made on this side
    REMOTE_CHANGED = "remote.changed"  # a change from the other side, applied here
    RECORD_SYNC = "record.sync"  # the sync badge moved
    RECORD_CONFLICT = "record.conflict"  # entered a conflict, or it was resolved
    RECORD_EDITING = "record.editing"  # an edit session opened (a lease was acquired)
    RECORD_SAVED = "record.saved"  # an edit session saved
    RECORD_RELEASED = "record.released"  # an edit session closed
    SYNC_PROGRESS = "sync.progress"  # the backfill's progress
    SYNC_POLICY = "sync.policy"  # the sync policy was changed through the API
    BLOB_REQUESTED = "blob.requested"  # a file asked for on demand
    # The capture's rows, one per statement, table and site; read as the record.* events
    # of their records (scsync_api_events_since).
    BATCH_CHANGED = "batch.changed"
    BATCH_SYNC = "batch.sync"
    BATCH_CONFLICT = "batch.conflict"
    # lockd's lease events; lease.idle_warning and lease.expired (also for a broken or
    # idle-closed lease) reach the clients too.
    LEASE_ACQUIRED = "lease.acquired"
    LEASE_RELEASED = "lease.released"
    LEASE_EXPIRED = "lease.expired"
    LEASE_BROKEN = "lease.broken"
    LEASE_IDLE_WARNING = "lease.idle_warning"
    LEASE_IDLE_CLOSED = "lease.idle_closed"
    # The RabbitMQ bus's wake-up of the sync API's long poll (never stored).
    SYNC_HINT = "sync.hint"


# scsync_lease_events.event, in the order of its check constraint.
LEASE_EVENTS: Final[tuple[EventType, ...]] = tuple(
    e for e in EventType if e.value.startswith("lease.")
)
# The lease events after which the lease is gone.
ENDING_LEASE_EVENTS: Final = frozenset(
    {
        EventType.LEASE_RELEASED,
        EventType.LEASE_EXPIRED,
        EventType.LEASE_BROKEN,
        EventType.LEASE_IDLE_CLOSED,
    }
)
