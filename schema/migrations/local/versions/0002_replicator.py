"""replicator: dead-letter table and the lane functions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from schema.sql import run_sql_file

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.create_table(
        "scsync_dead_letters",
        sa.Column("lane", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "first_failed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column(
            "last_failed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("next_retry_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_dead_letters_lane"),
        sa.PrimaryKeyConstraint("lane", "table_name", "row_id"),
    )
    op.create_index("ix_scsync_dead_letters_site", "scsync_dead_letters", ["site_id"])
    run_sql_file("r0002_replicator.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0002_replicator_drop.sql")
    op.drop_index("ix_scsync_dead_letters_site", table_name="scsync_dead_letters")
    op.drop_table("scsync_dead_letters")
