"""Cloud side: registering a site (its row, node id, database role and password)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from replicator.errors import ReplicatorError
from schema.db import sqlstate_and_message
from schema.sql import statement
from schema.urls import libpq_url


@dataclass(frozen=True)
class SiteCredentials:
    site_id: int
    node_id: int
    name: str
    db_role: str
    password: str

    def cloud_url(self, cloud_admin_url: str) -> str:
        """The cloud database URL with this site's role in place of the admin's."""
        url = make_url(libpq_url(cloud_admin_url)).set(
            username=self.db_role, password=self.password
        )
        return url.render_as_string(hide_password=False)


def register_site(conn: Connection, name: str, node_id: int | None = None) -> SiteCredentials:
    """Create the site, its node id (next free one unless given) and its login role,
    a member of scsync_site (row-level security keeps it to its own rows). The caller
    commits; the password is returned once and stored nowhere but in PostgreSQL's hash."""
    password = secrets.token_urlsafe(24)
    try:
        row = conn.execute(
            statement("replicator_site_register"),
            {"name": name, "password": password, "node_id": node_id},
        ).one()
    except DBAPIError as exc:
        code, message = sqlstate_and_message(exc)
        if code == "23505":
            raise ReplicatorError(f"site {name!r} or node id {node_id} exists already") from exc
        raise ReplicatorError(f"cannot register site {name!r}: {message}") from exc
    return SiteCredentials(
        site_id=int(row.site_id),
        node_id=int(row.node_id),
        name=name,
        db_role=str(row.db_role),
        password=password,
    )
