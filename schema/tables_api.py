"""The API's tables (part of the baseline migration on each side).

``scsync_api_events`` is the event log behind the WebSocket ``/ws``: every event gets
a bigint id from an identity column, so ids increase across every API instance that
shares the database, and a client that reconnects with ``last_event_id`` is replayed
what it missed. The cloud has ``scsync_audit``; the local side gets the
same table here. ``scsync_api_relay`` keeps the RabbitMQ relay's cursor (cloud only).
``scsync_token_versions`` (both sides, not synced) holds the token version of each
account and site and an account's disabled flag (schema/revocation.py).
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
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB

from schema.tables_types import Side


def add_tables(md: MetaData, side: Side) -> None:
    """Declare this area's tables on `md` for `side`; the baseline migration builds them."""
    Table(
        "scsync_api_events",
        md,
        Column("id", BigInteger, Identity(always=False), primary_key=True),
        Column(
            "at",
            DateTime(timezone=True),
            nullable=False,
            server_default=sql_text("clock_timestamp()"),
        ),
        Column("site_id", Integer),
        Column("type", Text, nullable=False),
        Column("table_name", Text),
        Column("row_id", BigInteger),
        Column("patient_id", BigInteger),
        Column("payload", JSONB, nullable=False, server_default=sql_text("'{}'::jsonb")),
        # Revision 0007: the publishing transaction and the oldest one running at insert
        # (xid8 as bigint), so a replay also finds events that committed late.
        Column(
            "txid",
            BigInteger,
            nullable=False,
            server_default=sql_text("(pg_current_xact_id())::text::bigint"),
        ),
        Column(
            "horizon",
            BigInteger,
            server_default=sql_text("(pg_snapshot_xmin(pg_current_snapshot()))::text::bigint"),
        ),
        Index("ix_scsync_api_events_site_id", "site_id", "id"),
        Index("ix_scsync_api_events_at", "at"),
        Index("ix_scsync_api_events_txid", "txid"),
    )
    Table(
        "scsync_token_versions",
        md,
        Column("kind", Text, primary_key=True),
        Column("key", BigInteger, primary_key=True),
        Column("version", Integer, nullable=False, server_default=sql_text("0")),
        Column("disabled", Boolean, nullable=False, server_default=sql_text("false")),
        Column(
            "changed_at", DateTime(timezone=True), nullable=False, server_default=sql_text("now()")
        ),
        CheckConstraint("kind IN ('account', 'site')", name="ck_scsync_token_versions_kind"),
    )
    if side == "local":
        # Same shape as the cloud's scsync_audit, so both sides audit alike.
        Table(
            "scsync_audit",
            md,
            Column("seq", BigInteger, Identity(always=False), primary_key=True),
            Column(
                "at",
                DateTime(timezone=True),
                nullable=False,
                server_default=sql_text("clock_timestamp()"),
            ),
            Column("actor", Text, nullable=False),
            Column("side", Text, nullable=False),
            Column("site_id", Integer),
            Column("action", Text, nullable=False),
            Column("table_name", Text),
            Column("row_id", BigInteger),
            Column("detail", JSONB),
            Index("ix_scsync_audit_record", "table_name", "row_id"),
        )
    if side == "cloud":
        Table(
            "scsync_api_relay",
            md,
            Column("name", Text, primary_key=True),
            Column("last_event_id", BigInteger, nullable=False, server_default=sql_text("0")),
            Column(
                "updated_at",
                DateTime(timezone=True),
                nullable=False,
                server_default=sql_text("now()"),
            ),
        )
