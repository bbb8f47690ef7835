"""Initial local schema: synced tables, outbox, inbox, cursors, history, conflicts.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schema.sql import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("scsync_snowflake_state", start=0, minvalue=0)))
    # Functions first: every id column defaults to scsync_snowflake().
    run_sql_file("r0001_functions.sql")
    op.create_table(
        "doctors",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("license_no", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_doctors_site_updated", "doctors", ["site_id", "updated_at"], unique=False)
    op.create_table(
        "patients",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("patient_code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_patients_site_updated", "patients", ["site_id", "updated_at"], unique=False)
    op.create_table(
        "report_templates",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_report_templates_site_updated",
        "report_templates",
        ["site_id", "updated_at"],
        unique=False,
    )
    op.create_table(
        "scsync_conflicts",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("base_revision", sa.BigInteger(), nullable=True),
        sa.Column("local_revision", sa.BigInteger(), nullable=True),
        sa.Column("cloud_revision", sa.BigInteger(), nullable=True),
        sa.Column("local_row", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("cloud_row", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("detected_on", sa.Text(), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.Column("status", sa.Text(), server_default=sa.text("'open'"), nullable=False),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("resolved_by", sa.Text(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "detected_on IN ('local', 'cloud')", name="ck_scsync_conflicts_detected_on"
        ),
        sa.CheckConstraint(
            "resolution IS NULL OR resolution IN ('local', 'cloud')",
            name="ck_scsync_conflicts_resolution",
        ),
        sa.CheckConstraint("status IN ('open', 'resolved')", name="ck_scsync_conflicts_status"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_scsync_conflicts_record", "scsync_conflicts", ["table_name", "row_id"], unique=False
    )
    op.create_table(
        "scsync_history",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("version_major", sa.Integer(), nullable=False),
        sa.Column("version_minor", sa.Integer(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("row_data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column(
            "saved_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("table_name", "row_id", "revision", name="uq_scsync_history_revision"),
    )
    op.create_table(
        "scsync_inbox",
        sa.Column("lane", sa.Text(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.BigInteger(), nullable=False),
        sa.Column("source_seqs", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column(
            "applied_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_inbox_lane"),
        sa.PrimaryKeyConstraint("lane", "site_id", "batch_id"),
    )
    op.create_table(
        "scsync_node",
        sa.Column("singleton", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("side", sa.Text(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column(
            "configured_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("side IN ('local', 'cloud')", name="ck_scsync_node_side"),
        sa.CheckConstraint("node_id BETWEEN 0 AND 4095", name="ck_scsync_node_node_id"),
        sa.CheckConstraint("singleton", name="ck_scsync_node_singleton"),
        sa.PrimaryKeyConstraint("singleton"),
    )
    op.create_table(
        "scsync_outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("op", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "txid", sa.Text(), server_default=sa.text("pg_current_xact_id()::text"), nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("clock_timestamp()"),
            nullable=False,
        ),
        sa.CheckConstraint("op IN ('I', 'U', 'D')", name="ck_scsync_outbox_op"),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index("ix_scsync_outbox_site_seq", "scsync_outbox", ["site_id", "seq"], unique=False)
    op.create_table(
        "scsync_replication_cursor",
        sa.Column("lane", sa.Text(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("last_batch_id", sa.BigInteger(), nullable=True),
        sa.Column("last_applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_source_commit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows_applied", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("peer_schema_revision", sa.Text(), nullable=True),
        sa.CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_cursor_lane"),
        sa.PrimaryKeyConstraint("lane", "site_id"),
    )
    op.create_table(
        "scsync_synced_tables",
        sa.Column("table_name", sa.Text(), nullable=False),
        sa.Column("file_column", sa.Text(), nullable=True),
        sa.Column(
            "registered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("table_name"),
    )
    op.create_table(
        "settings",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column(
            "value",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'null'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site_id", "key", name="uq_settings_site_key"),
    )
    op.create_index("ix_settings_site_updated", "settings", ["site_id", "updated_at"], unique=False)
    op.create_table(
        "images",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("patient_id", sa.BigInteger(), nullable=False),
        sa.Column("doctor_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), server_default=sa.text("'2d'"), nullable=False),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column(
            "tags",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("blob_sha256", sa.Text(), nullable=True),
        sa.Column("blob_size", sa.BigInteger(), nullable=True),
        sa.Column("blob_state", sa.Text(), server_default=sa.text("'present'"), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "blob_sha256 IS NULL OR blob_sha256 ~ '^[0-9a-f]{64}$'", name="ck_images_blob_sha256"
        ),
        sa.CheckConstraint(
            "blob_state IN ('present', 'pending', 'remote')", name="ck_images_blob_state"
        ),
        sa.CheckConstraint("kind IN ('2d', '3d')", name="ck_images_kind"),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctors.id"], initially="DEFERRED", deferrable=True
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], initially="DEFERRED", deferrable=True
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_images_site_updated", "images", ["site_id", "updated_at"], unique=False)
    op.create_table(
        "user_accounts",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), server_default=sa.text("'viewer'"), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("doctor_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctors.id"], initially="DEFERRED", deferrable=True
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("site_id", "username", name="uq_user_accounts_site_username"),
    )
    op.create_index(
        "ix_user_accounts_site_updated", "user_accounts", ["site_id", "updated_at"], unique=False
    )
    op.create_table(
        "captures",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("patient_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("blob_sha256", sa.Text(), nullable=True),
        sa.Column("blob_size", sa.BigInteger(), nullable=True),
        sa.Column("blob_state", sa.Text(), server_default=sa.text("'present'"), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "blob_sha256 IS NULL OR blob_sha256 ~ '^[0-9a-f]{64}$'", name="ck_captures_blob_sha256"
        ),
        sa.CheckConstraint(
            "blob_state IN ('present', 'pending', 'remote')", name="ck_captures_blob_state"
        ),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], initially="DEFERRED", deferrable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], initially="DEFERRED", deferrable=True
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_captures_site_updated", "captures", ["site_id", "updated_at"], unique=False)
    op.create_table(
        "project_files",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("patient_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("blob_sha256", sa.Text(), nullable=True),
        sa.Column("blob_size", sa.BigInteger(), nullable=True),
        sa.Column("blob_state", sa.Text(), server_default=sa.text("'present'"), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "blob_sha256 IS NULL OR blob_sha256 ~ '^[0-9a-f]{64}$'",
            name="ck_project_files_blob_sha256",
        ),
        sa.CheckConstraint(
            "blob_state IN ('present', 'pending', 'remote')", name="ck_project_files_blob_state"
        ),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], initially="DEFERRED", deferrable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], initially="DEFERRED", deferrable=True
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_project_files_site_updated", "project_files", ["site_id", "updated_at"], unique=False
    )
    op.create_table(
        "reports",
        sa.Column(
            "id", sa.BigInteger(), server_default=sa.text("scsync_snowflake()"), nullable=False
        ),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("version_major", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("version_minor", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "revision",
            sa.BigInteger(),
            nullable=False,
        ),
        sa.Column("synced_revision", sa.BigInteger(), nullable=True),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sync_enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("in_conflict", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("patient_id", sa.BigInteger(), nullable=False),
        sa.Column("image_id", sa.BigInteger(), nullable=True),
        sa.Column("doctor_id", sa.BigInteger(), nullable=True),
        sa.Column("template_id", sa.BigInteger(), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctors.id"], initially="DEFERRED", deferrable=True
        ),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], initially="DEFERRED", deferrable=True),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], initially="DEFERRED", deferrable=True
        ),
        sa.ForeignKeyConstraint(
            ["template_id"], ["report_templates.id"], initially="DEFERRED", deferrable=True
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reports_site_updated", "reports", ["site_id", "updated_at"], unique=False)
    run_sql_file("r0001_register.sql")


def downgrade(**kw: Any) -> None:
    op.drop_index("ix_reports_site_updated", table_name="reports")
    op.drop_table("reports")
    op.drop_index("ix_project_files_site_updated", table_name="project_files")
    op.drop_table("project_files")
    op.drop_index("ix_captures_site_updated", table_name="captures")
    op.drop_table("captures")
    op.drop_index("ix_user_accounts_site_updated", table_name="user_accounts")
    op.drop_table("user_accounts")
    op.drop_index("ix_images_site_updated", table_name="images")
    op.drop_table("images")
    op.drop_index("ix_settings_site_updated", table_name="settings")
    op.drop_table("settings")
    op.drop_table("scsync_synced_tables")
    op.drop_table("scsync_replication_cursor")
    op.drop_index("ix_scsync_outbox_site_seq", table_name="scsync_outbox")
    op.drop_table("scsync_outbox")
    op.drop_table("scsync_node")
    op.drop_table("scsync_inbox")
    op.drop_table("scsync_history")
    op.drop_index("ix_scsync_conflicts_record", table_name="scsync_conflicts")
    op.drop_table("scsync_conflicts")
    op.drop_index("ix_report_templates_site_updated", table_name="report_templates")
    op.drop_table("report_templates")
    op.drop_index("ix_patients_site_updated", table_name="patients")
    op.drop_table("patients")
    op.drop_index("ix_doctors_site_updated", table_name="doctors")
    op.drop_table("doctors")
    run_sql_file("r0001_drop_functions.sql")
    op.execute(sa.schema.DropSequence(sa.Sequence("scsync_snowflake_state")))
