"""Every route of the API app, declared once: method, path, handler, who may call it,
summary and the schemas of its bodies. ``make_app`` registers them; the OpenAPI
document (api/openapi.py) and the security sweeps (tests/api/test_security.py) walk
the same list, with the mounted apps' own declarations (``all_routes``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

from api import accounts, edit, metrics, sync, sync_files, ws
from api.blobs import app as blobs_app
from api.jsonschema import CURSOR, ERROR_REF, ID_PARAM, ID_SCHEMA, LIMIT, SITE_Q, obj, qparam, ref
from api.records import ACCOUNT_TABLES, TableSpec, table_specs
from api.views import conflicts as conflict_views
from api.views import meta, policy, signin, status
from api.views import records as record_views
from lockd import web as lockd_web
from schema.tables import Side
from schema.web import Access, Route, mounted

_ERROR: Final = {"application/json": {"schema": ERROR_REF}}

RECORDS: Final = "/v1/records/{table}"


def meta_routes() -> list[Route]:
    """What the app serves besides the REST resources: the status page, this document,
    Prometheus metrics and the event WebSocket."""
    tags = ("meta",)
    return [
        Route(
            "get",
            "/",
            meta.status_page,
            "status_page",
            "The status page (HTML; it signs in and follows /ws)",
            None,
            access=Access.PUBLIC,
            tags=tags,
            content_type="text/html",
        ),
        Route(
            "get",
            "/openapi.json",
            meta.openapi_json,
            "openapi",
            "This document",
            {"type": "object"},
            access=Access.PUBLIC,
            tags=tags,
        ),
        Route(
            "get",
            "/metrics",
            metrics.metrics,
            "metrics",
            "Prometheus metrics of this side (docs/api.md): the bearer token is the"
            " setting metrics_token; without it the endpoint is off (404)",
            None,
            access=Access.SCRAPE,
            extra_responses={
                "401": {"description": "no metrics token, or a wrong one", "content": _ERROR},
                "404": {"description": "metrics are off (no metrics_token)", "content": _ERROR},
            },
            tags=tags,
            content_type="text/plain",
        ),
        Route(
            "get",
            "/ws",
            ws.websocket,
            "websocket",
            "Live events: a WebSocket (docs/api.md); the token in the query, the"
            " Authorization header or the first message",
            None,
            status=101,
            params=(
                qparam("token", {"type": "string"}),
                qparam("last_event_id", {"type": "integer", "minimum": 0}),
            ),
            access=Access.WEBSOCKET,
            tags=tags,
        ),
    ]


def fetch_route(spec: TableSpec) -> Route:
    return Route(
        "post",
        f"/v1/records/{spec.name}/{{id}}/fetch",
        record_views.fetch_record,
        f"fetch_{spec.name}",
        f"On-demand: ask the site for the file of a {spec.name} record (cloud)",
        ref("FetchResult"),
        status=202,
        params=(ID_PARAM,),
        tags=("records",),
        template=RECORDS + "/{id}/fetch",
        extra_responses={
            "200": {
                "description": "the file is already in the cloud",
                "content": {"application/json": {"schema": ref("FetchResult")}},
            }
        },
    )


def record_routes(spec: TableSpec) -> list[Route]:
    t = spec.name
    base = f"/v1/records/{t}"
    tags = ("records",)
    filters: list[dict[str, Any]] = [LIMIT, CURSOR, SITE_Q]
    if spec.has_patient or t == "patients":
        filters.append(qparam("patient_id", ID_SCHEMA))
    if spec.has_modality:
        filters.append(qparam("modality", {"type": "string"}))
    filters += [
        qparam("since", {"type": "string", "format": "date-time"}, "updated_at >= since"),
        qparam("until", {"type": "string", "format": "date-time"}, "updated_at < until"),
        qparam("sync", {"type": "string", "enum": ["synced", "pending", "conflict", "off"]}),
        qparam("deleted", {"type": "string", "enum": ["true", "false", "any"]}, "default false"),
    ]
    rec = ref(f"Record_{t}")
    one = (ID_PARAM,)
    ops = [
        Route(
            "get",
            base,
            record_views.list_records,
            f"list_{t}",
            f"List {t}",
            ref(f"Page_{t}"),
            params=tuple(filters),
            tags=tags,
        ),
        Route(
            "post",
            base,
            record_views.create_record,
            f"create_{t}",
            f"Create a {t} record",
            rec,
            status=201,
            request=ref(f"Create_{t}"),
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
        Route(
            "get",
            f"{base}/{{id}}",
            record_views.get_record,
            f"get_{t}",
            f"Get a {t} record",
            rec,
            params=one,
            tags=tags,
        ),
        Route(
            "patch",
            f"{base}/{{id}}",
            record_views.update_record,
            f"update_{t}",
            f"Update a {t} record (a new save: version (A+1).0)",
            rec,
            request=ref(f"Update_{t}"),
            params=(ID_PARAM, qparam("expected_revision", ID_SCHEMA, "409 when it moved on")),
            tags=tags,
        ),
        Route(
            "delete",
            f"{base}/{{id}}",
            record_views.delete_record,
            f"delete_{t}",
            f"Soft-delete a {t} record",
            rec,
            params=one,
            tags=tags,
        ),
        Route(
            "get",
            f"{base}/{{id}}/history",
            record_views.history,
            f"history_{t}",
            f"Revisions of a {t} record, newest first",
            ref("History"),
            params=(ID_PARAM, qparam("limit", {"type": "integer", "minimum": 1, "maximum": 1000})),
            tags=tags,
        ),
        Route(
            "post",
            f"{base}/{{id}}/rollback",
            record_views.rollback,
            f"rollback_{t}",
            f"Restore an older revision of a {t} record as a new save",
            rec,
            request=obj({"revision": ID_SCHEMA}, additionalProperties=False),
            params=one,
            tags=tags,
        ),
        Route(
            "post",
            f"{base}/{{id}}/edit",
            edit.open_edit,
            f"edit_{t}",
            f"Open an edit session on a {t} record (lease from lockd)",
            ref("EditSession"),
            request=ref("EditRequest"),
            params=one,
            tags=("editing",),
        ),
        Route(
            "put",
            f"{base}/{{id}}/sync",
            record_views.set_sync,
            f"sync_switch_{t}",
            f"Turn sync on or off for one {t} record",
            rec,
            request=obj({"enabled": {"type": "boolean"}}, additionalProperties=False),
            params=one,
            tags=tags,
        ),
    ]
    # Served once for every table (the handler reads the table from the path).
    ops = [replace(op, template=RECORDS + op.path.removeprefix(base)) for op in ops]
    if t in ACCOUNT_TABLES:
        # Accounts change only through /v1/accounts (account_routes): the document lists
        # these read-only; a write of user_accounts through /v1/records is refused (403).
        readonly = ("list_", "get_", "history_", "sync_switch_")
        ops = [op for op in ops if op.operation_id.startswith(readonly)]
    return ops


def base_routes(side: Side) -> list[Route]:
    ops = [
        Route(
            "get",
            "/health",
            status.health,
            "health",
            "Liveness",
            ref("Health"),
            access=Access.PUBLIC,
            tags=("meta",),
        ),
        Route(
            "post",
            "/v1/auth/token",
            signin.auth_token,
            "auth_token",
            "Sign in: user name and password give a JWT",
            ref("Token"),
            request=ref("TokenRequest"),
            access=Access.PUBLIC,
            tags=("auth",),
        ),
        Route(
            "get",
            "/v1/me",
            signin.me,
            "me",
            "Who the token says you are",
            ref("Me"),
            tags=("auth",),
        ),
        Route(
            "get",
            "/v1/status",
            status.sync_status,
            "sync_status",
            "Sync health: outbox depth, lag per lane, open conflicts",
            ref("Status"),
            tags=("status",),
        ),
        Route(
            "get",
            "/v1/conflicts",
            conflict_views.list_conflicts,
            "list_conflicts",
            "Conflicts of your site",
            ref("ConflictPage"),
            params=(
                qparam("status", {"type": "string", "enum": ["open", "resolved", "all"]}),
                LIMIT,
                CURSOR,
                SITE_Q,
            ),
            tags=("conflicts",),
        ),
        Route(
            "get",
            "/v1/conflicts/{id}",
            conflict_views.get_conflict,
            "get_conflict",
            "One conflict with both versions",
            ref("Conflict"),
            params=(ID_PARAM,),
            tags=("conflicts",),
        ),
        Route(
            "post",
            "/v1/conflicts/{id}/resolve",
            conflict_views.resolve_conflict,
            "resolve_conflict",
            "Resolve: keep the local or the cloud version (saved as a new revision)",
            ref("Conflict"),
            request=obj(
                {"keep": {"type": "string", "enum": ["local", "cloud"]}},
                additionalProperties=False,
            ),
            params=(ID_PARAM,),
            tags=("conflicts",),
        ),
    ]
    for action, handler, summary, response, request in (
        (
            "heartbeat",
            edit.heartbeat,
            "Keep the session's lease alive (not user activity)",
            "LeaseInfo",
            None,
        ),
        (
            "activity",
            edit.activity,
            "User activity: resets the idle clock and renews",
            "LeaseInfo",
            None,
        ),
        (
            "save",
            edit.save,
            "Save changes, fenced by the lease (A.B versions)",
            "SaveResult",
            "SaveRequest",
        ),
        ("close", edit.close, "End the session and release the lease", "Closed", None),
    ):
        ops.append(
            Route(
                "post",
                f"/v1/edit-sessions/{action}",
                handler,
                f"edit_session_{action}",
                summary,
                ref(response),
                request=ref(request or "SessionRequest"),
                tags=("editing",),
            )
        )
    if side == "local":
        policy_schema = ref("Policy")
        ops.append(
            Route(
                "get",
                "/v1/sync/policy",
                policy.get_policy,
                "get_policy",
                "The site's sync scope",
                policy_schema,
                tags=("sync",),
            )
        )
        ops.append(
            Route(
                "put",
                "/v1/sync/policy",
                policy.put_policy,
                "put_policy",
                "Set the site's sync scope (admins)",
                policy_schema,
                request=ref("PolicyRequest"),
                tags=("sync",),
            )
        )
    if side == "cloud":
        ops.append(
            Route(
                "post",
                "/v1/sites/{site_id}/token",
                signin.issue_site_token,
                "issue_site_token",
                "A token for a site's replicator (vendor admins)",
                ref("Token"),
                request=obj(
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
    return ops


def account_routes() -> list[Route]:
    """/v1/accounts (api/accounts.py): admins of a site, never above their own role."""
    tags = ("accounts",)
    account = ref("Account")
    return [
        Route(
            "get",
            "/v1/accounts",
            accounts.list_accounts,
            "list_accounts",
            "Accounts of your site (admins)",
            ref("AccountPage"),
            params=(LIMIT, CURSOR, SITE_Q),
            tags=tags,
        ),
        Route(
            "post",
            "/v1/accounts",
            accounts.create_account,
            "create_account",
            "Create an account (admins; a role no higher than your own)",
            account,
            status=201,
            request=ref("CreateAccount"),
            params=(SITE_Q,),
            tags=tags,
        ),
        Route(
            "patch",
            "/v1/accounts/{id}",
            accounts.update_account,
            "update_account",
            "Change an account's password, role or profile (admins)",
            account,
            request=ref("UpdateAccount"),
            params=(ID_PARAM,),
            tags=tags,
        ),
        *(
            Route(
                "post",
                f"/v1/accounts/{{id}}/{action}",
                handler,
                f"{action}_account",
                summary,
                account,
                params=(ID_PARAM,),
                tags=tags,
            )
            for action, handler, summary in (
                (
                    "disable",
                    accounts.disable_account,
                    "Disable an account: no sign-in, its tokens revoked (admins)",
                ),
                (
                    "enable",
                    accounts.enable_account,
                    "Enable an account again (new tokens only; admins)",
                ),
            )
        ),
    ]


def app_routes(side: Side) -> list[Route]:
    """Every route the API app of ``side`` serves itself (``make_app`` registers them)."""
    routes = meta_routes() + base_routes(side) + account_routes()
    for spec in table_specs(side).values():
        routes += record_routes(spec)
        if side == "cloud" and spec.file_column is not None:
            routes.append(fetch_route(spec))
    return routes


def all_routes(side: Side, *, lockd: bool = True, blobs: bool = False) -> list[Route]:
    """The app's routes and, on the cloud, those of the apps it mounts: /v1/sync always,
    /v1/locks (``mount_lockd``) and /v1/blobs (``mount_blobs`` with an S3 bucket) as
    configured. What the document lists and the security sweeps walk."""
    routes = app_routes(side)
    if side == "cloud":
        routes += mounted("/v1/sync", [*sync.ROUTES, *sync_files.ROUTES])
        if lockd:
            routes += mounted("/v1/locks", lockd_web.ROUTES)
        if blobs:
            routes += mounted("/v1/blobs", blobs_app.ROUTES)
    return routes
