"""files (cloud): blobs known per site, on-demand requests, blob/lifecycle triggers.

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
        "scsync_blobs",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("upload_id", sa.Text(), nullable=True),
        sa.Column("created_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("uploaded_at", _tz(), nullable=True),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_scsync_blobs_sha256"),
        sa.CheckConstraint(
            "state IN ('pending', 'uploaded', 'deleted')", name="ck_scsync_blobs_state"
        ),
        sa.CheckConstraint("size >= 0", name="ck_scsync_blobs_size"),
        sa.PrimaryKeyConstraint("site_id", "sha256"),
    )
    op.create_table(
        "scsync_blob_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=True),
        sa.Column("row_id", sa.BigInteger(), nullable=True),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default=sa.text("'open'"), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=True),
        sa.Column("requested_at", _tz(), server_default=sa.text("now()"), nullable=False),
        sa.Column("served_at", _tz(), nullable=True),
        sa.CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="ck_scsync_blob_requests_sha256"),
        sa.CheckConstraint("state IN ('open', 'served')", name="ck_scsync_blob_requests_state"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_scsync_blob_requests_site_state", "scsync_blob_requests", ["site_id", "state"]
    )
    for table in ("images", "captures", "project_files"):
        op.create_index(f"ix_{table}_site_blob", table, ["site_id", "blob_sha256"])
    run_sql_file("r0004_files_cloud.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0004_files_cloud_drop.sql")
    for table in ("images", "captures", "project_files"):
        op.drop_index(f"ix_{table}_site_blob", table_name=table)
    op.drop_index("ix_scsync_blob_requests_site_state", table_name="scsync_blob_requests")
    op.drop_table("scsync_blob_requests")
    op.drop_table("scsync_blobs")
