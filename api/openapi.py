"""The OpenAPI 3.1 document of each side, generated from the table metadata and the
route list in api/app.py, so that what is documented is what is served."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from api.records import ACCOUNT_TABLES, ID_PATTERN, TableSpec, table_specs
from schema.tables import Side

ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
ID_SCHEMA: Final = {"type": "string", "pattern": ID_PATTERN}
NULLABLE_STR: Final = {"anyOf": [{"type": "string"}, {"type": "null"}]}
NULLABLE_ID: Final = {"anyOf": [ID_SCHEMA, {"type": "null"}]}
NULLABLE_TIME: Final = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    operation_id: str
    summary: str
    response: dict[str, Any] | None  # JSON schema of the success body; None = not JSON
    status: int = 200
    request: dict[str, Any] | None = None
    params: tuple[dict[str, Any], ...] = ()
    auth: bool = True
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"
    request_content_type: str = "application/json"
    extra_responses: dict[str, Any] = field(default_factory=dict)
    # OpenAPI links from the success response (e.g. create -> get by the new id).
    links: dict[str, Any] = field(default_factory=dict)


def _obj(props: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    out["required"] = list(props) if required is None else required
    out.update(extra)
    return out


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _q(name: str, schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        p["description"] = description
    return p


ID_PARAM: Final = {"name": "id", "in": "path", "required": True, "schema": ID_SCHEMA}
LIMIT: Final = _q("limit", {"type": "integer", "minimum": 1, "maximum": 200})
CURSOR: Final = _q("cursor", ID_SCHEMA, "next_cursor of the previous page")
SITE_Q: Final = _q(
    "site_id",
    {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "vendor admins: the site to act on; others: must be their own site",
)


def table_schemas(spec: TableSpec) -> dict[str, dict[str, Any]]:
    t = spec.name
    record = _obj({c.name: c.json_schema() for c in spec.readable}, additionalProperties=False)
    write_props = {n: spec.column(n).json_schema() for n in spec.writable}
    create = _obj(write_props, list(spec.required), additionalProperties=False)
    update = _obj(write_props, [], additionalProperties=False, minProperties=1)
    page = _obj(
        {"items": {"type": "array", "items": _ref(f"Record_{t}")}, "next_cursor": NULLABLE_ID}
    )
    return {f"Record_{t}": record, f"Create_{t}": create, f"Update_{t}": update, f"Page_{t}": page}


def fetch_op(spec: TableSpec) -> Op:
    return Op(
        "post",
        f"/v1/records/{spec.name}/{{id}}/fetch",
        f"fetch_{spec.name}",
        f"On-demand: ask the site for the file of a {spec.name} record (cloud)",
        _ref("FetchResult"),
        status=202,
        params=(ID_PARAM,),
        tags=("records",),
        extra_responses={
            "200": {
                "description": "the file is already in the cloud",
                "content": {"application/json": {"schema": _ref("FetchResult")}},
            }
        },
    )


def record_ops(spec: TableSpec) -> list[Op]:
    t = spec.name
    base = f"/v1/records/{t}"
    tags = ("records",)
    filters: list[dict[str, Any]] = [LIMIT, CURSOR, SITE_Q]
    if spec.has_patient or t == "patients":
        filters.append(_q("patient_id", ID_SCHEMA))
    if spec.has_modality:
        filters.append(_q("modality", {"type": "string"}))
    filters += [
        _q("since", {"type": "string", "format": "date-time"}, "updated_at >= since"),
        _q("until", {"type": "string", "format": "date-time"}, "updated_at < until"),
        _q("sync", {"type": "string", "enum": ["synced", "pending", "conflict", "off"]}),
        _q("deleted", {"type": "string", "enum": ["true", "false", "any"]}, "default false"),
    ]
    rec = _ref(f"Record_{t}")
    one = (ID_PARAM,)
    ops = [
        Op(
            "get",
            base,
            f"list_{t}",
            f"List {t}",
            _ref(f"Page_{t}"),
            params=tuple(filters),
            tags=tags,
        ),
        Op(
            "post",
            base,
            f"create_{t}",
            f"Create a {t} record",
            rec,
            status=201,
            request=_ref(f"Create_{t}"),
            params=(SITE_Q,),
            tags=tags,
            links={
                f"{name}_{t}": {
                    "operationId": f"{name}_{t}",
                    "parameters": {"id": "$response.body#/id"},
                }
                for name in ("get", "update", "delete", "history", "sync_switch", "edit")
            },
        ),
        Op("get", f"{base}/{{id}}", f"get_{t}", f"Get a {t} record", rec, params=one, tags=tags),
        Op(
            "patch",
            f"{base}/{{id}}",
            f"update_{t}",
            f"Update a {t} record (a new save: version (A+1).0)",
            rec,
            request=_ref(f"Update_{t}"),
            params=(ID_PARAM, _q("expected_revision", ID_SCHEMA, "409 when it moved on")),
            tags=tags,
        ),
        Op(
            "delete",
            f"{base}/{{id}}",
            f"delete_{t}",
            f"Soft-delete a {t} record",
            rec,
            params=one,
            tags=tags,
        ),
        Op(
            "get",
            f"{base}/{{id}}/history",
            f"history_{t}",
            f"Revisions of a {t} record, newest first",
            _ref("History"),
            params=(ID_PARAM, _q("limit", {"type": "integer", "minimum": 1, "maximum": 1000})),
            tags=tags,
        ),
        Op(
            "post",
            f"{base}/{{id}}/rollback",
            f"rollback_{t}",
            f"Restore an older revision of a {t} record as a new save",
            rec,
            request=_obj({"revision": ID_SCHEMA}, additionalProperties=False),
            params=one,
            tags=tags,
        ),
        Op(
            "post",
            f"{base}/{{id}}/edit",
            f"edit_{t}",
            f"Open an edit session on a {t} record (lease from lockd)",
            _ref("EditSession"),
            request=_ref("EditRequest"),
            params=one,
            tags=("editing",),
        ),
        Op(
            "put",
            f"{base}/{{id}}/sync",
            f"sync_switch_{t}",
            f"Turn sync on or off for one {t} record",
            rec,
            request=_obj({"enabled": {"type": "boolean"}}, additionalProperties=False),
            params=one,
            tags=tags,
        ),
    ]
    if t in ACCOUNT_TABLES:
        # Accounts change only through /v1/accounts (account_ops); these are read-only.
        readonly = ("list_", "get_", "history_", "sync_switch_")
        ops = [op for op in ops if op.operation_id.startswith(readonly)]
    return ops


def common_schemas() -> dict[str, Any]:
    return {
        "Error": _obj(
            {
                "error": {"type": "string"},
                "message": {"type": "string"},
                "field": NULLABLE_STR,
            },
            ["error", "message"],
        ),
        "History": _obj(
            {
                "items": {
                    "type": "array",
                    "items": _obj(
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
        "Conflict": _obj(
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
        "ConflictPage": _obj(
            {"items": {"type": "array", "items": _ref("Conflict")}, "next_cursor": NULLABLE_ID}
        ),
        "TokenRequest": _obj(
            {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1},
                "site_id": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
            },
            ["username", "password"],
            additionalProperties=False,
        ),
        "Token": _obj(
            {
                "token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["bearer"]},
                "expires_in": {"type": "integer"},
                "role": {"type": "string"},
                "site_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            },
            ["token", "token_type", "expires_in"],
        ),
        "Me": _obj(
            {
                "subject": {"type": "string"},
                "kind": {"type": "string", "enum": ["user", "site"]},
                "role": {"type": "string"},
                "site_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "side": {"type": "string", "enum": ["local", "cloud"]},
                "actor": {"type": "string"},
            }
        ),
        "Status": _obj(
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
            }
        ),
        "EditRequest": _obj({"offline": {"type": "boolean"}}, [], additionalProperties=False),
        "EditSession": _obj(
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
        "SessionRequest": _obj({"session": {"type": "string"}}, additionalProperties=False),
        "SaveRequest": _obj(
            {
                "session": {"type": "string"},
                "changes": {"type": "object"},
                "save_id": {"type": "string", "format": "uuid"},
            },
            ["session", "changes"],
            additionalProperties=False,
        ),
        "SaveResult": _obj(
            {
                "status": {"type": "string", "enum": ["saved", "unchanged", "replayed"]},
                "changed": {"type": "boolean"},
                "version": {"type": "string"},
                "revision": ID_SCHEMA,
                "offline": {"type": "boolean"},
            }
        ),
        "LeaseInfo": _obj(
            {
                "expires_in_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "ttl_ms": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                "offline": {"type": "boolean"},
            }
        ),
        "PolicyRequest": _obj(
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
        "Policy": _obj(
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
        "FetchResult": _obj(
            {
                "status": {"type": "string", "enum": ["requested", "uploaded"]},
                "sha256": {"type": "string"},
                "request_id": NULLABLE_ID,
            }
        ),
        "Closed": _obj({"status": {"type": "string", "enum": ["closed"]}}),
        "Health": _obj(
            {"status": {"type": "string"}, "side": {"type": "string", "enum": ["local", "cloud"]}}
        ),
    }


def base_ops(side: Side) -> list[Op]:
    ops = [
        Op("get", "/health", "health", "Liveness", _ref("Health"), auth=False, tags=("meta",)),
        Op(
            "post",
            "/v1/auth/token",
            "auth_token",
            "Sign in: user name and password give a JWT",
            _ref("Token"),
            request=_ref("TokenRequest"),
            auth=False,
            tags=("auth",),
        ),
        Op("get", "/v1/me", "me", "Who the token says you are", _ref("Me"), tags=("auth",)),
        Op(
            "get",
            "/v1/status",
            "sync_status",
            "Sync health: outbox depth, lag per lane, open conflicts",
            _ref("Status"),
            tags=("status",),
        ),
        Op(
            "get",
            "/v1/conflicts",
            "list_conflicts",
            "Conflicts of your site",
            _ref("ConflictPage"),
            params=(
                _q("status", {"type": "string", "enum": ["open", "resolved", "all"]}),
                LIMIT,
                CURSOR,
                SITE_Q,
            ),
            tags=("conflicts",),
        ),
        Op(
            "get",
            "/v1/conflicts/{id}",
            "get_conflict",
            "One conflict with both versions",
            _ref("Conflict"),
            params=(ID_PARAM,),
            tags=("conflicts",),
        ),
        Op(
            "post",
            "/v1/conflicts/{id}/resolve",
            "resolve_conflict",
            "Resolve: keep the local or the cloud version (saved as a new revision)",
            _ref("Conflict"),
            request=_obj(
                {"keep": {"type": "string", "enum": ["local", "cloud"]}},
                additionalProperties=False,
            ),
            params=(ID_PARAM,),
            tags=("conflicts",),
        ),
    ]
    for action, summary, response, request in (
        ("heartbeat", "Keep the session's lease alive (not user activity)", "LeaseInfo", None),
        ("activity", "User activity: resets the idle clock and renews", "LeaseInfo", None),
        ("save", "Save changes, fenced by the lease (A.B versions)", "SaveResult", "SaveRequest"),
        ("close", "End the session and release the lease", "Closed", None),
    ):
        ops.append(
            Op(
                "post",
                f"/v1/edit-sessions/{action}",
                f"edit_session_{action}",
                summary,
                _ref(response),
                request=_ref(request or "SessionRequest"),
                tags=("editing",),
            )
        )
    if side == "local":
        policy = _ref("Policy")
        ops.append(
            Op(
                "get",
                "/v1/sync/policy",
                "get_policy",
                "The site's sync scope",
                policy,
                tags=("sync",),
            )
        )
        ops.append(
            Op(
                "put",
                "/v1/sync/policy",
                "put_policy",
                "Set the site's sync scope (admins)",
                policy,
                request=_ref("PolicyRequest"),
                tags=("sync",),
            )
        )
    if side == "cloud":
        ops.append(
            Op(
                "post",
                "/v1/sites/{site_id}/token",
                "issue_site_token",
                "A token for a site's replicator (vendor admins)",
                _ref("Token"),
                request=_obj(
                    {"ttl_s": {"type": "integer", "minimum": 60, "maximum": 366 * 86400}},
                    [],
                    additionalProperties=False,
                ),
                params=(
                    {
                        "name": "site_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": r"^[0-9]{1,9}$"},
                    },
                ),
                tags=("auth",),
            )
        )
        ops += sync_ops() + sync_files_ops()
    return ops


def account_schemas(side: Side) -> dict[str, Any]:
    spec = table_specs(side)["user_accounts"]
    cols = {c.name: c.json_schema() for c in spec.readable}
    account = _obj({**cols, "disabled": {"type": "boolean"}}, additionalProperties=False)
    profile = {n: spec.column(n).json_schema() for n in ("display_name", "doctor_id")}
    password = {"type": "string", "minLength": 8, "maxLength": 1024}
    role = {"type": "string", "enum": ["viewer", "editor", "admin", "vendor_admin"]}
    return {
        "Account": account,
        "AccountPage": _obj(
            {"items": {"type": "array", "items": _ref("Account")}, "next_cursor": NULLABLE_ID}
        ),
        "CreateAccount": _obj(
            {
                "username": {"type": "string", "minLength": 1, "maxLength": 120},
                "password": password,
                "role": role,
                **profile,
            },
            ["username", "password"],
            additionalProperties=False,
        ),
        "UpdateAccount": _obj(
            {"password": password, "role": role, **profile},
            [],
            additionalProperties=False,
            minProperties=1,
        ),
    }


def account_ops() -> list[Op]:
    """/v1/accounts (api/accounts.py): admins of a site, never above their own role."""
    tags = ("accounts",)
    account = _ref("Account")
    return [
        Op(
            "get",
            "/v1/accounts",
            "list_accounts",
            "Accounts of your site (admins)",
            _ref("AccountPage"),
            params=(LIMIT, CURSOR, SITE_Q),
            tags=tags,
        ),
        Op(
            "post",
            "/v1/accounts",
            "create_account",
            "Create an account (admins; a role no higher than your own)",
            account,
            status=201,
            request=_ref("CreateAccount"),
            params=(SITE_Q,),
            tags=tags,
        ),
        Op(
            "patch",
            "/v1/accounts/{id}",
            "update_account",
            "Change an account's password, role or profile (admins)",
            account,
            request=_ref("UpdateAccount"),
            params=(ID_PARAM,),
            tags=tags,
        ),
        *(
            Op(
                "post",
                f"/v1/accounts/{{id}}/{action}",
                f"{action}_account",
                summary,
                account,
                params=(ID_PARAM,),
                tags=tags,
            )
            for action, summary in (
                ("disable", "Disable an account: no sign-in, its tokens revoked (admins)"),
                ("enable", "Enable an account again (new tokens only; admins)"),
            )
        ),
    ]


# The sync endpoints (api/sync.py, docs/replicator.md): a site token only; the site is
# the token's. push/apply takes JSON lines (a header, then rows) and pull/read answers
# JSON lines; every lane request names its lease holder in X-Scsync-Holder.
SYNC_ROUTES: tuple[tuple[str, str, str], ...] = (
    ("push/lease", "sync_push_lease", "Take or renew the push lane's lease"),
    ("push/release", "sync_push_release", "Give the push lane's lease back"),
    ("push/schema", "sync_push_schema", "The cloud's synced columns and schema revision"),
    ("push/apply", "sync_push_apply", "Apply a batch of the site's changes (JSON lines)"),
    ("push/forget", "sync_push_forget", "Forget acknowledged inbox entries"),
    ("push/inbox", "sync_push_inbox", "Batches applied but not yet acknowledged"),
    ("push/recover-rows", "sync_push_recover_rows", "What the cloud holds of some records"),
    ("pull/lease", "sync_pull_lease", "Take or renew the pull lane's lease"),
    ("pull/release", "sync_pull_release", "Give the pull lane's lease back"),
    ("pull/schema", "sync_pull_schema", "The cloud's synced columns and schema revision"),
    ("pull/read", "sync_pull_read", "The next batch of the site's cloud changes (JSON lines)"),
    ("pull/ack", "sync_pull_ack", "Acknowledge a pulled batch, park what failed"),
    ("pull/outbox-keys", "sync_pull_outbox_keys", "The records of some outbox seqs"),
    ("pull/depth", "sync_pull_depth", "The site's cloud outbox depth and lag"),
    ("pull/wait", "sync_pull_wait", "Long poll: answered when a change of the site commits"),
    ("status", "sync_site_status", "The site's sync figures on the cloud"),
)


def sync_ops() -> list[Op]:
    holder = {
        "name": "X-Scsync-Holder",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:/@+-]{1,200}$"},
    }
    return [
        Op(
            "post",
            f"/v1/sync/{path}",
            op_id,
            summary + " (site token)",
            None if path == "pull/read" else {"type": "object"},
            request={"type": "object"},
            params=(holder,),
            tags=("sync",),
            content_type="application/x-ndjson" if path == "pull/read" else "application/json",
        )
        for path, op_id, summary in SYNC_ROUTES
    ]


def sync_files_ops() -> list[Op]:
    """The site's file-area endpoints on the sync app (api/sync_files.py): a site token,
    the site the token's; a record or row of another site refuses the request (403)."""
    holder = {
        "name": "X-Scsync-Holder",
        "in": "header",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:/@+-]{1,200}$"},
    }
    ident = {"type": "string", "pattern": r"^[a-z_]+$"}
    pair = {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2}
    record = _obj({"t": ident, "id": {"type": "integer"}}, additionalProperties=False)
    records = {"type": "array", "items": record, "maxItems": 10_000}
    changed = _obj({"changed": records})

    def op(path: str, op_id: str, summary: str, response: Any, request: Any, **kw: Any) -> Op:
        return Op(
            "post",
            f"/v1/sync/{path}",
            op_id,
            summary + " (site token)",
            response,
            request=request,
            params=(holder, *kw.pop("params", ())),
            tags=("sync",),
            **kw,
        )

    return [
        op(
            "backfill/apply",
            "sync_backfill_apply",
            "Apply a backfill batch: the body is binary COPY rows of the named columns, "
            "streamed into the cloud's stage; every row must be the token's site's",
            _obj({"accepted": {"type": "array", "items": pair}}),
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
        op(
            "backfill/has",
            "sync_backfill_has",
            "Which of these blobs the cloud has verified for the site",
            _obj({"uploaded": {"type": "array", "items": {"type": "string"}}}),
            _obj({"shas": {"type": "array", "items": {"type": "string"}, "maxItems": 10_000}}),
        ),
        op(
            "records/switch",
            "sync_records_switch",
            "Mark the cloud copy of one record active (enabled) or deleted",
            _obj({"found": {"type": "boolean"}}),
            _obj({"table": ident, "id": {"type": "integer"}, "enabled": {"type": "boolean"}}),
        ),
        op(
            "records/restore",
            "sync_records_restore",
            "Make a backed-up cloud copy active again",
            _obj({"restored": {"type": "boolean"}}),
            _obj({"table": ident, "id": {"type": "integer"}}),
        ),
        op(
            "records/lifecycle",
            "sync_records_lifecycle",
            "Mark active cloud copies deleted or backed_up (the old-data option)",
            changed,
            _obj(
                {
                    "lifecycle": {"type": "string", "enum": ["deleted", "backed_up"]},
                    "records": records,
                }
            ),
        ),
        op(
            "records/blob-remote",
            "sync_records_blob_remote",
            "Mark cloud copies metadata only (their blob was deleted)",
            changed,
            _obj({"records": records}),
        ),
    ]


def all_ops(side: Side, extra: list[Op] | None = None) -> list[Op]:
    ops = base_ops(side) + account_ops()
    for spec in table_specs(side).values():
        ops += record_ops(spec)
        if side == "cloud" and spec.file_column is not None:
            ops.append(fetch_op(spec))
    return ops + list(extra or [])


def document(side: Side, extra: list[Op] | None = None) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in all_ops(side, extra):
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
        item["security"] = [{"bearerAuth": []}] if op.auth else []
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
                " Mounted sub-applications, documented apart: /v1/locks (docs/lockd.md),"
                " /v1/blobs (docs/files.md)."
                if side == "cloud"
                else ""
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
