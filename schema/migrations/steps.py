"""Migration steps written once, the side a parameter: the version files of both sides
(``local/versions``, ``cloud/versions``) keep their revision ids and call these. The
runner passes ``side`` to every step (``schema/migrations/runner.py``).
"""

from __future__ import annotations

from schema.sql import restore_functions, run_sql_file
from schema.tables_types import Side


def lean_capture_upgrade(side: Side) -> None:
    """0012: statement-level capture, sequence revisions, block-reserved Snowflake ids,
    no NOTIFY in any trigger (schema/sql/r0012_lean_capture.sql)."""
    run_sql_file("r0012_lean_capture.sql")
    if side == "cloud":
        run_sql_file("r0012_lean_capture_cloud.sql")


def lean_capture_downgrade(side: Side) -> None:
    """0012 undone: the earlier definitions are named by their files, not restated."""
    run_sql_file("r0012_lean_capture_drop.sql")
    restore_functions("r0001_functions.sql", "scsync_snowflake")
    restore_functions("r0005_api.sql", "scsync_api_publish", "scsync_api_attach")
    restore_functions(
        "r0006_capture_perf.sql",
        "scsync_capture_attach",
        "scsync_register_table",
        "scsync_unregister_table",
    )
    if side == "cloud":
        restore_functions("r0003_lockd_leases.sql", "scsync_lockd_emit")
    run_sql_file("r0012_lean_capture_reattach.sql")
