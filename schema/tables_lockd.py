"""Tables added by the lockd work (migration 0003_lockd on each side)."""

from __future__ import annotations

from sqlalchemy import MetaData

from schema.tables_types import Side


def add_tables(md: MetaData, side: Side) -> None:
    """Declare this area's tables/columns on `md` for `side`; the migration builds them."""
