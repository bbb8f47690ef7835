"""JSON schemas of the blob endpoints' bodies, for the OpenAPI document their routes
build (schema.web.Route); the handlers check the same rules and name what they refuse."""

from __future__ import annotations

from typing import Any, Final


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_SIZE: Final = {"type": "integer", "minimum": 0, "description": "the blob's size in bytes"}
_KEY: Final = {"type": "string", "description": "the S3 key (sites/<site>/blobs/<sha256>)"}
_EXPIRES: Final = {"type": "integer", "description": "seconds the URLs stay valid"}
_EXISTS: Final = _obj(["status", "key", "size"], status={"const": "exists"}, key=_KEY, size=_SIZE)

INFO: Final = _obj(
    ["sha256", "size", "state"],
    sha256={"type": "string"},
    size=_SIZE,
    state={"type": "string", "description": "pending or uploaded"},
)
UPLOAD: Final = _obj(
    ["size"],
    size=_SIZE,
    sends_headers={
        "type": "boolean",
        "description": "the client sends the plan's headers with its PUT (a signed"
        " x-amz-checksum-sha256: S3 itself then refuses other bytes)",
    },
    upload_id={"type": "string", "description": "the multipart upload to resume"},
)
UPLOAD_PLAN: Final = {
    "oneOf": [
        _obj(
            ["status", "key", "method", "url", "headers", "expires_in"],
            status={"const": "single"},
            key=_KEY,
            method={"const": "PUT"},
            url={"type": "string"},
            headers={"type": "object", "additionalProperties": {"type": "string"}},
            expires_in=_EXPIRES,
        ),
        _obj(
            ["status", "key", "upload_id", "part_size", "part_count", "parts"],
            status={"const": "multipart"},
            key=_KEY,
            upload_id={"type": "string"},
            part_size={"type": "integer"},
            part_count={"type": "integer"},
            uploaded_parts={"type": "array", "items": {"type": "object"}},
            expires_in=_EXPIRES,
            parts={
                "type": "array",
                "description": "the parts still to upload, each with its presigned PUT",
                "items": _obj(
                    ["part_number", "url"], part_number={"type": "integer"}, url={"type": "string"}
                ),
            },
        ),
        _EXISTS,
    ]
}
COMPLETE: Final = _obj(
    ["size"],
    size=_SIZE,
    upload_id={"type": "string", "description": "the multipart upload to complete"},
)
COMPLETED: Final = {
    "oneOf": [
        _obj(
            ["status", "key", "size"],
            status={"const": "uploaded"},
            key=_KEY,
            size=_SIZE,
            requests_served={"type": "integer"},
        ),
        _EXISTS,
    ]
}
DOWNLOAD: Final = _obj(
    ["key", "url", "method", "size", "expires_in"],
    key=_KEY,
    url={"type": "string"},
    method={"const": "GET"},
    size=_SIZE,
    expires_in=_EXPIRES,
)
REQUEST: Final = _obj(
    [],
    table={"enum": ["images", "captures", "project_files"]},
    row_id={
        "anyOf": [{"type": "integer"}, {"type": "string", "pattern": r"^[0-9]{1,19}$"}],
        "description": "the record that wants the file",
    },
)
REQUESTED: Final = _obj(
    ["status", "request_id"],
    status={"const": "requested"},
    request_id={"type": ["integer", "string"]},
)
ALREADY_UPLOADED: Final = _obj(["status", "key"], status={"const": "uploaded"}, key=_KEY)
DELETED: Final = _obj(["status", "key"], status={"const": "deleted"}, key=_KEY)
OPEN_REQUESTS: Final = _obj(
    ["requests"],
    requests={
        "type": "array",
        "items": _obj(
            ["id", "sha256", "requested_at"],
            id={"type": ["integer", "string"]},
            sha256={"type": "string"},
            table={"type": ["string", "null"]},
            row_id={"type": ["string", "null"]},
            requested_at={"type": "string", "format": "date-time"},
        ),
    },
)
