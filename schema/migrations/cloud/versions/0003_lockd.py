"""lockd: edit-session state on the lease table, the lease event log, the lease functions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schema.sql import run_sql_file

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.add_column(
        "scsync_leases",
        sa.Column("ttl_ms", sa.Integer(), server_default=sa.text("30000"), nullable=False),
    )
    op.add_column(
        "scsync_leases",
        sa.Column("saves", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("scsync_leases", sa.Column("saved_revision", sa.BigInteger(), nullable=True))
    op.add_column(
        "scsync_leases",
        sa.Column(
            "saved_revisions",
            postgresql.ARRAY(sa.BigInteger()),
            server_default=sa.text("'{}'::bigint[]"),
            nullable=False,
        ),
    )
    op.add_column("scsync_leases", sa.Column("last_save_id", postgresql.UUID(), nullable=True))
    op.create_table(
        "scsync_lease_events",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("lease_id", postgresql.UUID(), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        sa.CheckConstraint(
            "event IN ('lease.acquired', 'lease.released', 'lease.expired', 'lease.broken',"
            " 'lease.idle_warning', 'lease.idle_closed')",
            name="ck_scsync_lease_events_event",
        ),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        "ix_scsync_lease_events_site_seq", "scsync_lease_events", ["site_id", "seq"], unique=False
    )
    run_sql_file("r0003_lockd_apply.sql")
    run_sql_file("r0003_lockd_leases.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0003_lockd_drop_leases.sql")
    run_sql_file("r0003_lockd_drop_apply.sql")
    op.drop_index("ix_scsync_lease_events_site_seq", table_name="scsync_lease_events")
    op.drop_table("scsync_lease_events")
    op.drop_column("scsync_leases", "last_save_id")
    op.drop_column("scsync_leases", "saved_revisions")
    op.drop_column("scsync_leases", "saved_revision")
    op.drop_column("scsync_leases", "saves")
    op.drop_column("scsync_leases", "ttl_ms")
