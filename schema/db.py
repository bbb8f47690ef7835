"""What every package needs of a scsync database, async on :mod:`schema.database`:
the node id and side, a new Snowflake id, the synced tables.

Packages above (replicator, lockd, api) add their own typed layers next to their
code, all running named queries from schema/sql/queries*.sql.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg.rows import class_row

from schema.database import SCHEMA, Conn, execute, fetch_all, fetch_one, fetch_value
from schema.errors import ConfigError
from schema.tables import Side


@dataclass(frozen=True)
class NodeConfig:
    node_id: int
    side: Side
    site_id: int | None


async def get_node(conn: Conn) -> NodeConfig | None:
    return await fetch_one(conn, "node_get", row=class_row(NodeConfig))


async def set_node(conn: Conn, node_id: int, side: Side, site_id: int | None) -> NodeConfig:
    """Set this database's node id (0..4095) and side."""
    if not 0 <= node_id <= 4095:
        raise ConfigError(f"node id must be between 0 and 4095, got {node_id}")
    if side == "local" and site_id is None:
        raise ConfigError("a local database needs its site id")
    with SCHEMA.errors():
        await execute(conn, "node_set", {"node_id": node_id, "side": side, "site_id": site_id})
    return NodeConfig(node_id=node_id, side=side, site_id=site_id)


async def next_id(conn: Conn) -> int:
    """A new Snowflake id from the database (the same function every id default uses);
    NodeNotConfigured or ClockMovedBackwards (SC001, SC002) when it cannot give one."""
    with SCHEMA.errors():
        return int(await fetch_value(conn, "snowflake_next"))


async def synced_tables(conn: Conn) -> dict[str, str | None]:
    return {str(name): file_column for name, file_column in await fetch_all(conn, "synced_tables")}
