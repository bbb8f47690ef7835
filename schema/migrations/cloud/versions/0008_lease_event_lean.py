"""lease_event_lean: the lease-event trigger (0005) takes the patient id without a
subtransaction and without serialising the record (schema/sql/r0008_lease_event_lean.sql).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

from schema.sql import run_sql_file

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0008_lease_event_lean.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0008_lease_event_lean_drop.sql")
