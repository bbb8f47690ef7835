"""sync API: sites reach the cloud only through the cloud API. The lane leases (a row
with a TTL per site and lane, renewed by each request of its holder) replace the
session advisory lock a site held on this database; the site roles, their grants, the
row-level security policies for them and the group role scsync_site go
(schema/sql/r0011_sync_api_cloud.sql).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from schema.sql import run_sql_file

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.create_table(
        "scsync_lane_leases",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("lane", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_lane_leases_lane"),
        sa.PrimaryKeyConstraint("site_id", "lane"),
    )
    run_sql_file("r0011_sync_api_cloud.sql")


def downgrade(**kw: Any) -> None:
    # The site roles are not brought back: a site that needs the database again is
    # registered anew (and its replicator is of the release before this one).
    run_sql_file("r0011_sync_api_cloud_drop.sql")
    op.drop_table("scsync_lane_leases")
