"""WAL capture on a site (opt-in: the replicator's setting capture = "wal"): the state of
the replicator's slot, scsync_node.capture, the publication scsync_capture and the
spool that writes the decoded changes into history and outbox
(schema/sql/r0013_wal_capture.sql, replicator/wal.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from schema.sql import restore_functions, run_sql_file

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.add_column(
        "scsync_node",
        sa.Column("capture", sa.Text(), server_default=sa.text("'triggers'"), nullable=False),
    )
    op.create_check_constraint(
        "ck_scsync_node_capture", "scsync_node", "capture IN ('triggers', 'wal')"
    )
    op.create_table(
        "scsync_capture_state",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("slot_name", sa.Text(), nullable=True),
        sa.Column("spooled_lsn", sa.Text(), nullable=True),
        sa.Column(
            "capture_since",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("singleton", name="ck_scsync_capture_state_singleton"),
        sa.PrimaryKeyConstraint("singleton"),
    )
    op.execute("INSERT INTO scsync_capture_state (singleton) VALUES (true)")
    run_sql_file("r0013_wal_capture.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0013_wal_capture_drop.sql")
    restore_functions("r0012_lean_capture.sql", "scsync_register_table")
    op.drop_table("scsync_capture_state")
    op.drop_constraint("ck_scsync_node_capture", "scsync_node")
    op.drop_column("scsync_node", "capture")
