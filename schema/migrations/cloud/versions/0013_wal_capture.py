"""WAL capture on a site: on the cloud only scsync_node.capture (always 'triggers': the
cloud's outbox is written by the statement-level triggers of 0012)
(schema/migrations/steps.py).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

from schema.migrations import steps

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    steps.wal_capture_upgrade("cloud")


def downgrade(**kw: Any) -> None:
    steps.wal_capture_downgrade("cloud")
