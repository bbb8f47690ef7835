"""SQLAlchemy Core description of both databases (local SC Server and the cloud).

The migrations build exactly this; ``tests/test_migrations.py`` proves it. The
same synced tables exist on both sides with the same columns, plus a few columns
of one side only (``local_path`` locally, ``lifecycle`` on the cloud).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from schema import tables_api, tables_files, tables_lockd, tables_replicator
from schema.tables_types import SIDES, PgLsn, Side

__all__ = ["SIDES", "SYNCED_TABLES", "Side", "build_metadata", "metadata_for"]


# Synced tables in dependency order (parents first); the value is the column that
# holds a file, or None. Registration (scsync_register_table) follows this order.
SYNCED_TABLES: Final[dict[str, str | None]] = {
    "doctors": None,
    "patients": None,
    "user_accounts": None,
    "report_templates": None,
    "settings": None,
    "images": "blob_sha256",
    "captures": "blob_sha256",
    "project_files": "blob_sha256",
    "reports": None,
}

SNOWFLAKE_DEFAULT = text("scsync_snowflake()")
NOW = text("now()")
BLOB_STATES: Final[dict[Side, tuple[str, ...]]] = {
    # present: the file is in the local store; pending: row known, file on its way;
    # remote: metadata only, the file is on the other side.
    "local": ("present", "pending", "remote"),
    "cloud": ("uploaded", "pending", "remote"),
}
LIFECYCLES: Final[tuple[str, ...]] = ("active", "deleted", "backed_up")


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _standard_columns(side: Side) -> list[Column[object]]:
    cols: list[Column[object]] = [
        Column("id", BigInteger, primary_key=True, server_default=SNOWFLAKE_DEFAULT),
        Column("site_id", Integer, nullable=False),
        Column("version_major", Integer, nullable=False, server_default=text("1")),
        Column("version_minor", Integer, nullable=False, server_default=text("0")),
        # No default: the capture trigger stamps a fresh Snowflake on every content
        # change, and the replicator writes the revision it carries.
        Column("revision", BigInteger, nullable=False),
        Column("synced_revision", BigInteger),
        Column(
            "synced",
            Boolean,
            Computed("revision IS NOT DISTINCT FROM synced_revision", persisted=True),
        ),
        Column("last_synced_at", _tz()),
        Column("deleted", Boolean, nullable=False, server_default=text("false")),
        Column("sync_enabled", Boolean, nullable=False, server_default=text("true")),
        Column("in_conflict", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", _tz(), nullable=False, server_default=NOW),
        Column("updated_at", _tz(), nullable=False, server_default=NOW),
    ]
    if side == "cloud":
        cols.append(Column("lifecycle", Text, nullable=False, server_default=text("'active'")))
    return cols


def _tz() -> DateTime:
    return DateTime(timezone=True)


def _blob_columns(side: Side) -> list[Column[object]]:
    cols: list[Column[object]] = [
        Column("blob_sha256", Text),
        Column("blob_size", BigInteger),
        Column(
            "blob_state", Text, nullable=False, server_default=text(f"'{BLOB_STATES[side][0]}'")
        ),
        Column("file_name", Text),
        Column("content_type", Text),
    ]
    if side == "local":
        cols.append(Column("local_path", Text))
    return cols


def _synced_table(
    metadata: MetaData,
    side: Side,
    name: str,
    *content: Column[object] | CheckConstraint | UniqueConstraint,
) -> Table:
    file_bearing = SYNCED_TABLES[name] is not None
    extra: list[Column[object] | CheckConstraint | Index | UniqueConstraint] = []
    if side == "cloud":
        extra.append(CheckConstraint(_in("lifecycle", LIFECYCLES), name=f"ck_{name}_lifecycle"))
    if file_bearing:
        extra.append(
            CheckConstraint(_in("blob_state", BLOB_STATES[side]), name=f"ck_{name}_blob_state")
        )
        extra.append(
            CheckConstraint(
                "blob_sha256 IS NULL OR blob_sha256 ~ '^[0-9a-f]{64}$'",
                name=f"ck_{name}_blob_sha256",
            )
        )
    extra.append(Index(f"ix_{name}_site_updated", "site_id", "updated_at"))
    return Table(
        name,
        metadata,
        *_standard_columns(side),
        *content,
        *(_blob_columns(side) if file_bearing else []),
        *extra,
    )


def _fk(target: str, nullable: bool = True) -> Column[object]:
    # Deferred so that a replicated batch may carry a parent and its child in one
    # transaction in any order; ids are global, so the reference holds on both sides.
    return Column(
        f"{target.rstrip('s')}_id",
        BigInteger,
        ForeignKey(f"{target}.id", deferrable=True, initially="DEFERRED"),
        nullable=nullable,
    )


def build_metadata(side: Side) -> MetaData:
    """All tables of one side, as the migrations create them."""
    md = MetaData()
    # --- configuration of this database ------------------------------------------------
    Table(
        "scsync_node",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("node_id", Integer, nullable=False),
        Column("side", Text, nullable=False),
        Column("site_id", Integer),
        Column("configured_at", _tz(), nullable=False, server_default=NOW),
        # Where this database's own changes are captured from: the statement-level
        # triggers, or (a site) the WAL, read by the replicator.
        Column("capture", Text, nullable=False, server_default=text("'triggers'")),
        CheckConstraint("singleton", name="ck_scsync_node_singleton"),
        CheckConstraint("capture IN ('triggers', 'wal')", name="ck_scsync_node_capture"),
        CheckConstraint("node_id BETWEEN 0 AND 4095", name="ck_scsync_node_node_id"),
        CheckConstraint(_in("side", SIDES), name="ck_scsync_node_side"),
    )
    Table(
        "scsync_synced_tables",
        md,
        Column("table_name", Text, primary_key=True),
        Column("file_column", Text),
        Column("registered_at", _tz(), nullable=False, server_default=NOW),
    )
    # --- change capture -------------------------------------------------------------
    Table(
        "scsync_outbox",
        md,
        Column("seq", BigInteger, Identity(always=False), primary_key=True),
        Column("table_name", Text, nullable=False),
        Column("row_id", BigInteger, nullable=False),
        Column("site_id", Integer, nullable=False),
        Column("op", Text, nullable=False),
        Column("origin", Text, nullable=False),
        Column("revision", BigInteger, nullable=False),
        Column("synced_revision", BigInteger),
        # The writing transaction's id: lets a reader reason about visibility
        # (pg_visible_in_snapshot) instead of trusting seq order.
        Column("txid", Text, nullable=False, server_default=text("pg_current_xact_id()::text")),
        Column("created_at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
        CheckConstraint(_in("op", ("I", "U", "D")), name="ck_scsync_outbox_op"),
        Index("ix_scsync_outbox_site_seq", "site_id", "seq"),
    )
    # What the destination has applied, written in the same transaction as the apply.
    # A lane acknowledges a batch at the source (deletes those outbox rows) and then
    # forgets it here; a batch still listed after a crash is acknowledged again, and a
    # redelivered batch whose seqs are listed is skipped.
    Table(
        "scsync_inbox",
        md,
        Column("lane", Text, primary_key=True),
        Column("site_id", Integer, primary_key=True),
        Column("batch_id", BigInteger, primary_key=True),
        Column("source_seqs", JSONB, nullable=False),
        Column("row_count", Integer, nullable=False),
        Column("applied_at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
        CheckConstraint(_in("lane", ("push", "pull")), name="ck_scsync_inbox_lane"),
    )
    # Progress of each lane, for lag metrics and status.
    Table(
        "scsync_replication_cursor",
        md,
        Column("lane", Text, primary_key=True),
        Column("site_id", Integer, primary_key=True),
        Column("last_batch_id", BigInteger),
        Column("last_applied_at", _tz()),
        Column("last_source_commit_at", _tz()),
        Column("rows_applied", BigInteger, nullable=False, server_default=text("0")),
        Column("peer_schema_revision", Text),
        # Revision 0003: the source's position (a WAL batch's end LSN), stored by the
        # apply in its own transaction; a batch at or before it is a replay.
        Column("source_lsn", PgLsn()),
        CheckConstraint(_in("lane", ("push", "pull")), name="ck_scsync_cursor_lane"),
    )
    Table(
        "scsync_history",
        md,
        Column("seq", BigInteger, Identity(always=False), primary_key=True),
        Column("table_name", Text, nullable=False),
        Column("row_id", BigInteger, nullable=False),
        Column("site_id", Integer, nullable=False),
        Column("revision", BigInteger, nullable=False),
        Column("version_major", Integer, nullable=False),
        Column("version_minor", Integer, nullable=False),
        Column("op", Text, nullable=False),
        Column("row_data", JSONB, nullable=False),
        Column("origin", Text, nullable=False),
        Column("saved_at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
        UniqueConstraint("table_name", "row_id", "revision", name="uq_scsync_history_revision"),
    )
    Table(
        "scsync_conflicts",
        md,
        Column("id", BigInteger, primary_key=True, server_default=SNOWFLAKE_DEFAULT),
        Column("table_name", Text, nullable=False),
        Column("row_id", BigInteger, nullable=False),
        Column("site_id", Integer, nullable=False),
        Column("base_revision", BigInteger),
        Column("local_revision", BigInteger),
        Column("cloud_revision", BigInteger),
        Column("local_row", JSONB),
        Column("cloud_row", JSONB),
        Column("detected_on", Text, nullable=False),
        Column("detected_at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
        Column("status", Text, nullable=False, server_default=text("'open'")),
        Column("resolution", Text),
        Column("resolved_by", Text),
        Column("resolved_at", _tz()),
        CheckConstraint(_in("detected_on", SIDES), name="ck_scsync_conflicts_detected_on"),
        CheckConstraint(_in("status", ("open", "resolved")), name="ck_scsync_conflicts_status"),
        CheckConstraint(
            "resolution IS NULL OR " + _in("resolution", SIDES),
            name="ck_scsync_conflicts_resolution",
        ),
        Index("ix_scsync_conflicts_record", "table_name", "row_id"),
    )
    _add_synced_tables(md, side)
    if side == "cloud":
        _add_cloud_tables(md)
    # Each later area declares its own tables in its own module (one per migration).
    for area in (tables_replicator, tables_lockd, tables_files, tables_api):
        area.add_tables(md, side)
    return md


def _add_synced_tables(md: MetaData, side: Side) -> None:
    _synced_table(
        md,
        side,
        "doctors",
        Column("name", Text, nullable=False),
        Column("license_no", Text),
        Column("email", Text),
        Column("phone", Text),
    )
    _synced_table(
        md,
        side,
        "patients",
        Column("patient_code", Text, nullable=False),
        Column("name", Text, nullable=False),
        Column("birth_date", Date),
        Column("sex", Text),
        Column("phone", Text),
        Column("notes", Text),
    )
    _synced_table(
        md,
        side,
        "user_accounts",
        Column("username", Text, nullable=False),
        Column("password_hash", Text, nullable=False),
        Column("role", Text, nullable=False, server_default=text("'viewer'")),
        Column("display_name", Text),
        _fk("doctors"),
        UniqueConstraint("site_id", "username", name="uq_user_accounts_site_username"),
    )
    _synced_table(
        md,
        side,
        "report_templates",
        Column("name", Text, nullable=False),
        Column("body", Text, nullable=False, server_default=text("''")),
    )
    _synced_table(
        md,
        side,
        "settings",
        Column("key", Text, nullable=False),
        Column("value", JSONB, nullable=False, server_default=text("'null'::jsonb")),
        UniqueConstraint("site_id", "key", name="uq_settings_site_key"),
    )
    _synced_table(
        md,
        side,
        "images",
        _fk("patients", nullable=False),
        _fk("doctors"),
        Column("kind", Text, nullable=False, server_default=text("'2d'")),
        Column("modality", Text),
        Column("study_date", Date),
        Column("description", Text),
        Column("tags", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
        CheckConstraint(_in("kind", ("2d", "3d")), name="ck_images_kind"),
    )
    _synced_table(
        md,
        side,
        "captures",
        _fk("patients", nullable=False),
        _fk("images"),
        Column("description", Text),
    )
    _synced_table(
        md,
        side,
        "project_files",
        _fk("patients", nullable=False),
        _fk("images"),
        Column("name", Text, nullable=False),
        Column("kind", Text),
    )
    _synced_table(
        md,
        side,
        "reports",
        _fk("patients", nullable=False),
        _fk("images"),
        _fk("doctors"),
        Column(
            "template_id",
            BigInteger,
            ForeignKey("report_templates.id", deferrable=True, initially="DEFERRED"),
        ),
        Column("title", Text, nullable=False),
        Column("body", Text, nullable=False, server_default=text("''")),
    )


def _add_cloud_tables(md: MetaData) -> None:
    Table(
        "scsync_sites",
        md,
        Column("site_id", Integer, Identity(always=False, start=1), primary_key=True),
        Column("name", Text, nullable=False, unique=True),
        Column("node_id", Integer, nullable=False, unique=True),
        Column("db_role", Text, unique=True),
        Column("disabled", Boolean, nullable=False, server_default=text("false")),
        Column("created_at", _tz(), nullable=False, server_default=NOW),
        CheckConstraint("node_id BETWEEN 1 AND 4095", name="ck_scsync_sites_node_id"),
    )
    # Which replicator runs a lane of a site (revision 0011): renewed by each request of
    # its holder through the cloud API, lapsing ttl seconds after the last one.
    Table(
        "scsync_lane_leases",
        md,
        Column("site_id", Integer, primary_key=True),
        Column("lane", Text, primary_key=True),
        Column("holder", Text, nullable=False),
        Column("expires_at", _tz(), nullable=False),
        CheckConstraint("lane IN ('push', 'pull')", name="ck_scsync_lane_leases_lane"),
    )
    Sequence("scsync_fencing_token", start=1, metadata=md)
    # One row per record at most: the constraint is the primary key. A lease that has
    # expired stays until the next acquire replaces it or the sweeper removes it.
    Table(
        "scsync_leases",
        md,
        Column("table_name", Text, primary_key=True),
        Column("row_id", BigInteger, primary_key=True),
        Column("site_id", Integer, nullable=False),
        Column("lease_id", UUID(as_uuid=True), nullable=False, unique=True),
        Column("holder", Text, nullable=False),
        Column("token", BigInteger, nullable=False),
        Column("version_major", Integer, nullable=False),
        Column("version_minor", Integer, nullable=False),
        Column("revision", BigInteger, nullable=False),
        Column("acquired_at", _tz(), nullable=False),
        Column("renewed_at", _tz(), nullable=False),
        Column("expires_at", _tz(), nullable=False),
        Column("last_activity_at", _tz(), nullable=False),
        Column("idle_warned_at", _tz()),
        Index("ix_scsync_leases_expires", "expires_at"),
    )
    Table(
        "scsync_audit",
        md,
        Column("seq", BigInteger, Identity(always=False), primary_key=True),
        Column("at", _tz(), nullable=False, server_default=text("clock_timestamp()")),
        Column("actor", Text, nullable=False),
        Column("side", Text, nullable=False),
        Column("site_id", Integer),
        Column("action", Text, nullable=False),
        Column("table_name", Text),
        Column("row_id", BigInteger),
        Column("detail", JSONB),
        Index("ix_scsync_audit_record", "table_name", "row_id"),
    )


local_metadata: Final[MetaData] = build_metadata("local")
cloud_metadata: Final[MetaData] = build_metadata("cloud")


def metadata_for(side: Side) -> MetaData:
    return local_metadata if side == "local" else cloud_metadata
