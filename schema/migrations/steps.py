"""Migration steps written once, the side a parameter: the version files of both sides
(``local/versions``, ``cloud/versions``) keep their revision ids and call these. The
runner passes ``side`` to every step (``schema/migrations/runner.py``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def wal_capture_upgrade(side: Side) -> None:
    """0013: where a database's own changes are captured from (``scsync_node.capture``);
    on a site the WAL capture's state, publication and spool (r0013_wal_capture.sql)."""
    op.add_column(
        "scsync_node",
        sa.Column("capture", sa.Text(), server_default=sa.text("'triggers'"), nullable=False),
    )
    op.create_check_constraint(
        "ck_scsync_node_capture", "scsync_node", "capture IN ('triggers', 'wal')"
    )
    if side != "local":
        return
    op.create_table(
        "scsync_capture_state",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("slot_name", sa.Text(), nullable=True),
        sa.Column("spooled_lsn", sa.Text(), nullable=True),
        sa.Column(
            "capture_since",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("singleton", name="ck_scsync_capture_state_singleton"),
        sa.PrimaryKeyConstraint("singleton"),
    )
    op.execute("INSERT INTO scsync_capture_state (singleton) VALUES (true)")
    run_sql_file("r0013_wal_capture.sql")


def wal_capture_downgrade(side: Side) -> None:
    if side == "local":
        run_sql_file("r0013_wal_capture_drop.sql")
        restore_functions("r0012_lean_capture.sql", "scsync_register_table")
        op.drop_table("scsync_capture_state")
    op.drop_constraint("ck_scsync_node_capture", "scsync_node")
    op.drop_column("scsync_node", "capture")
