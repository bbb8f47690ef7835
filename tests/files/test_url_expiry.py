"""Presigned URLs that expire while a transfer is under way: the site asks for fresh ones
and goes on, without re-sending what S3 already has.

moto accepts expired presigned URLs, so the endpoint here is moto behind a small proxy
that answers an expired one as S3 does (403 AccessDenied, "Request has expired")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from replicator.files.transfer import BlobApi, RateLimiter, Transfer, TransferConfig
from scsync.s3_server import S3Endpoint, free_port
from tests.files.conftest import BlobServer, blob_settings, start_blob_server
from tests.files.helpers import MiB, fetch, sha256_file, urandom_file
from tests.pg import TestDatabase

EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired</Message></Error>"
)
# Hop-by-hop or recomputed by the client session: never forwarded as they came.
DROPPED = {"host", "content-length", "transfer-encoding", "connection"}


@dataclass
class ExpiringS3:
    """A reverse proxy in front of moto that enforces X-Amz-Date + X-Amz-Expires."""

    upstream: str
    port: int = field(default_factory=free_port)
    # (method, path, query, status) of every request answered.
    log: list[tuple[str, str, dict[str, str], int]] = field(default_factory=list)
    # GETs of presigned URLs held this long before the expiry check (a site that queued
    # a download after getting its URL); only the first such GET.
    hold_first_get_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def expired(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, s in self.log if s == 403]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        if request.method == "GET" and "X-Amz-Expires" in query and self.hold_first_get_s:
            hold, self.hold_first_get_s = self.hold_first_get_s, 0.0
            await asyncio.sleep(hold)
        if "X-Amz-Expires" in query:
            signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            if time.time() > signed.timestamp() + int(query["X-Amz-Expires"]):
                await request.read()
                self.log.append((request.method, request.path, query, 403))
                return web.Response(status=403, body=EXPIRED, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
        body = await request.read()
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as up:
            data = await up.read()
            out = {k: v for k, v in up.headers.items() if k.lower() not in DROPPED}
        self.log.append((request.method, request.path, query, up.status))
        if request.method == "HEAD":  # no body, but the object's length, as S3 sends it
            head = web.StreamResponse(status=up.status, headers=out)
            head.content_length = up.content_length
            await head.prepare(request)
            return head
        return web.Response(status=up.status, body=data, headers=out)

    async def start(self) -> web.AppRunner:
        self.session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * MiB)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


@pytest.fixture
async def proxy(s3_endpoint: S3Endpoint) -> AsyncIterator[ExpiringS3]:
    p = ExpiringS3(s3_endpoint.url)
    runner = await p.start()
    try:
        yield p
    finally:
        await runner.cleanup()
        await p.session.close()


@pytest.fixture
def short_lived(
    cloud_db: TestDatabase, s3_endpoint: S3Endpoint, bucket: str, proxy: ExpiringS3
) -> Iterator[BlobServer]:
    """The blob endpoints signing 2-second URLs (1 to 2 s of life: X-Amz-Date has whole
    seconds) for the expiring endpoint."""
    settings = replace(
        blob_settings(cloud_db, s3_endpoint, bucket), s3_endpoint_url=proxy.url, url_ttl_s=2
    )
    server, shutdown = start_blob_server(settings, s3_endpoint)
    try:
        yield server
    finally:
        shutdown()


async def test_upload_renews_expired_part_urls_without_resending_finished_parts(
    short_lived: BlobServer,
    proxy: ExpiringS3,
    tmp_path: Path,
    cloud_db: TestDatabase,
) -> None:
    src = tmp_path / "ct.vol"
    sha = urandom_file(src, 21 * MiB)  # parts 5+5+5+5+1
    async with aiohttp.ClientSession() as session:
        api = BlobApi(session, short_lived.base_url, short_lived.token(1), 1)
        # 4 MiB/s: a 5 MiB part takes 1.25 s, so the URLs of later parts expire before use.
        t = Transfer(
            api,
            config=TransferConfig(concurrency=1, retries=12, retry_delay_s=0.05),
            limiter=RateLimiter(4 * MiB, burst=MiB),
        )
        out = await t.upload(src, sha, 21 * MiB)
        assert out.status == "uploaded"
        dest = tmp_path / "back.vol"
        await t.download(sha, dest)
    assert sha256_file(dest) == sha
    # URLs did expire under the upload, and the site asked for fresh ones.
    assert any(m == "PUT" for m, _ in proxy.expired())
    accepted = [int(q["partNumber"]) for m, _, q, s in proxy.log if m == "PUT" and s == 200 and q]
    # Every part reached S3 exactly once: a renewal never re-sends a finished part.
    assert sorted(accepted) == [1, 2, 3, 4, 5]
    rows = fetch(cloud_db, "SELECT state, size FROM scsync_blobs WHERE sha256 = :s", s=sha)
    assert [(r.state, r.size) for r in rows] == [("uploaded", 21 * MiB)]


async def test_download_with_an_expired_url_gets_a_fresh_one(
    short_lived: BlobServer, proxy: ExpiringS3, tmp_path: Path
) -> None:
    src = tmp_path / "x.bin"
    sha = urandom_file(src, 300_000)
    async with aiohttp.ClientSession() as session:
        t = Transfer(
            BlobApi(session, short_lived.base_url, short_lived.token(1), 1),
            config=TransferConfig(retries=3, retry_delay_s=0.05),
        )
        await t.upload(src, sha, 300_000)
        proxy.hold_first_get_s = 2.5  # the first URL is used after it expired
        dest = tmp_path / "store" / "x.bin"
        await t.download(sha, dest)
    assert sha256_file(dest) == sha
    assert [m for m, _ in proxy.expired()] == ["GET"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.bin"]
