"""On-demand: a cloud client asks for a blob still only on the site; the site lists
the open requests."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web
from psycopg.rows import namedtuple_row

from api.blobs.resources import STATE, Conn, _blob_row, _scalar
from api.blobs.target import ROW_ID_RE, _bad, _json_body, _require_writer, _site_of, _target
from schema.database import fetch_all, named
from schema.events import EventType

FILE_TABLES: Final = ("images", "captures", "project_files")


async def _request_blob(request: web.Request) -> web.Response:
    """A cloud client wants a blob that is still only on the site (on-demand)."""
    t = _target(request)
    body = await _json_body(request)
    table = body.get("table")
    row_id = body.get("row_id")
    if table is not None and table not in FILE_TABLES:
        raise _bad(f"table must be one of {', '.join(FILE_TABLES)}")
    if row_id is not None and (
        isinstance(row_id, bool)
        or not isinstance(row_id, int | str)
        or not ROW_ID_RE.fullmatch(str(row_id))
    ):
        raise _bad("row_id must be an integer (or its decimal string)")
    state = request.app[STATE]
    async with state.pool.connection() as conn, conn.transaction():
        row = await _blob_row(conn, t)
        if row is not None and row.state == "uploaded":
            return web.json_response({"status": "uploaded", "key": t.key})
        added = await conn.execute(
            named("files_request_add"),
            {
                "site_id": t.site_id,
                "sha256": t.sha256,
                "table_name": table,
                "row_id": int(row_id) if row_id is not None else None,
                "requested_by": t.principal.subject,
            },
        )
        req_id = await _scalar(added)
        await _publish(
            conn,
            t.site_id,
            EventType.BLOB_REQUESTED,
            table,
            int(row_id) if row_id is not None else None,
            {"sha256": t.sha256, "request_id": str(req_id)},
        )
    return web.json_response({"status": "requested", "request_id": req_id}, status=202)


async def _open_requests(request: web.Request) -> web.Response:
    principal, site_id = _site_of(request)
    _require_writer(principal)
    state = request.app[STATE]
    async with state.pool.connection() as conn:
        rows: list[Any] = await fetch_all(
            conn, "files_requests_open", {"site_id": site_id, "limit": 100}, row=namedtuple_row
        )
    return web.json_response(
        {
            "requests": [
                {
                    "id": r.id,
                    "sha256": r.sha256,
                    "table": r.table_name,
                    "row_id": str(r.row_id) if r.row_id is not None else None,
                    "requested_at": r.requested_at.isoformat(),
                }
                for r in rows
            ]
        }
    )


async def _publish(
    conn: Conn,
    site_id: int,
    kind: str,
    table: str | None,
    row_id: int | None,
    payload: dict[str, Any],
) -> None:
    await conn.execute(
        named("files_publish"),
        {
            "site_id": site_id,
            "type": kind,
            "table_name": table,
            "row_id": row_id,
            "payload": json.dumps(payload),
        },
    )
