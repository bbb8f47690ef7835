"""JSON schemas of lockd's HTTP bodies, for the OpenAPI document its routes build
(schema.web.Route). The handlers of lockd/web.py check the same rules and name the
field they refuse (400); these say what a client may send and what it gets back."""

from __future__ import annotations

from typing import Any, Final

# Snowflake ids exceed JavaScript's safe integers: a decimal string is accepted too.
_ID: Final = {
    "anyOf": [
        {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
        {"type": "string", "pattern": r"^[0-9]{1,19}$"},
    ]
}
_UUID: Final = {"type": "string", "format": "uuid"}
_TIME: Final = {"type": ["string", "null"], "format": "date-time"}
_INT_OR_NULL: Final = {"type": ["integer", "null"]}
_HOLDER: Final = {
    "type": "string",
    "minLength": 1,
    "description": "cloud:<site>/<user> or local:<site>/<user>; a site's token names"
    " local:<its site>/<user>, a user's token is its own holder",
}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _ms(limit: int, doc: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "maximum": limit, "description": doc}


# A lease held: lease_id + token prove ownership.
_LEASE_REF: Final = {"lease_id": _UUID, "token": _ID}

LEASE: Final = _obj(
    ["lease_id", "token", "table", "row_id", "site_id", "holder", "revision", "ttl_ms"],
    lease_id=_UUID,
    token={"type": "integer", "description": "fencing token: grows with every grant"},
    table={"type": "string"},
    row_id={"type": "integer"},
    site_id={"type": "integer"},
    holder={"type": "string"},
    version_major={"type": "integer"},
    version_minor={"type": "integer"},
    revision={"type": "integer"},
    saves={"type": "integer"},
    saved_revision=_INT_OR_NULL,
    ttl_ms={"type": "integer"},
    expires_in_ms={"type": "integer"},
    acquired_at=_TIME,
    renewed_at=_TIME,
    expires_at=_TIME,
    last_activity_at=_TIME,
    idle_warned_at=_TIME,
)
SAVE_RESULT: Final = _obj(
    ["status", "changed", "revision"],
    status={"enum": ["saved", "unchanged", "replayed"]},
    changed={"type": "boolean"},
    version_major={"type": "integer"},
    version_minor={"type": "integer"},
    revision={"type": "integer"},
    token={"type": "integer"},
)
SAVE_GRANT: Final = _obj(
    ["lease_id", "token", "bump", "saves", "remaining_ms"],
    lease_id=_UUID,
    token={"type": "integer"},
    bump={"enum": ["major", "minor"]},
    saves={"type": "integer"},
    remaining_ms={"type": "integer"},
)
LEASE_STATE: Final = {
    **_obj(
        ["status", "table", "row_id"],
        status={"enum": ["free", "held", "expired"]},
        table={"type": "string"},
        row_id={"type": "integer"},
        holder={"type": ["string", "null"]},
        token=_INT_OR_NULL,
        expires_in_ms=_INT_OR_NULL,
        editing_by={"enum": ["local", "cloud", None]},
    ),
}
RELEASED: Final = _obj(
    ["status", "lease_id", "token"],
    status={"const": "released"},
    lease_id=_UUID,
    token={"type": "integer"},
)
RECORDED: Final = _obj(["status"], status={"const": "recorded"})
BROKEN: Final = {"type": "object", "description": "the broken lease's holder and token"}
EVENTS: Final = _obj(
    ["events"],
    events={
        "type": "array",
        "items": _obj(
            ["seq", "event", "table", "row_id", "site_id"],
            seq={"type": "integer"},
            event={"type": "string"},
            table={"type": "string"},
            row_id={"type": "integer"},
            site_id={"type": "integer"},
            holder={"type": ["string", "null"]},
            token=_INT_OR_NULL,
            lease_id={"type": ["string", "null"]},
        ),
    },
)
HEALTH: Final = _obj(["status"], status={"const": "ok"})

ACQUIRE: Final = _obj(
    ["table", "row_id"],
    table={"type": "string", "minLength": 1},
    row_id=_ID,
    holder=_HOLDER,
    ttl_ms=_ms(86_400_000, "lease lifetime (default: the table's)"),
    wait_ms=_ms(30_000, "wait this long for a held lease to be released"),
)
RENEW: Final = _obj(["lease_id", "token"], **_LEASE_REF, ttl_ms=_ms(86_400_000, "new lifetime"))
LEASE_REF: Final = _obj(["lease_id", "token"], **_LEASE_REF)
BREAK: Final = _obj(
    ["table", "row_id"],
    table={"type": "string", "minLength": 1},
    row_id=_ID,
    reason={"type": "string", "maxLength": 500},
    by={**_HOLDER, "description": "a site's token: the local holder breaking it"},
)
SAVE: Final = _obj(
    ["lease_id", "token", "changes"],
    **_LEASE_REF,
    changes={"type": "object", "description": "column -> new value"},
    expected_revision=_ID,
    save_id={**_UUID, "description": "the client's id of this save: a retry is replayed"},
)
ROLLBACK: Final = _obj(
    ["lease_id", "token", "to_revision"],
    **_LEASE_REF,
    to_revision=_ID,
    expected_revision=_ID,
    save_id=_UUID,
)
BEGIN_SAVE: Final = _obj(["lease_id", "token", "base_revision"], **_LEASE_REF, base_revision=_ID)
END_SAVE: Final = _obj(
    ["lease_id", "token", "new_revision", "changed"],
    **_LEASE_REF,
    new_revision=_ID,
    changed={"type": "boolean"},
)
