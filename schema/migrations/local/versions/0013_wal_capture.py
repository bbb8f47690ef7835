"""WAL capture on a site (opt-in: the replicator's setting capture = "wal"): the state of
the replicator's slot, scsync_node.capture, the publication scsync_capture and the
spool that writes the decoded changes into history and outbox
(schema/migrations/steps.py, schema/sql/r0013_wal_capture.sql, replicator/wal.py).

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
    steps.wal_capture_upgrade("local")


def downgrade(**kw: Any) -> None:
    steps.wal_capture_downgrade("local")
