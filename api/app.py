"""``make_app(side, settings)``: the local (SC Server) and cloud (SC Server Cloud) APIs.

One codebase, two sides. State lives under typed ``web.AppKey``s (api/state.py);
``cleanup_ctx`` opens the process's one connection pool (schema.database; the cloud's
mounted sync, lockd and blob apps share it) and owns the event listeners; ``on_shutdown``
closes the WebSockets. Every error leaves as JSON ``{"error", "message", "field"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import WSCloseCode, web

from api import edit, state, store
from api.errors import ConfigError, DatabaseError
from api.events import Hub, RabbitBus, listen
from api.http import admit_this_site
from api.openapi import document
from api.relay import follow_cloud
from api.routes import all_routes, app_routes
from api.settings import Settings
from api.throttle import LoginThrottle
from api.views import meta
from lockd.client import LockClient
from lockd.manager import LeaseManager, LockdConfig
from schema import database
from schema.auth import TokenCache
from schema.revocation import Revocations
from schema.urls import libpq_url
from schema.web import REVOCATIONS, TOKENS, Access, add_routes, bearer_auth, error_middleware

log = logging.getLogger("scsync.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _database_unavailable(exc: Exception) -> Exception | None:
    """The revocation check could not reach the database: 503, as a handler's would."""
    out = store.ERRORS.maybe(exc)
    return out if isinstance(out, DatabaseError) else None


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _db_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the process's one pool (made by make_app: the mounted apps share it)."""
    settings = app[state.SETTINGS]
    pool = app[state.POOL]
    try:
        await pool.open(wait=True, timeout=15)
    except Exception as exc:
        await pool.close()
        raise ConfigError(f"cannot connect to the database of setting 'db_url': {exc}") from exc
    try:
        async with store.db_errors(), pool.connection() as conn:
            node = await store.node(conn)
        if node is None or node["side"] != settings.side:
            raise ConfigError(
                f"the database of setting 'db_url' is not a configured {settings.side} database"
                " (scsync db upgrade / set-node)",
                field="db_url",
            )
    except BaseException:
        await pool.close()
        raise
    if settings.side == "local":
        app[state.NODE_SITE] = int(node["site_id"])
    try:
        yield
    finally:
        await pool.close()


async def _events_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[state.SETTINGS]
    hub = app[state.HUB]
    pool = app[state.POOL]
    tasks: list[asyncio.Task[None]] = []
    conninfo = libpq_url(settings.db_url)
    ready = asyncio.Event()
    bus: RabbitBus | None = None
    if settings.bus == "rabbitmq":
        bus = RabbitBus(settings.amqp_url, settings.amqp_exchange, hub)
        try:
            await bus.start()
        except Exception as exc:
            raise ConfigError(
                f"cannot reach RabbitMQ at setting 'amqp_url': {exc}", field="amqp_url"
            ) from exc
        app[state.BUS] = bus
        if state.SYNC_HINTS in app:
            hints = app[state.SYNC_HINTS]
            bus.hint_handlers.append(hints.hear)
            hints.live = True
        hub.last_id = await _max_id(pool)
        tasks.append(asyncio.create_task(bus.relay(conninfo, pool), name="api-event-relay"))
        ready.set()
    else:
        tasks.append(
            asyncio.create_task(
                listen(conninfo, pool, hub.dispatch, ready=ready, unheard=hub.unheard),
                name="api-listen",
            )
        )
    missing = relay_missing(settings)
    if missing:
        log.warning(
            "the cloud relay is off: setting %r of [api] is not set, so the cloud's lease"
            " events of this site (a cloud user editing a record: 'Editing by cloud', idle"
            " warnings and expiry of local leases) do not reach local clients",
            missing,
        )
    if settings.side == "local" and settings.cloud_url and settings.lockd_token:
        tasks.append(
            asyncio.create_task(
                follow_cloud(settings.cloud_url, settings.lockd_token, app[state.NODE_SITE], pool),
                name="api-cloud-relay",
            )
        )
    app[state.TASKS] = tasks
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ready.wait(), 15)
    # What a new client's hello reports as "now" (its resume point), before any event.
    hub.last_id = max(hub.last_id, await _max_id(pool))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if bus is not None:
            await bus.close()


def relay_missing(settings: Settings) -> str | None:
    """Local side: the first setting the cloud relay (api/relay.py) lacks, else None."""
    if settings.side != "local":
        return None
    for key in ("cloud_url", "lockd_token"):
        if not getattr(settings, key):
            return key
    return None


async def _lockd_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cloud: the LeaseManager of the edit endpoints, on the process's pool (shared
    with the mounted /v1/locks app). Local: the LockClient to the cloud's lockd."""
    settings = app[state.SETTINGS]
    if settings.side == "cloud":
        app[edit.LEASES] = LeaseManager(app[state.POOL], _lockd_config(settings))
        yield
        return
    client: LockClient | None = None
    if settings.lockd_url:
        client = LockClient(
            settings.lockd_url, settings.lockd_token, timeout_s=settings.lockd_timeout_s
        )
        app[edit.LOCK_CLIENT] = client
    try:
        yield
    finally:
        if client is not None:
            await client.close()


def _lockd_config(settings: Settings) -> LockdConfig:
    return LockdConfig(
        ttl_s=settings.lease_ttl_s,
        idle_warn_s=settings.idle_warn_s,
        idle_close_s=settings.idle_close_s,
    )


async def _max_id(pool: store.Pool) -> int:
    from api.events import max_event_id

    return await max_event_id(pool)


async def _close_websockets(app: web.Application) -> None:
    sockets = app[state.WEBSOCKETS]
    for socket in list(sockets):
        with contextlib.suppress(Exception):
            await socket.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


def make_app(side: str, settings: Settings) -> web.Application:
    """The API of one side; run it with ``web.run_app`` or aiohttp's test server."""
    if side != settings.side:
        raise ConfigError(f"side {side!r} does not match the settings' side {settings.side!r}")
    own = app_routes(settings.side)
    app = web.Application(
        middlewares=[
            error_middleware(log),
            security_headers,
            # Each mounted app (sync, lockd, blobs) checks its own tokens.
            bearer_auth(
                own,
                exempt=(Access.PUBLIC, Access.WEBSOCKET, Access.SCRAPE),
                admit=admit_this_site,
                unavailable=_database_unavailable,
                unmatched_needs_token=False,
            ),
        ],
        client_max_size=settings.client_max_size,
    )
    app[state.SETTINGS] = settings
    app[TOKENS] = TokenCache(settings.jwt_secret, settings.side)
    app[REVOCATIONS] = Revocations(
        lambda: app[state.POOL].connection(), settings.revocation_check_s
    )
    app[state.LOGINS] = LoginThrottle(
        settings.login_max_failures,
        settings.login_max_failures_per_address,
        settings.login_window_s,
    )
    app[state.HUB] = Hub()
    app[state.WEBSOCKETS] = state.Sockets()
    served = all_routes(
        settings.side,
        lockd=settings.mount_lockd,
        blobs=settings.mount_blobs and bool(settings.s3_bucket),
    )
    app[meta.OPENAPI_TEXT] = json.dumps(document(settings.side, served))
    app[meta.STATUS_PAGE] = meta.status_page_and_policy()
    # The process's one pool on its database: this app's, and on the cloud the mounted
    # sync, lockd and blob apps' too (schema.database; opened by _db_ctx).
    app[state.POOL] = database.make_pool(
        settings.db_url,
        name=f"scsync-api-{settings.side}",
        min_size=settings.pool_min,
        max_size=settings.pool_max,
    )
    app.cleanup_ctx.append(_db_ctx)
    app.cleanup_ctx.append(_events_ctx)
    app.cleanup_ctx.append(_lockd_ctx)
    app.on_shutdown.append(_close_websockets)

    add_routes(app, own)
    if settings.side == "cloud":
        _mount_cloud_subapps(app, settings)
    return app


def _mount_cloud_subapps(app: web.Application, settings: Settings) -> None:
    from api.sync import SyncSettings, make_sync_app, sync_hints

    sync_app = make_sync_app(
        SyncSettings(
            db_url=settings.db_url,
            jwt_secret=settings.jwt_secret,
            lease_ttl_s=settings.lane_lease_ttl_s,
            pool_size=settings.pool_max,
            revocation_check_s=settings.revocation_check_s,
            outbox_hints="bus" if settings.bus == "rabbitmq" else "listen",
        ),
        pool=app[state.POOL],
    )
    app[state.SYNC_HINTS] = sync_hints(sync_app)
    app.add_subapp("/v1/sync", sync_app)
    if settings.mount_lockd:
        from lockd.web import make_app as make_lockd_app

        app.add_subapp(
            "/v1/locks",
            make_lockd_app(
                jwt_secret=settings.jwt_secret,
                pool=app[state.POOL],
                config=_lockd_config(settings),
                revocation_check_s=settings.revocation_check_s,
            ),
        )
    if settings.mount_blobs and settings.s3_bucket:
        from api.blobs import BlobSettings, make_blobs_app

        app.add_subapp(
            "/v1/blobs",
            make_blobs_app(
                BlobSettings(
                    db_url=settings.db_url,
                    jwt_secret=settings.jwt_secret,
                    bucket=settings.s3_bucket,
                    s3_endpoint_url=settings.s3_endpoint_url or None,
                    s3_region=settings.s3_region,
                    s3_access_key=settings.s3_access_key or None,
                    s3_secret_key=settings.s3_secret_key or None,
                    verify_by=settings.s3_verify_by,
                    revocation_check_s=settings.revocation_check_s,
                    max_blob_size=settings.blob_max_size,
                ),
                pool=app[state.POOL],
            ),
        )
