"""Cloud side: registering a site (its row and node id). A site gets no database role:
its replicator reaches the cloud only through the cloud API, with the site token that
``POST /v1/sites/{id}/token`` issues."""

from __future__ import annotations

from dataclasses import dataclass

from replicator.errors import ReplicatorError
from schema.database import Conn, Translation, fetch_one


@dataclass(frozen=True)
class SiteCredentials:
    site_id: int
    node_id: int
    name: str


async def register_site(conn: Conn, name: str, node_id: int | None = None) -> SiteCredentials:
    """Create the site and its node id (the next free one unless given), in one
    transaction (a savepoint inside the caller's)."""
    errors = Translation(
        {"23505": lambda _e: ReplicatorError(f"site {name!r} or node id {node_id} exists already")},
        other=lambda e: ReplicatorError(f"cannot register site {name!r}: {e.message}"),
    )
    with errors.errors():
        async with conn.transaction():
            row = await fetch_one(
                conn, "replicator_site_register", {"name": name, "node_id": node_id}
            )
    if row is None:
        raise ReplicatorError(f"cannot register site {name!r}: no row returned")
    return SiteCredentials(site_id=int(row[0]), node_id=int(row[1]), name=name)
