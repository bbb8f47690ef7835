"""JSON schemas of the API's bodies and parameters: the builders the route
declarations use (api/routes.py, api/sync.py, api/sync_files.py) and the document's
components, derived from the table metadata."""

from __future__ import annotations

from typing import Any, Final

from api.records import ID_PATTERN, TableSpec, table_specs
from schema.tables import Side

ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
ID_SCHEMA: Final = {"type": "string", "pattern": ID_PATTERN}
NULLABLE_STR: Final = {"anyOf": [{"type": "string"}, {"type": "null"}]}
NULLABLE_ID: Final = {"anyOf": [ID_SCHEMA, {"type": "null"}]}
NULLABLE_TIME: Final = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}


def obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    out.update(extra)
    return out


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def qparam(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        p["description"] = description
    return p


# Every request to the sync app names its lane lease holder (api/sync.py).
HOLDER_PARAM: Final = {
    "name": "X-Scsync-Holder",
    "in": "header",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:/@+-]{1,200}$"},
}
ID_PARAM: Final = {"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}
LIMIT: Final = qparam("limit", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR: Final = qparam("cursor", ID_SCHEMA, "next_cursor of the previous page")
SITE_Q: Final = qparam(
    "site_id",
    {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "vendor admins: the site to act on; others: must be their own site",
)


def table_schemas(spec: TableSpec) -> dict[str, dict[str, Any]]:
    t = spec.name
    record = obj({c.name: c.json_schema() for c in spec.readable}, additionalProperties=False)
    write_props = {n: spec.column(n).json_schema() for n in spec.writable}
    create = obj(write_props, list(spec.required), additionalProperties=False)
    update = obj(write_props, [], additionalProperties=False, minProperties=1)
    page = obj(
        {"items": {"type": "array", "items": ref(f"Record_{t}")}, "next_cursor": NULLABLE_ID}
    )
    return {f"Record_{t}": record, f"Create_{t}": create, f"Update_{t}": update, f"Page_{t}": page}


def common_schemas() -> dict[str, Any]:
    return {
        "Error": obj(
            {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": NULLABLE_STR,
            },
            ["error", "message"],
        ),
        "History": obj(
            {
                "items": {
                    "type": "array",
                    "items": obj(
                        {
                            "seq": {"type": "integer"},
                            "revision": ID_SCHEMA,
                            "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"},
                            "op": {"type": "string", "enum": ["I", "U", "D"]},
                            "origin": {"type": "string"},
                            "saved_at": {"type": "string", "format": "date-time"},
                            "data": {"type": "object"},
                        }
                    ),
                }
            }
        ),
        "Conflict": obj(
            {
                "id": ID_SCHEMA,
                "table": {"type": "string"},
                "record_id": ID_SCHEMA,
                "site_id": {"type": "integer"},
                "base_revision": NULLABLE_ID,
                "local_revision": NULLABLE_ID,
                "cloud_revision": NULLABLE_ID,
                "detected_on": {"type": "string", "enum": ["local", "cloud"]},
                "detected_at": {"type": "string", "format": "date-time"},
                "status": {"type": "string", "enum": ["open", "resolved"]},
                "resolution": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "resolved_by": NULLABLE_STR,
                "resolved_at": NULLABLE_TIME,
                "local_row": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                "cloud_row": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                "new_revision": NULLABLE_ID,
            },
            [
                "id",
                "table",
                "record_id",
                "site_id",
                "detected_on",
                "detected_at",
                "status",
            ],
        ),
        "ConflictPage": obj(
            {"items": {"type": "array", "items": ref("Conflict")}, "next_cursor": NULLABLE_ID}
        ),
        "TokenRequest": obj(
            {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1},
                "site_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            },
            ["username", "password"],
            additionalProperties=False,
        ),
        "Token": obj(
            {
                "token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["bearer"]},
                "expires_in": {"type": "integer"},
                "role": {"type": "string"},
                "site_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            ["token", "token_type", "expires_in"],
        ),
        "Me": obj(
            {
                "subject": {"type": "string"},
                "kind": {"type": "string", "enum": ["user", "site"]},
                "role": {"type": "string"},
                "site_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "side": {"type": "string", "enum": ["local", "cloud"]},
                "actor": {"type": "string"},
            }
        ),
        "Status": obj(
            {
                "side": {"type": "string", "enum": ["local", "cloud"]},
                "site_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "outbox_depth": {"type": "integer"},
                "outbox_oldest_age_s": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                "open_conflicts": {"type": "integer"},
                "lanes": {"type": "array", "items": {"type": "object"}},
                "last_event_id": {"type": "integer"},
                "websocket_clients": {"type": "integer"},
                "bus": {"type": "string"},
                "relay_leader": {"anyOf": [{"type": "boolean"}, {"type": "null"}]},
                "sync_long_polls": {
                    "anyOf": [
                        obj(
                            {
                                "hints_live": {"type": "boolean"},
                                "sites_waiting": {"type": "integer"},
                            }
                        ),
                        {"type": "null"},
                    ]
                },
            }
        ),
        "EditRequest": obj({"offline": {"type": "boolean"}}, [], additionalProperties=False),
        "EditSession": obj(
            {
                "session": {"type": "string"},
                "table": {"type": "string"},
                "record_id": ID_SCHEMA,
                "holder": {"type": "string"},
                "offline": {"type": "boolean"},
                "unfenced": {"type": "boolean"},
                "fencing_token": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "expires_in_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "ttl_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "version": {"type": "string"},
            }
        ),
        "SessionRequest": obj({"session": {"type": "string"}}, additionalProperties=False),
        "SaveRequest": obj(
            {
                "session": {"type": "string"},
                "changes": {"type": "object"},
                "save_id": {"type": "string", "format": "uuid"},
            },
            ["session", "changes"],
            additionalProperties=False,
        ),
        "SaveResult": obj(
            {
                "status": {"type": "string", "enum": ["saved", "unchanged", "replayed"]},
                "changed": {"type": "boolean"},
                "version": {"type": "string"},
                "revision": ID_SCHEMA,
                "offline": {"type": "boolean"},
            }
        ),
        "LeaseInfo": obj(
            {
                "expires_in_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "ttl_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "offline": {"type": "boolean"},
            }
        ),
        "PolicyRequest": obj(
            {
                "mode": {"type": "string", "enum": ["all", "selective"]},
                "tables": {"type": "array", "items": {"type": "string"}},
                "modalities": {"type": "array", "items": {"type": "string", "minLength": 1}},
                "since_date": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
                "last_days": {
                    "anyOf": [
                        {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
                        {"type": "null"},
                    ]
                },
                "old_data": {"type": "string", "enum": ["keep", "delete", "backup"]},
            },
            [],
            additionalProperties=False,
        ),
        "Policy": obj(
            {
                "mode": {"type": "string"},
                "tables": {"type": "array", "items": {"type": "string"}},
                "modalities": {"type": "array", "items": {"type": "string"}},
                "since_date": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "last_days": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "old_data": {"type": "string"},
                "updated_at": NULLABLE_TIME,
            }
        ),
        "FetchResult": obj(
            {
                "status": {"type": "string", "enum": ["requested", "uploaded"]},
                "sha256": {"type": "string"},
                "request_id": NULLABLE_ID,
            }
        ),
        "Closed": obj({"status": {"type": "string", "enum": ["closed"]}}),
        "Health": obj(
            {"status": {"type": "string"}, "side": {"type": "string", "enum": ["local", "cloud"]}}
        ),
    }


def account_schemas(side: Side) -> dict[str, Any]:
    spec = table_specs(side)["user_accounts"]
    cols = {c.name: c.json_schema() for c in spec.readable}
    account = obj({**cols, "disabled": {"type": "boolean"}}, additionalProperties=False)
    profile = {n: spec.column(n).json_schema() for n in ("display_name", "doctor_id")}
    password = {"type": "string", "minLength": 8, "maxLength": 1024}
    role = {"type": "string", "enum": ["viewer", "editor", "admin", "vendor_admin"]}
    return {
        "Account": account,
        "AccountPage": obj(
            {"items": {"type": "array", "items": ref("Account")}, "next_cursor": NULLABLE_ID}
        ),
        "CreateAccount": obj(
            {
                "username": {"type": "string", "minLength": 1, "maxLength": 120},
                "password": password,
                "role": role,
                **profile,
            },
            ["username", "password"],
            additionalProperties=False,
        ),
        "UpdateAccount": obj(
            {"password": password, "role": role, **profile},
            [],
            additionalProperties=False,
            minProperties=1,
        ),
    }
