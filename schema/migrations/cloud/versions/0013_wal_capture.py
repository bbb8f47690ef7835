"""WAL capture on a site: on the cloud only scsync_node.capture (always 'triggers': the
cloud's outbox is written by the statement-level triggers of 0012), so that both sides
share the column and the revision numbers.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

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


def downgrade(**kw: Any) -> None:
    op.drop_constraint("ck_scsync_node_capture", "scsync_node")
    op.drop_column("scsync_node", "capture")
