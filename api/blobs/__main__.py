"""``python -m api.blobs --port N``: the blob endpoints alone (settings from env)."""

from __future__ import annotations

from aiohttp import web

from api.blobs.app import make_blobs_app
from api.blobs.settings import BlobSettings


def main() -> None:
    """``python -m api.blobs --port N``: the blob endpoints alone (settings from env)."""
    import argparse

    parser = argparse.ArgumentParser(description="scsync blob endpoints (standalone)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    import uvloop

    from schema.redact import install

    install("WARNING")  # aiohttp quotes a refused request's headers: redacted
    root = web.Application()
    root.add_subapp("/v1/blobs", make_blobs_app(BlobSettings.from_env()))
    # As `scsync api run` and lockd serve: uvloop, no access log.
    web.run_app(
        root,
        host=args.host,
        port=args.port,
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
