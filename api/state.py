"""Typed keys of the application state (aiohttp web.AppKey), shared by the modules."""

from __future__ import annotations

import asyncio
import weakref
from typing import Final

from aiohttp import web

from api.events import Hub, RabbitBus
from api.settings import Settings
from api.store import Pool
from api.sync import Hints
from api.throttle import LoginThrottle

SETTINGS: Final = web.AppKey("settings", Settings)
POOL: Final = web.AppKey("pool", Pool)
HUB: Final = web.AppKey("hub", Hub)
# The site this local API serves (from scsync_node); None on the cloud.
NODE_SITE: Final = web.AppKey("node_site", int)


class Sockets(weakref.WeakSet[web.WebSocketResponse]):
    """The open WebSockets, closed by on_shutdown."""


WEBSOCKETS: Final = web.AppKey("websockets", Sockets)
BUS: Final = web.AppKey("bus", RabbitBus)
TASKS: Final = web.AppKey("tasks", list[asyncio.Task[None]])
LOGINS: Final = web.AppKey("logins", LoginThrottle)
# The sync endpoints' long-poll wake-ups (cloud), fed by the RabbitMQ bus when there is
# one; /v1/status shows them.
SYNC_HINTS: Final = web.AppKey("sync_hints", Hints)
