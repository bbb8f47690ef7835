"""capture_perf: the revision stamp is not called for replicated writes, the capture
not for bookkeeping-only updates (trigger WHEN clauses).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

from schema.sql import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0006_capture_perf.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0006_capture_perf_drop.sql")
