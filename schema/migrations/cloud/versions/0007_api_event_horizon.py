"""api_event_horizon: each API event records its transaction and the oldest transaction
running at its insert, so a replay after an event id also sends events that committed
late with a lower id (schema/sql/r0007_api_event_horizon.sql).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

from schema.sql import run_sql_file

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0007_api_event_horizon.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0007_api_event_horizon_drop.sql")
