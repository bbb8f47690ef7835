"""lean capture: revisions from a sequence, Snowflake ids locked once per block, the
capture and the API events as statement-level triggers, no NOTIFY in any trigger
(schema/sql/r0012_lean_capture.sql).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

from schema.migrations import steps

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    steps.lean_capture_upgrade("cloud")


def downgrade(**kw: Any) -> None:
    steps.lean_capture_downgrade("cloud")
