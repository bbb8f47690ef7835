"""The site's file-area endpoints on the sync app (mounted at ``/v1/sync`` with
api/sync.py's authentication, pool and transaction prelude): the backfill and the
per-record cloud copy changes of ``scsync sync|restore|policy set``. A site token
only; the site is the token's, never the body's, and every transaction starts with
``sync_begin`` (the acting site, the site enabled). No lane lease: the backfill's
batches and these changes may run beside the site's push and pull lanes.

- ``backfill/apply?table=T&columns=a,b,...``: the body is PostgreSQL binary COPY rows
  of those columns (as ``COPY ... TO STDOUT (FORMAT BINARY)`` writes them at the site),
  COPYed into the table's stage as they arrive (never a whole batch in memory), then
  applied set-based with history in the same transaction. The apply statement checks
  every row's ``site_id`` against the token's site: a row of another site refuses the
  whole batch (403 naming it), as does a row whose references are another site's or
  an id the cloud holds for another site; nothing is applied. The answer lists the
  ``(id, revision)`` the cloud holds as sent, which the site then marks synced.
- ``backfill/has``: which of some blobs the cloud has verified for the site.
- ``records/switch``, ``records/restore``, ``records/lifecycle``,
  ``records/blob-remote``: one site's cloud copies; naming a record of another site
  refuses the whole request (403 naming it), nothing changed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web
from psycopg import sql

from api.errors import BadRequest
from api.jsonschema import obj
from api.sync import POOL, SITE, Conn, json_body, prelude, site_route
from schema.columns import BATCH_KEY_COLUMNS, SIDE_ONLY_COLUMNS
from schema.database import named
from schema.replicating import mark_replicating
from schema.tables import SYNCED_TABLES, metadata_for
from schema.web import Route
from schema.web import add_routes as add_routes_to

_CHUNK: Final = 1 << 16
_MAX_ITEMS: Final = 10_000
_SHA_RE: Final = re.compile(r"^[0-9a-f]{64}$")
FILE_TABLES: Final = tuple(t for t, col in SYNCED_TABLES.items() if col is not None)
# Whether the app's role may apply without triggers; asked once per app.
_BULK: Final = web.AppKey("sync_files_bulk", dict[str, bool])


def add_routes(app: web.Application) -> None:
    app[_BULK] = {}
    add_routes_to(app, ROUTES)


def _table(value: Any, tables: Sequence[str], field: str = "table") -> str:
    if not isinstance(value, str) or value not in tables:
        raise BadRequest(f"{field} must be one of {', '.join(tables)}, not {value!r}", field=field)
    return value


def _row_id(body: dict[str, Any]) -> int:
    value = body.get("id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest("id must be the record's id (an integer)", field="id")
    return value


def backfill_columns(table: str, given: str) -> list[str]:
    """The columns a backfill batch of `table` carries, as the site named them: each a
    column of the cloud's table that crosses (never one side's own bookkeeping, which
    the cloud sets itself), with id, site_id and revision among them."""
    cloud = metadata_for("cloud").tables[table]
    allowed = {c.name for c in cloud.columns} - SIDE_ONLY_COLUMNS
    columns = [c.strip() for c in given.split(",") if c.strip()]
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise BadRequest(
            f"columns: {', '.join(unknown)} cannot be sent for {table} (not a column of the "
            "cloud's table, or one the cloud sets itself)",
            field="columns",
        )
    if len(set(columns)) != len(columns):
        raise BadRequest("columns: a column is named twice", field="columns")
    missing = [c for c in BATCH_KEY_COLUMNS if c not in columns]
    if missing:
        raise BadRequest(f"columns: {', '.join(missing)} missing", field="columns")
    return columns


async def _begin(request: web.Request, conn: Conn) -> int:
    """The acting site (the token's) and the site enabled, no lease."""
    await prelude(request, None)(conn)
    return int(request[SITE])


async def _bulk(request: web.Request, conn: Conn) -> bool:
    cache = request.app[_BULK]
    if "bulk" not in cache:
        cur = await conn.execute(named("sync_backfill_may_bulk"))
        row = await cur.fetchone()
        cache["bulk"] = bool(row and row[0])
    return cache["bulk"]


# -- backfill ------------------------------------------------------------------------------


async def _backfill_apply(request: web.Request) -> web.Response:
    table = _table(request.query.get("table"), tuple(SYNCED_TABLES))
    columns = backfill_columns(table, request.query.get("columns", ""))
    ident = sql.Identifier(table)
    stage_name = f"scsync_backfill_stage_{table}"
    stage = sql.Identifier(stage_name)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    values = sql.SQL(", ").join(sql.Identifier("s", c) for c in columns)
    if SYNCED_TABLES[table] is None:
        file_column: sql.Composable = sql.SQL("")
        file_value: sql.Composable = sql.SQL("")
    else:
        file_column = sql.SQL(", blob_state")
        file_value = sql.SQL(", ") + named("sync_backfill_blob_state")
    async with request.app[POOL].connection() as conn:
        bulk = await _bulk(request, conn)
        async with conn.transaction():
            site_id = await _begin(request, conn)
            if bulk:
                # No per-row triggers (the rows are the site's, replicated): history is
                # written by the apply itself, the references checked below.
                await conn.execute(named("sync_backfill_bulk"))
            await mark_replicating(conn)
            await conn.execute(named("sync_backfill_stage_create", stage=stage, table=ident))
            async with conn.cursor().copy(
                named("sync_backfill_stage_copy_in", stage=stage, columns=cols)
            ) as copy:
                async for chunk in request.content.iter_chunked(_CHUNK):
                    await copy.write(chunk)
            params = {"site_id": site_id, "table_name": table}
            await conn.execute(
                named("sync_backfill_check_refs"), {**params, "stage": f"pg_temp.{stage_name}"}
            )
            # With the triggers on, the capture trigger writes the rows' history. The
            # answer: the rows the cloud holds as sent.
            cur = await conn.execute(
                named(
                    "sync_backfill_apply",
                    table=ident,
                    stage=stage,
                    columns=cols,
                    values=values,
                    file_column=file_column,
                    file_value=file_value,
                ),
                {**params, "history": bulk},
            )
            accepted = [[int(i), int(rev)] for i, rev in await cur.fetchall()]
    return web.json_response({"accepted": accepted})


async def _backfill_has(request: web.Request) -> web.Response:
    shas = (await json_body(request)).get("shas")
    if (
        not isinstance(shas, list)
        or len(shas) > _MAX_ITEMS
        or not all(isinstance(s, str) and _SHA_RE.fullmatch(s) for s in shas)
    ):
        raise BadRequest(
            f"shas must be a list of at most {_MAX_ITEMS} sha256 hex digests", field="shas"
        )
    async with request.app[POOL].connection() as conn, conn.transaction():
        site_id = await _begin(request, conn)
        cur = await conn.execute(
            named("sync_backfill_cloud_has"), {"site_id": site_id, "shas": shas}
        )
        uploaded = sorted(str(r[0]) for r in await cur.fetchall())
    return web.json_response({"uploaded": uploaded})


# -- a site's cloud copies -----------------------------------------------------------------


def _records(body: dict[str, Any], tables: Sequence[str]) -> dict[str, list[int]]:
    value = body.get("records")
    if not isinstance(value, list) or len(value) > _MAX_ITEMS:
        raise BadRequest(
            f'records must be a list of at most {_MAX_ITEMS} {{"t": table, "id": row id}}',
            field="records",
        )
    per_table: dict[str, list[int]] = {}
    for item in value:
        rid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise BadRequest(
                'records must be a list of {"t": table, "id": row id}', field="records"
            )
        per_table.setdefault(_table(item.get("t"), tables, "records"), []).append(rid)
    return per_table


async def _changing(
    request: web.Request, conn: Conn, per_table: dict[str, list[int]]
) -> dict[str, Any]:
    """Start a change of the site's cloud copies: the acting site, the wall over every
    record named (another site's refuses the whole request, naming it), and the change
    marked as replicated bookkeeping."""
    site_id = await _begin(request, conn)
    keys = [{"t": t, "id": i} for t, ids in per_table.items() for i in ids]
    await conn.execute(
        named("sync_records_check_keys"), {"keys": json.dumps(keys), "site_id": site_id}
    )
    await mark_replicating(conn)
    return {"site_id": site_id}


async def _switch(request: web.Request) -> web.Response:
    body = await json_body(request)
    table = _table(body.get("table"), tuple(SYNCED_TABLES))
    row_id = _row_id(body)
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise BadRequest("enabled must be true or false", field="enabled")
    async with request.app[POOL].connection() as conn, conn.transaction():
        params = await _changing(request, conn, {table: [row_id]})
        cur = await conn.execute(
            named("sync_records_switch", table=sql.Identifier(table)),
            {**params, "row_id": row_id, "enabled": enabled},
        )
        found = await cur.fetchone() is not None
    return web.json_response({"found": found})


async def _restore(request: web.Request) -> web.Response:
    body = await json_body(request)
    table = _table(body.get("table"), FILE_TABLES)
    row_id = _row_id(body)
    async with request.app[POOL].connection() as conn, conn.transaction():
        params = await _changing(request, conn, {table: [row_id]})
        cur = await conn.execute(
            named("sync_records_restore", table=sql.Identifier(table)), {**params, "row_id": row_id}
        )
        restored = await cur.fetchone() is not None
    return web.json_response({"restored": restored})


async def _lifecycle(request: web.Request) -> web.Response:
    body = await json_body(request)
    lifecycle = body.get("lifecycle")
    if lifecycle not in ("deleted", "backed_up"):
        raise BadRequest("lifecycle must be 'deleted' or 'backed_up'", field="lifecycle")
    return await _change(request, body, "sync_records_lifecycle", {"lifecycle": lifecycle})


async def _blob_remote(request: web.Request) -> web.Response:
    return await _change(request, await json_body(request), "sync_records_blob_remote", {})


async def _change(
    request: web.Request, body: dict[str, Any], name: str, extra: dict[str, Any]
) -> web.Response:
    per_table = _records(body, FILE_TABLES)
    changed: list[dict[str, Any]] = []
    async with request.app[POOL].connection() as conn, conn.transaction():
        params = await _changing(request, conn, per_table)
        for table, ids in per_table.items():
            cur = await conn.execute(
                named(name, table=sql.Identifier(table)), {**params, **extra, "ids": ids}
            )
            changed += [{"t": table, "id": int(r[0])} for r in await cur.fetchall()]
    return web.json_response({"changed": changed})


def _routes() -> tuple[Route, ...]:
    """The site's file-area endpoints on the sync app: a site token, the site the
    token's; a record or row of another site refuses the request (403)."""
    ident = {"type": "string", "pattern": r"^[a-z_]+$"}
    pair = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}
    record = obj({"t": ident, "id": {"type": "integer"}}, additionalProperties=False)
    records = {"type": "array", "items": record, "maxItems": 10_000}
    changed = obj({"changed": records})

    return (
        site_route(
            "backfill/apply",
            _backfill_apply,
            "sync_backfill_apply",
            "Apply a backfill batch: the body is binary COPY rows of the named columns, "
            "streamed into the cloud's stage; every row must be the token's site's",
            obj({"accepted": {"type": "array", "items": pair}}),
            {"type": "string", "format": "binary"},
            request_content_type="application/octet-stream",
            params=(
                {"name": "table", "in": "query", "required": True, "schema": ident},
                {
                    "name": "columns",
                    "in": "query",
                    "required": True,
                    "description": "comma-separated, in the order of the COPY rows",
                    "schema": {"type": "string"},
                },
            ),
        ),
        site_route(
            "backfill/has",
            _backfill_has,
            "sync_backfill_has",
            "Which of these blobs the cloud has verified for the site",
            obj({"uploaded": {"type": "array", "items": {"type": "string"}}}),
            obj({"shas": {"type": "array", "items": {"type": "string"}, "maxItems": 10_000}}),
        ),
        site_route(
            "records/switch",
            _switch,
            "sync_records_switch",
            "Mark the cloud copy of one record active (enabled) or deleted",
            obj({"found": {"type": "boolean"}}),
            obj({"table": ident, "id": {"type": "integer"}, "enabled": {"type": "boolean"}}),
        ),
        site_route(
            "records/restore",
            _restore,
            "sync_records_restore",
            "Make a backed-up cloud copy active again",
            obj({"restored": {"type": "boolean"}}),
            obj({"table": ident, "id": {"type": "integer"}}),
        ),
        site_route(
            "records/lifecycle",
            _lifecycle,
            "sync_records_lifecycle",
            "Mark active cloud copies deleted or backed_up (the old-data option)",
            changed,
            obj(
                {
                    "lifecycle": {"type": "string", "enum": ["deleted", "backed_up"]},
                    "records": records,
                }
            ),
        ),
        site_route(
            "records/blob-remote",
            _blob_remote,
            "sync_records_blob_remote",
            "Mark cloud copies metadata only (their blob was deleted)",
            changed,
            obj({"records": records}),
        ),
    )


ROUTES: Final = _routes()
