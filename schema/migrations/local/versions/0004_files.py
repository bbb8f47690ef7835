"""files (local): scope policy, explicit selection, upload journal, backfill control.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schema.sql import run_sql_file

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _tz() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade(**kw: Any) -> None:
    op.create_table(
        "scsync_file_policy",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("mode", sa.Text(), server_default=sa.text("'all'"), nullable=False),
        sa.Column(
            "tables", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False
        ),
        sa.Column(
            "modalities",
            postgresql.JSONB(),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("since_date", sa.Date(), nullable=True),
        sa.Column("last_days", sa.Integer(), nullable=True),
        sa.Column("old_data", sa.Text(), server_default=sa.text("'keep'"), nullable=False),
        sa.Column("updated_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("singleton", name="ck_scsync_file_policy_singleton"),
        sa.CheckConstraint("mode IN ('all', 'selective')", name="ck_scsync_file_policy_mode"),
        sa.CheckConstraint(
            "old_data IN ('keep', 'delete', 'backup')", name="ck_scsync_file_policy_old"
        ),
        sa.CheckConstraint("last_days IS NULL OR last_days > 0", name="ck_scsync_file_policy_days"),
        sa.PrimaryKeyConstraint("singleton"),
    )
    op.create_table(
        "scsync_file_selection",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("selected_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("table_name", "row_id"),
    )
    op.create_table(
        "scsync_uploads",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("upload_id", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("part_size", sa.BigInteger(), nullable=False),
        sa.Column("started_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_scsync_uploads_sha256"),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "scsync_upload_parts",
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("part_number", sa.Integer(), nullable=False),
        sa.Column("etag", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["sha256"], ["scsync_uploads.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sha256", "part_number"),
    )
    op.create_table(
        "scsync_backfill",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'idle'"), nullable=False),
        sa.Column("rows_per_s", sa.Integer(), nullable=True),
        sa.Column("bytes_per_s", sa.BigInteger(), nullable=True),
        sa.Column("rows_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("bytes_done", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("run_started_at", _tz(), nullable=True),
        sa.Column("run_rows", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("run_bytes", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("singleton", name="ck_scsync_backfill_singleton"),
        sa.CheckConstraint(
            "state IN ('idle', 'running', 'paused', 'done')", name="ck_scsync_backfill_state"
        ),
        sa.PrimaryKeyConstraint("singleton"),
    )
    for table in ("images", "captures", "project_files"):
        op.create_index(f"ix_{table}_site_blob", table, ["site_id", "blob_sha256"])
    run_sql_file("r0004_files_local.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0004_files_local_drop.sql")
    for table in ("images", "captures", "project_files"):
        op.drop_index(f"ix_{table}_site_blob", table_name=table)
    op.drop_table("scsync_backfill")
    op.drop_table("scsync_upload_parts")
    op.drop_table("scsync_uploads")
    op.drop_table("scsync_file_selection")
    op.drop_table("scsync_file_policy")
