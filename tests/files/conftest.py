"""Fixtures of the files tests: a bucket per test, the blob endpoints on a loopback port."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web

from api.blobs import BlobSettings, make_blobs_app
from replicator.files.cloud import FilesCloud
from replicator.settings import Settings, load_settings
from replicator.sites import register_site
from schema.auth import issue_token, site_token
from scsync.s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Endpoint, free_port
from tests.pg import TestDatabase
from tests.world import CloudApi, cloud_api

SECRET = "files-tests-secret-0123456789abcdef"
MiB = 1024 * 1024


@dataclass
class BlobServer:
    """The blob endpoints served by aiohttp's real server from a background thread."""

    settings: BlobSettings
    port: int
    s3: S3Endpoint

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/blobs"

    def token(self, site_id: int) -> str:
        return site_token(SECRET, site_id)

    def user_token(self, site_id: int, role: str = "viewer") -> str:
        return issue_token(
            SECRET, side="cloud", subject="user:ann", kind="user", role=role, site_id=site_id
        )

    def key(self, site_id: int, sha: str) -> str:
        return f"sites/{site_id}/blobs/{sha}"

    def put_count(self) -> int:
        """Uploads to this bucket (the blob API's probe of the store's checksum check,
        under scsync-probe/, is not one)."""
        prefix = f"/{self.settings.bucket}/"
        probe = f"{prefix}scsync-probe/"
        return sum(
            1
            for m, p in self.s3.request_log()
            if m == "PUT" and p.startswith(prefix) and not p.startswith(probe)
        )


def _serve(settings: BlobSettings, port: int, ready: threading.Event, stop: list[Any]) -> None:
    loop = asyncio.new_event_loop()
    root = web.Application()
    root.add_subapp("/v1/blobs", make_blobs_app(settings))
    runner = web.AppRunner(root)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    done = asyncio.Event()
    stop.append((loop, done))
    ready.set()
    loop.run_until_complete(done.wait())
    loop.run_until_complete(runner.cleanup())
    loop.close()


def start_blob_server(settings: BlobSettings, s3: S3Endpoint) -> tuple[BlobServer, Any]:
    port = free_port()
    ready = threading.Event()
    stop: list[Any] = []
    thread = threading.Thread(target=_serve, args=(settings, port, ready, stop), daemon=True)
    thread.start()
    assert ready.wait(20), "blob server did not start"

    def shutdown() -> None:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(20)

    return BlobServer(settings=settings, port=port, s3=s3), shutdown


@pytest.fixture
def bucket(s3_endpoint: S3Endpoint) -> str:
    name = f"scsync-{uuid.uuid4().hex[:12]}"
    s3_endpoint.client().create_bucket(Bucket=name)
    return name


def blob_settings(cloud_db: TestDatabase, s3: S3Endpoint, bucket: str) -> BlobSettings:
    return BlobSettings(
        db_url=cloud_db.url,
        jwt_secret=SECRET,
        bucket=bucket,
        s3_endpoint_url=s3.url,
        s3_region=REGION,
        s3_access_key=ACCESS_KEY,
        s3_secret_key=SECRET_KEY,
        multipart_threshold=6 * MiB,
        part_size=5 * MiB,
        url_ttl_s=300,
    )


def _blobs_verifying_by(
    mode: str | None, cloud_db: TestDatabase, s3_endpoint: S3Endpoint, bucket: str
) -> Iterator[BlobServer]:
    settings = blob_settings(cloud_db, s3_endpoint, bucket)
    server, shutdown = start_blob_server(
        settings if mode is None else replace(settings, verify_by=mode), s3_endpoint
    )
    try:
        yield server
    finally:
        shutdown()


@pytest.fixture
def blobs(cloud_db: TestDatabase, s3_endpoint: S3Endpoint, bucket: str) -> Iterator[BlobServer]:
    """The blob API with its default settings (verify_by=checksum)."""
    yield from _blobs_verifying_by(None, cloud_db, s3_endpoint, bucket)


@pytest.fixture
def read_blobs(
    cloud_db: TestDatabase, s3_endpoint: S3Endpoint, bucket: str
) -> Iterator[BlobServer]:
    yield from _blobs_verifying_by("read", cloud_db, s3_endpoint, bucket)


@pytest.fixture
def copy_blobs(
    cloud_db: TestDatabase, s3_endpoint: S3Endpoint, bucket: str
) -> Iterator[BlobServer]:
    yield from _blobs_verifying_by("copy", cloud_db, s3_endpoint, bucket)


__all__ = ["SECRET", "BlobServer", "blob_settings", "replace", "start_blob_server"]


@pytest.fixture
def sync_api(cloud_db: TestDatabase) -> Iterator[CloudApi]:
    """The cloud API's sync endpoints, with the blob endpoints' secret: one site token
    serves both, as on a real cloud API."""
    with cloud_api(cloud_db, jwt_secret=SECRET) as api:
        yield api


def site_settings(local_db: TestDatabase, api: CloudApi, site_id: int = 1) -> Settings:
    """A site's replicator settings for the files tests' sync API (its token is good for
    the blob endpoints too)."""
    return load_settings(
        None,
        local_db_url=local_db.url,
        cloud_api_url=api.url,
        site_token=site_token(SECRET, site_id),
        site_id=site_id,
    )


@pytest.fixture
async def files_cloud(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi
) -> AsyncIterator[FilesCloud]:
    """Site 1 registered on the cloud, and its way there: the cloud API's site endpoints
    with its token (no cloud database URL on the site)."""
    await cloud_db.acall(register_site, "clinic-one")
    async with FilesCloud(site_settings(local_db, sync_api)) as cloud:
        yield cloud
