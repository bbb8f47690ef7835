"""lean capture: revisions from a sequence, Snowflake ids locked once per block, the
capture and the API events as statement-level triggers, no NOTIFY in any trigger
(schema/sql/r0012_lean_capture.sql).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

from schema.sql import restore_functions, run_sql_file

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    run_sql_file("r0012_lean_capture.sql")


def downgrade(**kw: Any) -> None:
    run_sql_file("r0012_lean_capture_drop.sql")
    restore_functions("r0001_functions.sql", "scsync_snowflake")
    restore_functions("r0005_api.sql", "scsync_api_publish", "scsync_api_attach")
    restore_functions(
        "r0006_capture_perf.sql",
        "scsync_capture_attach",
        "scsync_register_table",
        "scsync_unregister_table",
    )
    run_sql_file("r0012_lean_capture_reattach.sql")
