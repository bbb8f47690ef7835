"""api: API event log and the RabbitMQ relay cursor; record and lease event triggers.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schema.sql import run_sql_file

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.create_table(
        "scsync_api_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=True),
        sa.Column("row_id", sa.BigInteger(), nullable=True),
        sa.Column("patient_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_scsync_api_events_site_id", "scsync_api_events", ["site_id", "id"], unique=False
    )
    op.create_index("ix_scsync_api_events_at", "scsync_api_events", ["at"], unique=False)
    op.create_table(
        "scsync_api_relay",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "scsync_token_versions",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("key", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('account', 'site')", name="ck_scsync_token_versions_kind"),
        sa.PrimaryKeyConstraint("kind", "key"),
    )
    run_sql_file("r0005_api.sql")
    run_sql_file("r0005_api_cloud.sql")


def downgrade(**kw: Any) -> None:
    op.drop_table("scsync_token_versions")
    run_sql_file("r0005_api_cloud_drop.sql")
    run_sql_file("r0005_api_drop.sql")
    op.drop_table("scsync_api_relay")
    op.drop_table("scsync_api_events")
