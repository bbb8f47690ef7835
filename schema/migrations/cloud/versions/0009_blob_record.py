"""blob_record: one function records a verified upload (blob, its rows, requests,
events) in one call (schema/sql/r0009_blob_record.sql).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

from schema.sql import run_sql_file

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0009_blob_record.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0009_blob_record_drop.sql")
