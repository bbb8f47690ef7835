"""The replicator's tables (part of the baseline migration on each side)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)

from schema.tables_types import Side


def add_tables(md: MetaData, side: Side) -> None:
    """Declare this area's tables/columns on `md` for `side`; the migration builds them."""
    # A record a lane could not apply at the destination (constraint violation, missing
    # parent, bad data), parked at the source beside the outbox rows it keeps there.
    # The lane's reading skips it until next_retry_at, so it never blocks the records
    # behind it; a successful retry deletes the entry.
    Table(
        "scsync_dead_letters",
        md,
        Column("lane", Text, primary_key=True),
        Column("table_name", Text, primary_key=True),
        Column("row_id", BigInteger, primary_key=True),
        Column("site_id", Integer, nullable=False),
        Column("revision", BigInteger),
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("1")),
        Column(
            "first_failed_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=text("clock_timestamp()"),
        ),
        Column(
            "last_failed_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=text("clock_timestamp()"),
        ),
        Column("next_retry_at", DateTime(timezone=True), nullable=False),
        CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_dead_letters_lane"),
        Index("ix_scsync_dead_letters_site", "site_id"),
    )
    if side == "local":
        # The WAL capture's state (replicator/wal.py), one row: the slot it reads and
        # when capture began (a resync after a lost slot takes the unsynced rows changed
        # since then). Its position is the slot's (moved after the cloud's commit) and
        # the cloud's cursor (revision 0003: no spool, no spooled_lsn).
        Table(
            "scsync_capture_state",
            md,
            Column("singleton", Boolean, primary_key=True, server_default=text("true")),
            Column("slot_name", Text),
            Column(
                "capture_since",
                DateTime(timezone=True),
                nullable=False,
                server_default=text("clock_timestamp()"),
            ),
            Column("updated_at", DateTime(timezone=True)),
            CheckConstraint("singleton", name="ck_scsync_capture_state_singleton"),
        )
