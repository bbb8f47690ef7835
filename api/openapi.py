"""The OpenAPI 3.1 document of each side, built from the route declarations
(api/routes.py), so that what is documented is what is served."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.jsonschema import ERROR_REF, account_schemas, common_schemas, table_schemas
from api.records import table_specs
from api.routes import all_routes
from schema.tables import Side
from schema.web import Access, Route


def document(side: Side, routes: Sequence[Route] | None = None) -> dict[str, Any]:
    """The document of ``routes``: by default every route of the side's app with its
    mounted apps as ``all_routes`` lists them; ``make_app`` passes what it serves."""
    if routes is None:
        routes = all_routes(side)
    paths: dict[str, dict[str, Any]] = {}
    for op in routes:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": list(op.tags),
            "responses": {
                str(op.status): {
                    "description": "success",
                    "content": {op.content_type: {"schema": op.response or {"type": "string"}}},
                    **({"links": op.links} if op.links else {}),
                },
                **op.extra_responses,
                "default": {
                    "description": "error",
                    "content": {"application/json": {"schema": ERROR_REF}},
                },
            },
        }
        if op.params:
            item["parameters"] = list(op.params)
        if op.request is not None:
            item["requestBody"] = {
                "required": True,
                "content": {op.request_content_type: {"schema": op.request}},
            }
        scheme = "scrapeToken" if op.access is Access.SCRAPE else "bearerAuth"
        item["security"] = [{scheme: []}] if op.auth else []
        paths.setdefault(op.path, {})[op.method] = item
    schemas = common_schemas()
    for spec in table_specs(side).values():
        schemas.update(table_schemas(spec))
    schemas.update(account_schemas(side))
    title = "SC Server API (local)" if side == "local" else "SC Server Cloud API"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "Events: WebSocket /ws (docs/api.md)."
            + (
                " Mounted sub-applications, also described in docs/lockd.md (/v1/locks)"
                " and docs/files.md (/v1/blobs)."
                if side == "cloud"
                else ""
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "scrapeToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "the API's setting metrics_token (Prometheus' scrape"
                    " credential), not a user's or a site's token",
                },
            },
        },
    }
