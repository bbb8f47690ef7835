"""SQL that a DBA can read: function/trigger files applied by migrations, and the
named queries of ``queries.sql`` that the typed access layer runs.

``queries.sql`` and ``queries_<package>.sql`` (one file per package: replicator,
lockd, api, ...) hold blocks introduced by ``-- name: <query_name>`` lines, in the
manner of procrastinate's ``queries.sql``; :func:`query` returns one by name. A name
defined twice is an error at load time. Every named query takes psycopg's ``%(name)s``
placeholders (one style); ``schema.database.named`` runs them.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import sqlparse

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def read_sql(filename: str) -> str:
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")


def statements(sql: str) -> list[str]:
    """Split a script into statements, respecting $$ bodies and quotes.

    pg8000 sends each statement through the extended protocol, which takes one
    statement at a time, so scripts are always run statement by statement.
    """
    out = []
    for stmt in sqlparse.split(sql):
        stripped = sqlparse.format(stmt, strip_comments=True).strip().rstrip(";").strip()
        if stripped:
            out.append(stmt)
    return out


def run_sql_file(filename: str) -> None:
    """Run a file of schema/sql inside the current alembic migration."""
    from alembic import op

    # Through the DBAPI cursor without parameters: neither driver then parses the
    # '%' of a PL/pgSQL RAISE format as a placeholder.
    cursor = op.get_bind().connection.cursor()
    try:
        for stmt in statements(read_sql(filename)):
            cursor.execute(stmt)
    finally:
        cursor.close()


_CREATE_FUNCTION = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)\s*\(", re.IGNORECASE | re.MULTILINE
)


def function_definitions(filename: str, *names: str) -> list[str]:
    """The statements of ``filename`` that define the functions ``names`` (the last
    one of each name), as ``CREATE OR REPLACE``: a downgrade names the earlier file of a
    function it restores instead of restating its body (alembic's replaceable objects).
    KeyError names a function the file does not define."""
    found: dict[str, str] = {}
    for stmt in statements(read_sql(filename)):
        body = sqlparse.format(stmt, strip_comments=True).strip()
        match = _CREATE_FUNCTION.match(body)
        if match and match.group(1) in names:
            found[match.group(1)] = re.sub(
                r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION",
                "CREATE OR REPLACE FUNCTION",
                body,
                count=1,
                flags=re.IGNORECASE,
            )
    missing = [n for n in names if n not in found]
    if missing:
        raise KeyError(f"{filename} defines no function {', '.join(missing)}")
    return [found[n] for n in names]


def restore_functions(filename: str, *names: str) -> None:
    """Inside a migration: put back the definitions of ``names`` from ``filename``."""
    from alembic import op

    cursor = op.get_bind().connection.cursor()
    try:
        for stmt in function_definitions(filename, *names):
            cursor.execute(stmt)
    finally:
        cursor.close()


@functools.cache
def _queries() -> dict[str, str]:
    files = sorted(
        f.name
        for f in resources.files(__package__).iterdir()
        if f.name == "queries.sql" or (f.name.startswith("queries_") and f.name.endswith(".sql"))
    )
    found: dict[str, str] = {}
    for filename in files:
        parts = _NAME.split(read_sql(filename))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in found:
                raise ValueError(f"query {name!r} is defined twice (second time in {filename})")
            found[name] = _without_trailing_comments(body).rstrip(";")
    return found


def _without_trailing_comments(body: str) -> str:
    """A block's statement without the comment lines after it: they introduce the next
    block, and a block used as a fragment of another statement must not end in one."""
    lines = body.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).strip()


def query(name: str) -> str:
    """The named query from queries.sql (KeyError names it when missing)."""
    try:
        return _queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in schema/sql/queries.sql") from None
