"""Every database operation of the API, on the process's one pool (schema.database).

SQL comes from schema/sql/queries_api.sql by name; table and column names are
composed with psycopg.sql.Identifier. Rows are dicts (``fetch_one``/``fetch_all``).
Driver errors become api.errors at one boundary (:func:`db_errors`, the table
:data:`ERRORS`), the original kept as ``__cause__``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.errors import ApiError, Conflict, DatabaseError, NotFound, ValidationFailed
from api.records import TableSpec
from schema import database
from schema.database import DbError, Translation

Row = dict[str, Any]
Conn = database.Conn  # tuple rows; fetch_one/fetch_all below give dicts


q = database.named  # a named query; identifiers fill its {placeholders}


# The API's table of driver errors (schema.database.Translation): constraint and data
# errors are the client's (400/409, naming the column), an unreachable database 503.
def _refused(e: DbError) -> ApiError:
    return ValidationFailed(f"value refused by the database: {e.message}", field=e.field)


ERRORS = Translation(
    {
        "23503": lambda e: ValidationFailed("a referenced record does not exist", field=e.field),
        "23505": lambda e: Conflict("a record with the same unique values exists", field=e.field),
        "23514": _refused,
        "23502": _refused,
        "22": lambda e: ValidationFailed(f"value refused by the database: {e.message}"),
    },
    unavailable=lambda message: DatabaseError(f"the database is unavailable: {message}"),
)


@asynccontextmanager
async def db_errors() -> AsyncIterator[None]:
    """Driver errors of the block leave as api.errors (:data:`ERRORS`)."""
    with ERRORS.errors():
        yield


Pool = database.Pool


@asynccontextmanager
async def transaction(pool: Pool, *, wake: bool = True) -> AsyncIterator[Conn]:
    """One transaction on a pooled connection. ``wake``: if it wrote anything, it ends
    with one wake-up of the event and outbox listeners (scsync_wake: a hint, folded to
    one per transaction; the capture triggers notify no one)."""
    async with db_errors(), pool.connection() as conn, conn.transaction():
        yield conn
        if wake:
            await conn.execute(q("api_wake"))


async def fetch_one(
    conn: Conn, stmt: sql.SQL | sql.Composed, params: Mapping[str, Any]
) -> Row | None:
    return await database.fetch_one(conn, stmt, params, row=dict_row)


async def fetch_all(
    conn: Conn, stmt: sql.SQL | sql.Composed, params: Mapping[str, Any]
) -> list[Row]:
    return await database.fetch_all(conn, stmt, params, row=dict_row)


def _table(spec: TableSpec) -> sql.Identifier:
    return sql.Identifier(spec.name)


async def node(conn: Conn) -> Row | None:
    return await fetch_one(conn, q("api_node"), {})


async def list_records(conn: Conn, spec: TableSpec, params: Mapping[str, Any]) -> list[Row]:
    patient_col = "id" if spec.name == "patients" else "patient_id"
    stmt = q(
        "api_records_list",
        table=_table(spec),
        patient_col=sql.Identifier(
            patient_col if spec.has_patient or spec.name == "patients" else "id"
        ),
        modality_col=sql.Identifier("modality") if spec.has_modality else sql.SQL("NULL::text"),
    )
    return await fetch_all(conn, stmt, params)


async def get_record(
    conn: Conn, spec: TableSpec, row_id: int, site: int | None, *, for_update: bool = False
) -> Row:
    name = "api_record_get_for_update" if for_update else "api_record_get"
    row = await fetch_one(conn, q(name, table=_table(spec)), {"id": row_id, "site": site})
    if row is None:
        raise NotFound(f"no {spec.name} record {row_id}")
    return row


async def ref_site(conn: Conn, table: str, row_id: int) -> int | None:
    row = await fetch_one(conn, q("api_ref_site", table=sql.Identifier(table)), {"id": row_id})
    return None if row is None else int(row["site_id"])


def _adapt(values: Mapping[str, Any], json_columns: frozenset[str]) -> dict[str, Any]:
    return {k: (Jsonb(v) if k in json_columns else v) for k, v in values.items()}


async def disabled_accounts(conn: Conn, ids: list[int]) -> set[int]:
    """Which of these accounts are disabled (scsync_token_versions, this side's own)."""
    rows = await fetch_all(conn, q("api_accounts_disabled"), {"ids": ids})
    return {int(r["key"]) for r in rows}


async def insert_record(
    conn: Conn, spec: TableSpec, values: Mapping[str, Any], json_columns: frozenset[str]
) -> Row:
    names = list(values)
    stmt = q(
        "api_record_insert",
        table=_table(spec),
        columns=sql.SQL(", ").join(sql.Identifier(n) for n in names),
        values=sql.SQL(", ").join(sql.Placeholder(n) for n in names),
    )
    row = await fetch_one(conn, stmt, _adapt(values, json_columns))
    assert row is not None
    await save_history(conn, spec, int(row["id"]), "I")
    return row


async def save_history(conn: Conn, spec: TableSpec, row_id: int, op: str) -> None:
    """The save's own history row, in its transaction: on a WAL site no trigger writes
    it (SPEC, "History"), and the record's history must show the save at once."""
    await conn.execute(q("history_save"), {"table": spec.name, "row_id": row_id, "op": op})


async def update_record(
    conn: Conn,
    spec: TableSpec,
    row_id: int,
    site: int | None,
    values: Mapping[str, Any],
    json_columns: frozenset[str],
    version: tuple[int, int] | None = None,
) -> Row:
    # Bind names are prefixed so a column called "id" or "site" cannot collide.
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(n), sql.Placeholder(f"v_{n}")) for n in values
    )
    params: dict[str, Any] = {f"v_{k}": v for k, v in _adapt(values, json_columns).items()}
    params.update(id=row_id, site=site)
    if version is None:
        stmt = q("api_record_update", table=_table(spec), assignments=assignments)
    else:
        stmt = q("api_record_update_versioned", table=_table(spec), assignments=assignments)
        params.update(version_major=version[0], version_minor=version[1])
    row = await fetch_one(conn, stmt, params)
    if row is None:
        raise NotFound(f"no {spec.name} record {row_id}")
    await save_history(conn, spec, row_id, "U")
    return row


async def simple_update(conn: Conn, name: str, spec: TableSpec, params: Mapping[str, Any]) -> Row:
    row = await fetch_one(conn, q(name, table=_table(spec)), params)
    if row is None:
        raise NotFound(f"no {spec.name} record {params['id']}")
    await save_history(conn, spec, int(params["id"]), "U")
    return row


async def audit(
    conn: Conn,
    *,
    actor: str,
    side: str,
    site: int | None,
    action: str,
    table: str | None,
    row_id: int | None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        q("api_audit_insert"),
        {
            "actor": actor,
            "side": side,
            "site": site,
            "action": action,
            "table": table,
            "row_id": row_id,
            "detail": Jsonb(dict(detail)) if detail is not None else None,
        },
    )


async def publish(
    conn: Conn,
    *,
    site: int | None,
    type: str,
    table: str | None = None,
    row_id: int | None = None,
    patient: int | None = None,
    payload: Mapping[str, Any] | None = None,
) -> int:
    row = await fetch_one(
        conn,
        q("api_publish"),
        {
            "site": site,
            "type": type,
            "table": table,
            "row_id": row_id,
            "patient": patient,
            "payload": json.dumps(dict(payload or {})),
        },
    )
    assert row is not None
    return int(row["id"])
