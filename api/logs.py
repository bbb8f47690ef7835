"""The API's logs: an access log that never holds a credential.

A request line is logged as method, path, status and duration: never the query string
(a WebSocket client may carry its token there: ``/ws?token=``), never a header (the
``Authorization`` header carries the token), never a body (sign-in carries the
password). aiohttp's default access log writes the whole request line (``%r``), query
string included, so the API runs with this one instead.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger


class SafeAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def configure(level: str) -> None:
    """Log to stderr at `level` (the setting ``log_level``), credentials redacted
    (schema/redact.py)."""
    from schema.redact import install

    install(level)
