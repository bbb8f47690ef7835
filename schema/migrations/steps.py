"""Migration steps written once, the side a parameter: the version files of both sides
(``local/versions``, ``cloud/versions``) hold only their revision id and side, and take
their ``upgrade``/``downgrade`` from here (``baseline(side)``).

The baseline (revision 0001) makes the whole schema of a side: the tables below (a frozen
description: ``schema/tables.py`` is the live one, which later revisions move towards),
and the SQL of ``schema/sql/baseline_<topic>.sql`` followed by
``baseline_<topic>_<side>.sql`` where a side has a part of its own. Its downgrade drops
everything. What the baseline makes, object by object, is
``schema/sql/current_<side>.sql`` (``tests/test_schema_dump.py``).

A later revision adds a step here and its SQL in ``schema/sql/r<NNNN>_<name>.sql``;
functions and triggers are replaceable objects: a downgrade that puts back an earlier
definition names it (``schema.sql.restore_functions``) rather than retyping it.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from schema.sql import restore_functions, run_sql_file
from schema.tables_types import Side

# ---------------------------------------------------------------------------------------
# The baseline's tables.

_TEXT, _INT, _BIGINT, _BOOL = sa.Text, sa.Integer, sa.BigInteger, sa.Boolean
_DATE, _UUID, _JSONB = sa.Date, postgresql.UUID, postgresql.JSONB


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _col(
    name: str, type_: Any, default: str | None = None, *, null: bool = False
) -> sa.Column[Any]:
    """A column, NOT NULL unless ``null``; ``default`` is SQL."""
    return sa.Column(
        name,
        type_() if isinstance(type_, type) else type_,
        server_default=sa.text(default) if default is not None else None,
        nullable=null,
    )


def _opt(name: str, type_: Any, default: str | None = None) -> sa.Column[Any]:
    return _col(name, type_, default, null=True)


def _identity(name: str, type_: Any = _BIGINT) -> sa.Column[Any]:
    return sa.Column(name, type_(), sa.Identity(always=False), nullable=False)


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _check(table: str, name: str, sql: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(sql, name=f"ck_{table}_{name}")


def _ref(column: str, target: str) -> sa.ForeignKeyConstraint:
    """A reference between synced tables: deferred, so that one replicated batch may
    carry parent and child in any order."""
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], deferrable=True, initially="DEFERRED"
    )


_LANES = ("push", "pull")
_SHA256 = "sha256 ~ '^[0-9a-f]{64}$'"


def _synced(md: sa.MetaData, side: Side, name: str, *items: Any, files: bool = False) -> sa.Table:
    """A synced table: the standard columns (and the cloud's lifecycle), its own columns
    and constraints, and with ``files`` the file columns (and the site's local path)."""
    standard: list[Any] = [
        _col("id", _BIGINT, "scsync_snowflake()"),
        _col("site_id", _INT),
        _col("version_major", _INT, "1"),
        _col("version_minor", _INT, "0"),
        _col("revision", _BIGINT),
        _opt("synced_revision", _BIGINT),
        sa.Column(
            "synced",
            sa.Boolean(),
            sa.Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
            nullable=True,
        ),
        _opt("last_synced_at", _ts()),
        _col("deleted", _BOOL, "false"),
        _col("sync_enabled", _BOOL, "true"),
        _col("in_conflict", _BOOL, "false"),
        _col("created_at", _ts(), "now()"),
        _col("updated_at", _ts(), "now()"),
    ]
    own = [c for c in items if isinstance(c, sa.Column)]
    rest = [c for c in items if not isinstance(c, sa.Column)]
    if side == "cloud":
        standard.append(_col("lifecycle", _TEXT, "'active'"))
        rest.append(_check(name, "lifecycle", _in("lifecycle", "active", "deleted", "backed_up")))
    if files:
        here = "present" if side == "local" else "uploaded"
        own += [
            _opt("blob_sha256", _TEXT),
            _opt("blob_size", _BIGINT),
            _col("blob_state", _TEXT, f"'{here}'"),
            _opt("file_name", _TEXT),
            _opt("content_type", _TEXT),
        ]
        if side == "local":
            own.append(_opt("local_path", _TEXT))
        rest += [
            _check(name, "blob_sha256", f"blob_sha256 IS NULL OR blob_{_SHA256}"),
            _check(name, "blob_state", _in("blob_state", here, "pending", "remote")),
            sa.Index(f"ix_{name}_site_blob", "site_id", "blob_sha256"),
        ]
    return sa.Table(
        name,
        md,
        *standard,
        *own,
        sa.PrimaryKeyConstraint("id"),
        sa.Index(f"ix_{name}_site_updated", "site_id", "updated_at"),
        *rest,
    )


def baseline_metadata(side: Side) -> sa.MetaData:
    """The tables, indexes and sequences of the baseline of ``side``."""
    md = sa.MetaData()
    cloud, local = side == "cloud", side == "local"
    if cloud:
        sa.Sequence("scsync_fencing_token", start=1, metadata=md)

    # Synced tables (the same columns on both sides but for the side's own).
    _synced(md, side, "doctors", _col("name", _TEXT), _opt("license_no", _TEXT),
            _opt("email", _TEXT), _opt("phone", _TEXT))  # fmt: skip
    _synced(md, side, "patients", _col("patient_code", _TEXT), _col("name", _TEXT),
            _opt("birth_date", _DATE), _opt("sex", _TEXT), _opt("phone", _TEXT),
            _opt("notes", _TEXT))  # fmt: skip
    _synced(md, side, "report_templates", _col("name", _TEXT), _col("body", _TEXT, "''"))
    _synced(md, side, "settings", _col("key", _TEXT), _col("value", _JSONB, "'null'::jsonb"),
            sa.UniqueConstraint("site_id", "key", name="uq_settings_site_key"))  # fmt: skip
    _synced(md, side, "images", _col("patient_id", _BIGINT), _opt("doctor_id", _BIGINT),
            _col("kind", _TEXT, "'2d'"), _opt("modality", _TEXT), _opt("study_date", _DATE),
            _opt("description", _TEXT), _col("tags", _JSONB, "'[]'::jsonb"),
            _check("images", "kind", _in("kind", "2d", "3d")),
            _ref("doctor_id", "doctors"), _ref("patient_id", "patients"), files=True)  # fmt: skip
    _synced(md, side, "user_accounts", _col("username", _TEXT), _col("password_hash", _TEXT),
            _col("role", _TEXT, "'viewer'"), _opt("display_name", _TEXT),
            _opt("doctor_id", _BIGINT), _ref("doctor_id", "doctors"),
            sa.UniqueConstraint("site_id", "username",
                                name="uq_user_accounts_site_username"))  # fmt: skip
    _synced(md, side, "captures", _col("patient_id", _BIGINT), _opt("image_id", _BIGINT),
            _opt("description", _TEXT), _ref("image_id", "images"),
            _ref("patient_id", "patients"), files=True)  # fmt: skip
    _synced(md, side, "project_files", _col("patient_id", _BIGINT), _opt("image_id", _BIGINT),
            _col("name", _TEXT), _opt("kind", _TEXT), _ref("image_id", "images"),
            _ref("patient_id", "patients"), files=True)  # fmt: skip
    _synced(md, side, "reports", _col("patient_id", _BIGINT), _opt("image_id", _BIGINT),
            _opt("doctor_id", _BIGINT), _opt("template_id", _BIGINT), _col("title", _TEXT),
            _col("body", _TEXT, "''"), _ref("doctor_id", "doctors"),
            _ref("image_id", "images"), _ref("patient_id", "patients"),
            _ref("template_id", "report_templates"))  # fmt: skip

    # Bookkeeping of both sides.
    sa.Table(
        "scsync_node", md,
        _col("singleton", _BOOL, "true"), _col("node_id", _INT), _col("side", _TEXT),
        _opt("site_id", _INT), _col("configured_at", _ts(), "now()"),
        _col("capture", _TEXT, "'triggers'"),
        _check("scsync_node", "side", _in("side", "local", "cloud")),
        _check("scsync_node", "node_id", "node_id BETWEEN 0 AND 4095"),
        _check("scsync_node", "singleton", "singleton"),
        _check("scsync_node", "capture", _in("capture", "triggers", "wal")),
        sa.PrimaryKeyConstraint("singleton"),
    )  # fmt: skip
    sa.Table(
        "scsync_synced_tables", md,
        _col("table_name", _TEXT), _opt("file_column", _TEXT),
        _col("registered_at", _ts(), "now()"), sa.PrimaryKeyConstraint("table_name"),
    )  # fmt: skip
    sa.Table(
        "scsync_outbox", md,
        _identity("seq"), _col("table_name", _TEXT), _col("row_id", _BIGINT),
        _col("site_id", _INT), _col("op", _TEXT), _col("origin", _TEXT),
        _col("revision", _BIGINT), _opt("synced_revision", _BIGINT),
        _col("txid", _TEXT, "pg_current_xact_id()::text"),
        _col("created_at", _ts(), "clock_timestamp()"),
        _check("scsync_outbox", "op", _in("op", "I", "U", "D")),
        sa.PrimaryKeyConstraint("seq"),
        sa.Index("ix_scsync_outbox_site_seq", "site_id", "seq"),
    )  # fmt: skip
    sa.Table(
        "scsync_inbox", md,
        _col("lane", _TEXT), _col("site_id", _INT), _col("batch_id", _BIGINT),
        _col("source_seqs", _JSONB), _col("row_count", _INT),
        _col("applied_at", _ts(), "clock_timestamp()"),
        _check("scsync_inbox", "lane", _in("lane", *_LANES)),
        sa.PrimaryKeyConstraint("lane", "site_id", "batch_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_replication_cursor", md,
        _col("lane", _TEXT), _col("site_id", _INT), _opt("last_batch_id", _BIGINT),
        _opt("last_applied_at", _ts()), _opt("last_source_commit_at", _ts()),
        _col("rows_applied", _BIGINT, "0"), _opt("peer_schema_revision", _TEXT),
        _check("scsync_cursor", "lane", _in("lane", *_LANES)),
        sa.PrimaryKeyConstraint("lane", "site_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_history", md,
        _identity("seq"), _col("table_name", _TEXT), _col("row_id", _BIGINT),
        _col("site_id", _INT), _col("revision", _BIGINT), _col("version_major", _INT),
        _col("version_minor", _INT), _col("op", _TEXT), _col("row_data", _JSONB),
        _col("origin", _TEXT), _col("saved_at", _ts(), "clock_timestamp()"),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("table_name", "row_id", "revision", name="uq_scsync_history_revision"),
    )  # fmt: skip
    sa.Table(
        "scsync_conflicts", md,
        _col("id", _BIGINT, "scsync_snowflake()"), _col("table_name", _TEXT),
        _col("row_id", _BIGINT), _col("site_id", _INT), _opt("base_revision", _BIGINT),
        _opt("local_revision", _BIGINT), _opt("cloud_revision", _BIGINT),
        _opt("local_row", _JSONB), _opt("cloud_row", _JSONB), _col("detected_on", _TEXT),
        _col("detected_at", _ts(), "clock_timestamp()"), _col("status", _TEXT, "'open'"),
        _opt("resolution", _TEXT), _opt("resolved_by", _TEXT), _opt("resolved_at", _ts()),
        _check("scsync_conflicts", "detected_on", _in("detected_on", "local", "cloud")),
        _check("scsync_conflicts", "resolution",
               f"resolution IS NULL OR {_in('resolution', 'local', 'cloud')}"),
        _check("scsync_conflicts", "status", _in("status", "open", "resolved")),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_scsync_conflicts_record", "table_name", "row_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_dead_letters", md,
        _col("lane", _TEXT), _col("table_name", _TEXT), _col("row_id", _BIGINT),
        _col("site_id", _INT), _opt("revision", _BIGINT), _col("reason", _TEXT),
        _col("attempts", _INT, "1"), _col("first_failed_at", _ts(), "clock_timestamp()"),
        _col("last_failed_at", _ts(), "clock_timestamp()"), _col("next_retry_at", _ts()),
        _check("scsync_dead_letters", "lane", _in("lane", *_LANES)),
        sa.PrimaryKeyConstraint("lane", "table_name", "row_id"),
        sa.Index("ix_scsync_dead_letters_site", "site_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_api_events", md,
        _identity("id"), _col("at", _ts(), "clock_timestamp()"), _opt("site_id", _INT),
        _col("type", _TEXT), _opt("table_name", _TEXT), _opt("row_id", _BIGINT),
        _opt("patient_id", _BIGINT), _col("payload", _JSONB, "'{}'::jsonb"),
        # The writing transaction and the oldest one running (xid8 as bigint): a replay
        # by last_event_id also finds events that committed late below it (docs/api.md).
        _col("txid", _BIGINT, "pg_current_xact_id()::text::bigint"),
        _opt("horizon", _BIGINT, "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_scsync_api_events_site_id", "site_id", "id"),
        sa.Index("ix_scsync_api_events_at", "at"),
        sa.Index("ix_scsync_api_events_txid", "txid"),
    )  # fmt: skip
    sa.Table(
        "scsync_audit", md,
        _identity("seq"), _col("at", _ts(), "clock_timestamp()"), _col("actor", _TEXT),
        _col("side", _TEXT), _opt("site_id", _INT), _col("action", _TEXT),
        _opt("table_name", _TEXT), _opt("row_id", _BIGINT), _opt("detail", _JSONB),
        sa.PrimaryKeyConstraint("seq"),
        sa.Index("ix_scsync_audit_record", "table_name", "row_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_token_versions", md,
        _col("kind", _TEXT), _col("key", _BIGINT), _col("version", _INT, "0"),
        _col("disabled", _BOOL, "false"), _col("changed_at", _ts(), "now()"),
        _check("scsync_token_versions", "kind", _in("kind", "account", "site")),
        sa.PrimaryKeyConstraint("kind", "key"),
    )  # fmt: skip

    if local:
        _local_tables(md)
    if cloud:
        _cloud_tables(md)
    return md


def _local_tables(md: sa.MetaData) -> None:
    sa.Table(
        "scsync_offline_sessions", md,
        sa.Column("session_id", _UUID(), nullable=False), _col("table_name", _TEXT),
        _col("row_id", _BIGINT), _col("site_id", _INT), _col("holder", _TEXT),
        _col("unfenced", _BOOL, "true"), _col("reason", _TEXT),
        _col("base_revision", _BIGINT), _col("base_version_major", _INT),
        _col("base_version_minor", _INT), _col("saves", _INT, "0"),
        _opt("last_saved_revision", _BIGINT), _col("status", _TEXT, "'open'"),
        _col("opened_at", _ts(), "clock_timestamp()"), _opt("closed_at", _ts()),
        _check("scsync_offline_sessions", "unfenced", "unfenced"),
        _check("scsync_offline_sessions", "status", _in("status", "open", "closed")),
        sa.PrimaryKeyConstraint("session_id"),
        sa.Index("ix_scsync_offline_sessions_record", "table_name", "row_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_file_policy", md,
        _col("singleton", _BOOL, "true"), _col("mode", _TEXT, "'all'"),
        _col("tables", _JSONB, "'[]'::jsonb"), _col("modalities", _JSONB, "'[]'::jsonb"),
        _opt("since_date", _DATE), _opt("last_days", _INT), _col("old_data", _TEXT, "'keep'"),
        _col("updated_at", _ts(), "now()"),
        _check("scsync_file_policy", "singleton", "singleton"),
        _check("scsync_file_policy", "mode", _in("mode", "all", "selective")),
        _check("scsync_file_policy", "old", _in("old_data", "keep", "delete", "backup")),
        _check("scsync_file_policy", "days", "last_days IS NULL OR last_days > 0"),
        sa.PrimaryKeyConstraint("singleton"),
    )  # fmt: skip
    sa.Table(
        "scsync_file_selection", md,
        _col("table_name", _TEXT), _col("row_id", _BIGINT),
        _col("selected_at", _ts(), "now()"), sa.PrimaryKeyConstraint("table_name", "row_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_uploads", md,
        _col("sha256", _TEXT), _col("upload_id", _TEXT), _col("size", _BIGINT),
        _col("part_size", _BIGINT), _col("started_at", _ts(), "now()"),
        _check("scsync_uploads", "sha256", _SHA256), sa.PrimaryKeyConstraint("sha256"),
    )  # fmt: skip
    sa.Table(
        "scsync_upload_parts", md,
        _col("sha256", _TEXT), _col("part_number", _INT), _col("etag", _TEXT),
        _col("size", _BIGINT),
        sa.ForeignKeyConstraint(["sha256"], ["scsync_uploads.sha256"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sha256", "part_number"),
    )  # fmt: skip
    sa.Table(
        "scsync_backfill", md,
        _col("singleton", _BOOL, "true"), _col("state", _TEXT, "'idle'"),
        _opt("rows_per_s", _INT), _opt("bytes_per_s", _BIGINT),
        _col("rows_total", _BIGINT, "0"), _col("bytes_total", _BIGINT, "0"),
        _col("rows_done", _BIGINT, "0"), _col("bytes_done", _BIGINT, "0"),
        _opt("run_started_at", _ts()), _col("run_rows", _BIGINT, "0"),
        _col("run_bytes", _BIGINT, "0"), _col("updated_at", _ts(), "now()"),
        _check("scsync_backfill", "singleton", "singleton"),
        _check("scsync_backfill", "state", _in("state", "idle", "running", "paused", "done")),
        sa.PrimaryKeyConstraint("singleton"),
    )  # fmt: skip
    # The WAL capture's state (replicator/wal.py): one row, made by the baseline.
    sa.Table(
        "scsync_capture_state", md,
        _col("singleton", _BOOL, "true"), _opt("slot_name", _TEXT), _opt("spooled_lsn", _TEXT),
        _col("capture_since", _ts(), "clock_timestamp()"), _opt("updated_at", _ts()),
        _check("scsync_capture_state", "singleton", "singleton"),
        sa.PrimaryKeyConstraint("singleton"),
    )  # fmt: skip


def _cloud_tables(md: sa.MetaData) -> None:
    sa.Table(
        "scsync_sites", md,
        sa.Column("site_id", sa.Integer(), sa.Identity(always=False, start=1), nullable=False),
        _col("name", _TEXT), _col("node_id", _INT), _opt("db_role", _TEXT),
        _col("disabled", _BOOL, "false"), _col("created_at", _ts(), "now()"),
        _check("scsync_sites", "node_id", "node_id BETWEEN 1 AND 4095"),
        sa.PrimaryKeyConstraint("site_id"), sa.UniqueConstraint("db_role"),
        sa.UniqueConstraint("name"), sa.UniqueConstraint("node_id"),
    )  # fmt: skip
    sa.Table(
        "scsync_leases", md,
        _col("table_name", _TEXT), _col("row_id", _BIGINT), _col("site_id", _INT),
        sa.Column("lease_id", sa.UUID(), nullable=False), _col("holder", _TEXT),
        _col("token", _BIGINT), _col("version_major", _INT), _col("version_minor", _INT),
        _col("revision", _BIGINT), _col("acquired_at", _ts()), _col("renewed_at", _ts()),
        _col("expires_at", _ts()), _col("last_activity_at", _ts()),
        _opt("idle_warned_at", _ts()), _col("ttl_ms", _INT, "30000"),
        _col("saves", _INT, "0"), _opt("saved_revision", _BIGINT),
        _col("saved_revisions", postgresql.ARRAY(sa.BigInteger()), "'{}'::bigint[]"),
        sa.Column("last_save_id", _UUID(), nullable=True),
        sa.PrimaryKeyConstraint("table_name", "row_id"), sa.UniqueConstraint("lease_id"),
        sa.Index("ix_scsync_leases_expires", "expires_at"),
    )  # fmt: skip
    sa.Table(
        "scsync_lease_events", md,
        _identity("seq"), _col("at", _ts(), "clock_timestamp()"), _col("event", _TEXT),
        _col("table_name", _TEXT), _col("row_id", _BIGINT), _col("site_id", _INT),
        _col("holder", _TEXT), _col("token", _BIGINT),
        sa.Column("lease_id", _UUID(), nullable=False), _opt("detail", _JSONB),
        _check("scsync_lease_events", "event", _in(
            "event", "lease.acquired", "lease.released", "lease.expired", "lease.broken",
            "lease.idle_warning", "lease.idle_closed")),
        sa.PrimaryKeyConstraint("seq"),
        sa.Index("ix_scsync_lease_events_site_seq", "site_id", "seq"),
    )  # fmt: skip
    sa.Table(
        "scsync_blobs", md,
        _col("site_id", _INT), _col("sha256", _TEXT), _col("size", _BIGINT),
        _col("state", _TEXT, "'pending'"), _opt("upload_id", _TEXT),
        _col("created_at", _ts(), "now()"), _opt("uploaded_at", _ts()),
        _check("scsync_blobs", "sha256", _SHA256),
        _check("scsync_blobs", "state", _in("state", "pending", "uploaded", "deleted")),
        _check("scsync_blobs", "size", "size >= 0"),
        sa.PrimaryKeyConstraint("site_id", "sha256"),
    )  # fmt: skip
    sa.Table(
        "scsync_blob_requests", md,
        _identity("id"), _col("site_id", _INT), _col("sha256", _TEXT),
        _opt("table_name", _TEXT), _opt("row_id", _BIGINT), _col("requested_by", _TEXT),
        _col("state", _TEXT, "'open'"), _opt("detail", _JSONB),
        _col("requested_at", _ts(), "now()"), _opt("served_at", _ts()),
        _check("scsync_blob_requests", "sha256", _SHA256),
        _check("scsync_blob_requests", "state", _in("state", "open", "served")),
        sa.PrimaryKeyConstraint("id"),
        sa.Index("ix_scsync_blob_requests_site_state", "site_id", "state"),
    )  # fmt: skip
    sa.Table(
        "scsync_api_relay", md,
        _col("name", _TEXT), _col("last_event_id", _BIGINT, "0"),
        _col("updated_at", _ts(), "now()"), sa.PrimaryKeyConstraint("name"),
    )  # fmt: skip
    sa.Table(
        "scsync_lane_leases", md,
        _col("site_id", _INT), _col("lane", _TEXT), _col("holder", _TEXT),
        _col("expires_at", _ts()),
        _check("scsync_lane_leases", "lane", _in("lane", *_LANES)),
        sa.PrimaryKeyConstraint("site_id", "lane"),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# The baseline's SQL, by topic: baseline_<topic>.sql, then baseline_<topic>_<side>.sql.

_BEFORE_TABLES = ("capture",)  # the tables' ids default to scsync_snowflake()
_AFTER_TABLES = ("register", "replicator", "lockd", "files", "api", "sync_api", "privileges")


def _run_topic(topic: str, side: Side) -> None:
    sql = resources.files("schema.sql")
    if not any(
        sql.joinpath(f"baseline_{topic}{part}.sql").is_file() for part in ("", "_local", "_cloud")
    ):
        raise FileNotFoundError(f"schema/sql has no baseline_{topic}*.sql")
    for name in (f"baseline_{topic}.sql", f"baseline_{topic}_{side}.sql"):
        if sql.joinpath(name).is_file():
            run_sql_file(name)


def baseline_upgrade(side: Side) -> None:
    """0001: the whole schema of ``side``."""
    # As pg_dump does: function bodies are checked when they run, not when made, so each
    # file holds one topic whatever its functions call.
    op.execute("SET LOCAL check_function_bodies = off")
    for topic in _BEFORE_TABLES:
        _run_topic(topic, side)
    baseline_metadata(side).create_all(op.get_bind(), checkfirst=False)
    if side == "local":
        op.execute("INSERT INTO scsync_capture_state (singleton) VALUES (true)")
    for topic in _AFTER_TABLES:
        _run_topic(topic, side)
    op.execute("RESET check_function_bodies")


def baseline_downgrade(side: Side) -> None:
    """0001 undone: an empty database."""
    run_sql_file("baseline_drop.sql")
    baseline_metadata(side).drop_all(op.get_bind(), checkfirst=False)


def baseline(side: Side) -> tuple[Callable[..., None], Callable[..., None]]:
    """The ``upgrade`` and ``downgrade`` of a side's version file for revision 0001."""

    def upgrade(**kw: Any) -> None:
        baseline_upgrade(side)

    def downgrade(**kw: Any) -> None:
        baseline_downgrade(side)

    return upgrade, downgrade


def read_busy_records() -> tuple[Callable[..., None], Callable[..., None]]:
    """0002, both sides: the outbox read finds the records of the batches in flight in
    one hashed set (schema/sql/r0002_read_busy_records.sql)."""

    def upgrade(**kw: Any) -> None:
        run_sql_file("r0002_read_busy_records.sql")

    def downgrade(**kw: Any) -> None:
        restore_functions("baseline_replicator.sql", "scsync_replicator_read")

    return upgrade, downgrade


def wal_direct(side: Side) -> tuple[Callable[..., None], Callable[..., None]]:
    """0003: the site's WAL goes straight to the cloud. Both sides: the cursor keeps the
    source LSN (claimed in the apply's transaction), the outbox read's switch and rows as
    functions of their own; a site's part: the WAL read, no spool
    (schema/sql/r0003_wal_direct*.sql)."""

    def upgrade(**kw: Any) -> None:
        run_sql_file("r0003_wal_direct.sql")
        if side == "local":
            run_sql_file("r0003_wal_direct_local.sql")

    def downgrade(**kw: Any) -> None:
        if side == "local":
            op.execute(
                "DROP FUNCTION scsync_capture_read(text, int, jsonb, jsonb, jsonb, bigint[])"
            )
            op.execute("DROP FUNCTION scsync_capture_wait_visible(bigint[], double precision)")
            op.execute("DROP FUNCTION scsync_capture_requeue(int, jsonb)")
            op.execute("ALTER TABLE scsync_capture_state ADD COLUMN spooled_lsn text")
            restore_functions(
                "baseline_capture_local.sql", "scsync_capture_spool", "scsync_capture_resync"
            )
        restore_functions("r0002_read_busy_records.sql", "scsync_replicator_read")
        op.execute("DROP FUNCTION scsync_history_save(regclass, bigint, text)")
        op.execute("DROP FUNCTION scsync_read_keys_rows(jsonb)")
        op.execute("DROP FUNCTION scsync_read_keys_switch()")
        op.execute("DROP FUNCTION scsync_replicator_claim_lsn(text, int, pg_lsn)")
        op.execute("ALTER TABLE scsync_replication_cursor DROP COLUMN source_lsn")

    return upgrade, downgrade
