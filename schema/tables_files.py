"""The files tables (part of the baseline migration on each side).

Local: the site's scope policy and explicit selection, the journal of multipart
uploads in flight (so a restarted replicator resumes without re-sending finished
parts) and the backfill's control row. Cloud: the blobs known per site (recorded
as uploaded only after the cloud verified size and sha256) and on-demand requests.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from schema.tables_types import Side

SCOPE_MODES: Final = ("all", "selective")
OLD_DATA_OPTIONS: Final = ("keep", "delete", "backup")
BACKFILL_STATES: Final = ("idle", "running", "paused", "done")
CLOUD_BLOB_STATES: Final = ("pending", "uploaded", "deleted")
REQUEST_STATES: Final = ("open", "served")
SHA256_CHECK: Final = "sha256 ~ '^[0-9a-f]{64}$'"


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _tz() -> DateTime:
    return DateTime(timezone=True)


FILE_TABLES: Final = ("images", "captures", "project_files")


def add_tables(md: MetaData, side: Side) -> None:
    """Declare this area's tables/columns on `md` for `side`; the migration builds them."""
    if side == "local":
        _add_local(md)
    else:
        _add_cloud(md)
    # Blobs are looked up by content on both sides (dedupe, on-demand requests, marking
    # the rows of a blob just verified): without these every lookup scans the table.
    for name in FILE_TABLES:
        t = md.tables[name]
        Index(f"ix_{name}_site_blob", t.c.site_id, t.c.blob_sha256)


def _add_local(md: MetaData) -> None:
    Table(
        "scsync_file_policy",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("mode", Text, nullable=False, server_default=text("'all'")),
        Column("tables", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("modalities", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        Column("since_date", Date),
        Column("last_days", Integer),
        Column("old_data", Text, nullable=False, server_default=text("'keep'")),
        Column("updated_at", _tz(), nullable=False, server_default=text("now()")),
        CheckConstraint("singleton", name="ck_scsync_file_policy_singleton"),
        CheckConstraint(_in("mode", SCOPE_MODES), name="ck_scsync_file_policy_mode"),
        CheckConstraint(_in("old_data", OLD_DATA_OPTIONS), name="ck_scsync_file_policy_old"),
        CheckConstraint("last_days IS NULL OR last_days > 0", name="ck_scsync_file_policy_days"),
    )
    Table(
        "scsync_file_selection",
        md,
        Column("table_name", Text, primary_key=True),
        Column("row_id", BigInteger, primary_key=True),
        Column("selected_at", _tz(), nullable=False, server_default=text("now()")),
    )
    Table(
        "scsync_uploads",
        md,
        Column("sha256", Text, primary_key=True),
        Column("upload_id", Text, nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("part_size", BigInteger, nullable=False),
        Column("started_at", _tz(), nullable=False, server_default=text("now()")),
        CheckConstraint(SHA256_CHECK, name="ck_scsync_uploads_sha256"),
    )
    Table(
        "scsync_upload_parts",
        md,
        Column(
            "sha256",
            Text,
            ForeignKey("scsync_uploads.sha256", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("part_number", Integer, primary_key=True),
        Column("etag", Text, nullable=False),
        Column("size", BigInteger, nullable=False),
    )
    Table(
        "scsync_backfill",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("state", Text, nullable=False, server_default=text("'idle'")),
        Column("rows_per_s", Integer),
        Column("bytes_per_s", BigInteger),
        Column("rows_total", BigInteger, nullable=False, server_default=text("0")),
        Column("bytes_total", BigInteger, nullable=False, server_default=text("0")),
        Column("rows_done", BigInteger, nullable=False, server_default=text("0")),
        Column("bytes_done", BigInteger, nullable=False, server_default=text("0")),
        Column("run_started_at", _tz()),
        Column("run_rows", BigInteger, nullable=False, server_default=text("0")),
        Column("run_bytes", BigInteger, nullable=False, server_default=text("0")),
        Column("updated_at", _tz(), nullable=False, server_default=text("now()")),
        CheckConstraint("singleton", name="ck_scsync_backfill_singleton"),
        CheckConstraint(_in("state", BACKFILL_STATES), name="ck_scsync_backfill_state"),
    )


def _add_cloud(md: MetaData) -> None:
    Table(
        "scsync_blobs",
        md,
        Column("site_id", Integer, primary_key=True),
        Column("sha256", Text, primary_key=True),
        Column("size", BigInteger, nullable=False),
        Column("state", Text, nullable=False, server_default=text("'pending'")),
        Column("upload_id", Text),
        Column("created_at", _tz(), nullable=False, server_default=text("now()")),
        Column("uploaded_at", _tz()),
        CheckConstraint(SHA256_CHECK, name="ck_scsync_blobs_sha256"),
        CheckConstraint(_in("state", CLOUD_BLOB_STATES), name="ck_scsync_blobs_state"),
        CheckConstraint("size >= 0", name="ck_scsync_blobs_size"),
    )
    Table(
        "scsync_blob_requests",
        md,
        Column("id", BigInteger, Identity(always=False), primary_key=True),
        Column("site_id", Integer, nullable=False),
        Column("sha256", Text, nullable=False),
        Column("table_name", Text),
        Column("row_id", BigInteger),
        Column("requested_by", Text, nullable=False),
        Column("state", Text, nullable=False, server_default=text("'open'")),
        Column("detail", JSONB),
        Column("requested_at", _tz(), nullable=False, server_default=text("now()")),
        Column("served_at", _tz()),
        CheckConstraint(SHA256_CHECK, name="ck_scsync_blob_requests_sha256"),
        CheckConstraint(_in("state", REQUEST_STATES), name="ck_scsync_blob_requests_state"),
        Index("ix_scsync_blob_requests_site_state", "site_id", "state"),
    )
