"""Cloud side: registering a site (its row and node id). A site gets no database role:
its replicator reaches the cloud only through the cloud API, with the site token that
``POST /v1/sites/{id}/token`` issues."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from replicator.errors import ReplicatorError
from schema.db import sqlstate_and_message
from schema.sql import statement


@dataclass(frozen=True)
class SiteCredentials:
    site_id: int
    node_id: int
    name: str


def register_site(conn: Connection, name: str, node_id: int | None = None) -> SiteCredentials:
    """Create the site and its node id (the next free one unless given). The caller
    commits."""
    try:
        row = conn.execute(
            statement("replicator_site_register"), {"name": name, "node_id": node_id}
        ).one()
    except DBAPIError as exc:
        code, message = sqlstate_and_message(exc)
        if code == "23505":
            raise ReplicatorError(f"site {name!r} or node id {node_id} exists already") from exc
        raise ReplicatorError(f"cannot register site {name!r}: {message}") from exc
    return SiteCredentials(site_id=int(row.site_id), node_id=int(row.node_id), name=name)
