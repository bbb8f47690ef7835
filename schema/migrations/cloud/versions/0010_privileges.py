"""privileges: PUBLIC executes no app function (now or later); only their owner, the
app's own role, calls them (schema/sql/r0010_privileges*.sql).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

from schema.sql import run_sql_file

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0010_privileges.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0010_privileges_drop.sql")
