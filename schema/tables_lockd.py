"""The lockd tables (part of the baseline migration on each side).

Cloud: the lease table carries the edit-session state (TTL, saves made in the
session, the revision of its last save, the id of its last save request for retries),
and an append-only event log that backs every ``pg_notify('scsync_lease', ...)`` so a
relay that missed a notification can catch up by ``seq``.

Local: offline edit sessions, opened explicitly when the lock service is unreachable.
They are unfenced by design and are recorded so that every client and the operator can
see that they were.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from schema.events import LEASE_EVENTS
from schema.tables_types import Side


def _tz() -> DateTime:
    return DateTime(timezone=True)


def add_tables(md: MetaData, side: Side) -> None:
    """Declare this area's tables/columns on `md` for `side`; the migration builds them."""
    if side == "cloud":
        leases = md.tables["scsync_leases"]
        leases.append_column(
            Column("ttl_ms", Integer, nullable=False, server_default=text("30000"))
        )
        # Saves with real changes in this session: 0 -> the next one makes (A+1).0.
        leases.append_column(Column("saves", Integer, nullable=False, server_default=text("0")))
        leases.append_column(Column("saved_revision", BigInteger))
        # Every revision this session saved: a site's saves reach the cloud copy later,
        # so the copy may still be at any of them when the next save is fenced.
        leases.append_column(
            Column(
                "saved_revisions",
                ARRAY(BigInteger),
                nullable=False,
                server_default=text("'{}'::bigint[]"),
            )
        )
        leases.append_column(Column("last_save_id", UUID(as_uuid=True)))
        Table(
            "scsync_lease_events",
            md,
            Column("seq", BigInteger, Identity(always=False), primary_key=True),
            Column("at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
            Column("event", Text, nullable=False),
            Column("table_name", Text, nullable=False),
            Column("row_id", BigInteger, nullable=False),
            Column("site_id", Integer, nullable=False),
            Column("holder", Text, nullable=False),
            Column("token", BigInteger, nullable=False),
            Column("lease_id", UUID(as_uuid=True), nullable=False),
            Column("detail", JSONB),
            CheckConstraint(
                "event IN (" + ", ".join(f"'{e}'" for e in LEASE_EVENTS) + ")",
                name="ck_scsync_lease_events_event",
            ),
            Index("ix_scsync_lease_events_site_seq", "site_id", "seq"),
        )
    else:
        Table(
            "scsync_offline_sessions",
            md,
            Column("session_id", UUID(as_uuid=True), primary_key=True),
            Column("table_name", Text, nullable=False),
            Column("row_id", BigInteger, nullable=False),
            Column("site_id", Integer, nullable=False),
            Column("holder", Text, nullable=False),
            # Always true: stated in the row so that nobody reading it can mistake it.
            Column("unfenced", Boolean(), nullable=False, server_default=text("true")),
            Column("reason", Text, nullable=False),
            Column("base_revision", BigInteger, nullable=False),
            Column("base_version_major", Integer, nullable=False),
            Column("base_version_minor", Integer, nullable=False),
            Column("saves", Integer, nullable=False, server_default=text("0")),
            Column("last_saved_revision", BigInteger),
            Column("status", Text, nullable=False, server_default=text("'open'")),
            Column("opened_at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
            Column("closed_at", _tz()),
            CheckConstraint("unfenced", name="ck_scsync_offline_sessions_unfenced"),
            CheckConstraint(
                "status IN ('open', 'closed')", name="ck_scsync_offline_sessions_status"
            ),
            Index("ix_scsync_offline_sessions_record", "table_name", "row_id"),
        )
