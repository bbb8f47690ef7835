"""The skeleton every web app of scsync shares (the API, its sync and blob sub-apps,
lockd): one declaration per route, from which the aiohttp router and the OpenAPI
document are both built, so a served route cannot be missing from the document nor from
the security sweeps that walk it (tests/api/test_security.py); one error middleware
that answers every error as ``{"error", "message", "field", ...}``; one bearer-token
middleware that checks the token of every route the declaration does not make public
(each app its own routes, with its own rule on whom it serves).

It lives in ``schema``, the lowest package: lockd may import nothing else, and the API
mounts lockd's app. Like ``schema.auth`` (tokens), ``schema.revocation`` and
``schema.errors`` it is shared plumbing of the services, not database schema.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

from aiohttp import web
from aiohttp.typedefs import Middleware

from schema.auth import AuthError, Principal, TokenCache, bearer
from schema.errors import EXIT_CODES, Category, ScsyncError
from schema.revocation import Revocations

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# An app's translation of the driver errors its handlers let through (None: not one).
Translate = Callable[[web.Request, Exception], ScsyncError | None]

# State of the apps that authenticate with bearer_auth.
TOKENS: Final = web.AppKey("scsync_tokens", TokenCache)
REVOCATIONS: Final = web.AppKey("scsync_revocations", Revocations)
PRINCIPAL: Final = web.RequestKey("scsync_principal", Principal)


class Access(StrEnum):
    """Who may call a route, as far as the token goes (roles are the handler's)."""

    PUBLIC = "public"  # anyone, no token
    BEARER = "bearer"  # a token of this side in ``Authorization: Bearer`` (user or site)
    SITE = "site"  # a site's token (the sync endpoints)
    WEBSOCKET = "websocket"  # a token in the query, the header or the first message
    # The monitoring's own bearer token (api setting metrics_token), no user's or site's
    # JWT: a scrape credential that opens nothing else. Checked by the handler.
    SCRAPE = "scrape"


@dataclass(frozen=True)
class Route:
    """One endpoint: what the router serves and what the OpenAPI document says of it."""

    method: str  # lower case, as in OpenAPI: get, post, put, patch, delete
    path: str  # relative to the app that serves it (a sub-app's mount prefix apart)
    handler: Handler
    operation_id: str
    summary: str
    response: dict[str, Any] | None  # JSON schema of the success body; None = not JSON
    status: int = 200
    request: dict[str, Any] | None = None
    params: tuple[dict[str, Any], ...] = ()
    access: Access = Access.BEARER
    tags: tuple[str, ...] = ()
    content_type: str = "application/json"
    request_content_type: str = "application/json"
    extra_responses: dict[str, Any] = field(default_factory=dict)
    # OpenAPI links from the success response (e.g. create -> get by the new id).
    links: dict[str, Any] = field(default_factory=dict)
    # The path the router serves when one handler serves several documented paths
    # (``/v1/records/{table}`` for ``/v1/records/patients``, ...); None: ``path``.
    template: str | None = None

    @property
    def served_path(self) -> str:
        return self.path if self.template is None else self.template

    @property
    def auth(self) -> bool:
        """Whether a request without a valid token is refused (401)."""
        return self.access is not Access.PUBLIC

    def mounted(self, prefix: str) -> Route:
        """This route as the parent app serves it, under a sub-app's prefix."""
        template = None if self.template is None else prefix + self.template
        return replace(self, path=prefix + self.path, template=template)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Register each route's handler once per served path (GET also answers HEAD, as
    aiohttp's add_get does)."""
    handlers: dict[tuple[str, str], Handler] = {}
    for route in routes:
        key = (route.method, route.served_path)
        if key in handlers:
            if handlers[key] is not route.handler:
                raise ValueError(f"{route.method} {route.served_path}: two handlers")
            continue
        handlers[key] = route.handler
        if route.method == "get":
            app.router.add_get(route.served_path, route.handler)
        else:
            app.router.add_route(route.method.upper(), route.served_path, route.handler)


def mounted(prefix: str, routes: Iterable[Route]) -> list[Route]:
    return [route.mounted(prefix) for route in routes]


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    """``(method, path)`` of every route the app and its sub-apps serve (HEAD, which
    aiohttp adds to each GET, left out): what the tests compare with the document. A
    mounted app's paths carry its prefix (aiohttp adds it when mounting)."""
    out: set[tuple[str, str]] = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            out |= served_routes(resource.get_info()["app"])
            continue
        for route in resource:
            if route.method not in ("HEAD", "*"):
                out.add((route.method.lower(), resource.canonical))
    return out


# --- errors ---------------------------------------------------------------------------


class HttpError(ScsyncError):
    """An answer whose status and code are given where it is raised: the middlewares'
    own (no token, unknown endpoint, method, body too large) and the apps' ad-hoc ones."""

    public = True

    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, **extra: Any
    ) -> None:
        super().__init__(message, field=field, **extra)
        self.status = status
        self.code = code
        if status == 503:
            self.category = Category.UNAVAILABLE
        elif status < 500:
            self.category = Category.REFUSED
        self.exit_code = EXIT_CODES[self.category]


INTERNAL: Final = {"error": "internal_error", "message": "internal error", "field": None}


def error_response(exc: ScsyncError) -> web.Response:
    """The JSON error body of ``exc`` with its status (and ``Retry-After`` when it says)."""
    response = web.json_response(exc.body(), status=exc.status)
    retry_after = exc.extra.get("retry_after")
    if isinstance(retry_after, int):
        response.headers["Retry-After"] = str(retry_after)
    return response


def _from_http(request: web.Request, exc: web.HTTPException) -> HttpError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return HttpError(413, "payload_too_large", "the body exceeds the size limit")
    if isinstance(exc, web.HTTPNotFound):
        return HttpError(404, "not_found", f"no such endpoint: {request.path}")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return HttpError(405, "method_not_allowed", f"{request.method} is not allowed here")
    return HttpError(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or "")


def error_middleware(log: logging.Logger, translate: Translate | None = None) -> Middleware:
    """Every error leaves as JSON ``{"error", "message", "field", ...}`` with its status:
    a public ScsyncError as it says, aiohttp's own (404, 405, 413, ...) by their status,
    a driver error as ``translate`` maps it; anything else is a bug: logged, and
    answered 500 ``internal_error`` without its message."""

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ScsyncError as exc:
            if exc.public:
                return error_response(exc)
            log.exception("unhandled error on %s %s", request.method, request.path)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error_response(_from_http(request, exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            mapped = None if translate is None else translate(request, exc)
            if mapped is not None:
                return error_response(mapped)
            log.exception("unhandled error on %s %s", request.method, request.path)
        return web.json_response(INTERNAL, status=500)

    return errors


# --- authentication -------------------------------------------------------------------


def bearer_auth(
    routes: Iterable[Route],
    *,
    exempt: Iterable[Access] = (Access.PUBLIC,),
    admit: Callable[[web.Request, Principal], None] | None = None,
    unavailable: Callable[[Exception], Exception | None] | None = None,
    unmatched_needs_token: bool = True,
) -> Middleware:
    """Every route of this app but those whose access is ``exempt`` (the PUBLIC ones;
    the API also leaves its WebSocket, which takes a token in its first message, to its
    handler) takes ``Authorization: Bearer <JWT>`` that ``app[TOKENS]`` verifies and
    ``app[REVOCATIONS]`` has not revoked (401 otherwise); the caller goes to
    ``request[PRINCIPAL]``. ``admit`` refuses a principal the app does not serve
    (raising its own error) before the revocation check; ``unavailable`` maps the
    check's database failure to the app's error (None: as it is). A request for no
    route of this app needs a token too unless ``unmatched_needs_token`` is False (the
    API answers 404/405 first); a mounted app's routes are left to its own middleware."""
    skipped = frozenset(exempt)
    open_handlers = frozenset(route.handler for route in routes if route.access in skipped)

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if (
            match.apps[-1] is not request.app
            or match.handler in open_handlers
            or (match.http_exception is not None and not unmatched_needs_token)
        ):
            return await handler(request)
        try:
            principal = request.app[TOKENS].principal(bearer(request.headers.get("Authorization")))
        except AuthError as exc:
            raise HttpError(401, "unauthorized", str(exc)) from exc
        if admit is not None:
            admit(request, principal)
        try:
            await request.app[REVOCATIONS].check(principal)
        except AuthError as exc:
            raise HttpError(401, "unauthorized", str(exc)) from exc
        except Exception as exc:
            mapped = None if unavailable is None else unavailable(exc)
            if mapped is None:
                raise
            raise mapped from exc
        request[PRINCIPAL] = principal
        return await handler(request)

    return auth
