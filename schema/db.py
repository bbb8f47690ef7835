"""Small typed access layer for what every package needs of a scsync database.

Packages above (replicator, lockd, api) add their own typed layers next to their
code, all running named queries from schema/sql/queries.sql.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from schema.errors import ClockMovedBackwards, ConfigError, NodeNotConfigured, SchemaError
from schema.sql import statement
from schema.tables import Side


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    side: Side
    site_id: int | None


def get_node(conn: Connection) -> NodeConfig | None:
    row = conn.execute(statement("node_get")).first()
    if row is None:
        return None
    return NodeConfig(node_id=row.node_id, side=row.side, site_id=row.site_id)


def set_node(conn: Connection, node_id: int, side: Side, site_id: int | None) -> NodeConfig:
    """Set this database's node id (0..4095) and side; the caller commits."""
    if not 0 <= node_id <= 4095:
        raise ConfigError(f"node id must be between 0 and 4095, got {node_id}")
    if side == "local" and site_id is None:
        raise ConfigError("a local database needs its site id")
    conn.execute(statement("node_set"), {"node_id": node_id, "side": side, "site_id": site_id})
    return NodeConfig(node_id=node_id, side=side, site_id=site_id)


def next_id(conn: Connection) -> int:
    """A new Snowflake id from the database (the same function every id default uses)."""
    try:
        value = conn.execute(statement("snowflake_next")).scalar_one()
    except DBAPIError as exc:
        raise translate_db_error(exc) from exc
    return int(value)


def synced_tables(conn: Connection) -> dict[str, str | None]:
    return {r.table_name: r.file_column for r in conn.execute(statement("synced_tables"))}


def translate_db_error(exc: DBAPIError) -> Exception:
    """Map scsync's own SQLSTATEs (SCxxx) to this package's exceptions."""
    code, message = sqlstate_and_message(exc)
    if code == "SC001":
        return NodeNotConfigured(message)
    if code == "SC002":
        return ClockMovedBackwards(message)
    if code is not None and code.startswith("SC"):
        return SchemaError(message)
    return exc


def sqlstate_and_message(exc: DBAPIError) -> tuple[str | None, str]:
    """SQLSTATE and primary message of a driver error, for psycopg and pg8000 alike."""
    orig = exc.orig
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg
        return getattr(orig, "sqlstate", None), str(diag.message_primary or orig)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):  # pg8000: a dict of protocol fields
        fields = args[0]
        return fields.get("C"), str(fields.get("M", orig))
    return None, str(orig).strip().splitlines()[0] if str(orig).strip() else repr(orig)
