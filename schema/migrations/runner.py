"""The body of both alembic env.py files: one code path, the side chosen by the ini section."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import pool

from schema.tables import Side, metadata_for
from schema.urls import create_engine

URL_ENV = {"local": "SCSYNC_LOCAL_DB_URL", "cloud": "SCSYNC_CLOUD_DB_URL"}


def _url(side: Side) -> str:
    config = context.config
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        url = config.attributes.get("url") or os.environ.get(URL_ENV[side])
    if not url:
        raise SystemExit(
            f"no database URL for the {side} side: pass -x url=... or set {URL_ENV[side]}"
        )
    return str(url)


def run(side: Side) -> None:
    target = metadata_for(side)
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target)
        with context.begin_transaction():
            context.run_migrations(side=side)
        return
    engine = create_engine(_url(side), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target)
        with context.begin_transaction():
            context.run_migrations(side=side)
    engine.dispose()
