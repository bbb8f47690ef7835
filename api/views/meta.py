"""The status page (``/``) and the OpenAPI document (``/openapi.json``), both made once
per app at start (``make_app``) and served from its state."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

from aiohttp import web


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[OPENAPI_TEXT], content_type="application/json", charset="utf-8"
    )


def status_page_and_policy() -> tuple[str, str]:
    """The page and its Content-Security-Policy: only its own inline script (by hash)
    runs, and it talks only to this origin (REST and /ws)."""
    html = resources.files("api").joinpath("static/status.html").read_text(encoding="utf-8")
    script = html.split("<script>", 1)[1].split("</script>", 1)[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = (
        "default-src 'none'; "
        f"script-src 'sha256-{digest}'; style-src 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self'; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return html, csp


async def status_page(request: web.Request) -> web.Response:
    html, csp = request.app[STATUS_PAGE]
    return web.Response(
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": csp},
    )


OPENAPI_TEXT = web.AppKey("openapi_text", str)
STATUS_PAGE = web.AppKey("status_page", tuple[str, str])
