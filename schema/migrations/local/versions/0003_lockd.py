"""lockd: offline edit sessions and the save function shared with the cloud.

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
    op.create_table(
        "scsync_offline_sessions",
        sa.Column("session_id", postgresql.UUID(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("unfenced", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("base_revision", sa.BigInteger(), nullable=False),
        sa.Column("base_version_major", sa.Integer(), nullable=False),
        sa.Column("base_version_minor", sa.Integer(), nullable=False),
        sa.Column("saves", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_saved_revision", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'open'"), nullable=False),
        sa.Column(
            "opened_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("unfenced", name="ck_scsync_offline_sessions_unfenced"),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name="ck_scsync_offline_sessions_status"
        ),
        sa.PrimaryKeyConstraint("session_id"),
    )
    op.create_index(
        "ix_scsync_offline_sessions_record",
        "scsync_offline_sessions",
        ["table_name", "row_id"],
        unique=False,
    )
    run_sql_file("r0003_lockd_apply.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0003_lockd_drop_apply.sql")
    op.drop_index("ix_scsync_offline_sessions_record", table_name="scsync_offline_sessions")
    op.drop_table("scsync_offline_sessions")
