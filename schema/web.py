"""The skeleton every web app of scsync shares (the API, its sync and blob sub-apps,
lockd): one declaration per route, from which the aiohttp router and the OpenAPI
document are both built, so a served route cannot be missing from the document nor from
the security sweeps that walk it (tests/api/test_security.py).

It lives in ``schema``, the lowest package: lockd may import nothing else, and the API
mounts lockd's app. Like ``schema.auth`` (tokens), ``schema.revocation`` and
``schema.errors`` it is shared plumbing of the services, not database schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(StrEnum):
    """Who may call a route, as far as the token goes (roles are the handler's)."""

    PUBLIC = "public"  # anyone, no token
    BEARER = "bearer"  # a token of this side in ``Authorization: Bearer`` (user or site)
    SITE = "site"  # a site's token (the sync endpoints)
    WEBSOCKET = "websocket"  # a token in the query, the header or the first message


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
