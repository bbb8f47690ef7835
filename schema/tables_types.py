"""Names shared by schema/tables.py and the per-area table modules."""

from __future__ import annotations

from typing import Any, Final, Literal

from sqlalchemy.dialects.postgresql import base as postgresql_base
from sqlalchemy.types import UserDefinedType

Side = Literal["local", "cloud"]
SIDES: Final[tuple[Side, ...]] = ("local", "cloud")


class PgLsn(UserDefinedType[str]):
    """PostgreSQL's ``pg_lsn`` (a WAL position; SQLAlchemy has no type for it)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "pg_lsn"


# Reflection (alembic's drift check, schema/migrate.py) reads the column back as this
# type instead of warning that it does not know pg_lsn.
postgresql_base.ischema_names.setdefault("pg_lsn", PgLsn)
