"""What a running blob app holds: the database pool, the S3 client and presigner
(``_State``, opened and closed by ``_resources``), and the row lookups every endpoint
shares."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
import psycopg
from aiohttp import web
from psycopg.rows import namedtuple_row

from api.errors import ConfigError
from api.presign import Presigner
from schema import database
from schema.database import fetch_one

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
from api.blobs.settings import BlobSettings
from api.blobs.target import _Target
from api.blobs.verify import PROBE_RETRY_S, _probe_sha256_check

T = TypeVar("T")


Conn = database.Conn
Pool = database.Pool


@dataclass
class _State:
    settings: BlobSettings
    # schema.database's pool (autocommit: a single statement is one round trip; the few
    # multi-statement steps open a transaction themselves). The cloud API's own pool
    # when mounted there.
    pool: Pool
    s3: S3Client
    presign: Presigner
    loop_executor: Any
    # Reads objects back through presigned GETs: aiohttp costs this process two thirds
    # of the CPU per object that botocore's get_object does (2 MB on moto: 2.7 vs 4.0 ms).
    http: aiohttp.ClientSession
    # verify_by=checksum trusts the checksum S3 keeps only where the store refuses a
    # wrong one. Probed once (None: not yet, or the probe could not tell).
    store_checks_sha256: bool | None = None
    probe_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_probe: float = 0.0

    async def verify_by(self) -> str:
        """The verification in force: the setting, except that ``checksum`` on a store
        that does not check ``x-amz-checksum-sha256`` (or that could not be probed
        yet: asked again at most once a minute) reads uploads back."""
        if self.settings.verify_by != "checksum":
            return self.settings.verify_by
        if self.store_checks_sha256 is None and time.monotonic() >= self.next_probe:
            async with self.probe_lock:
                if self.store_checks_sha256 is None and time.monotonic() >= self.next_probe:
                    self.store_checks_sha256 = await _probe_sha256_check(self)
                    self.next_probe = time.monotonic() + PROBE_RETRY_S
        return "checksum" if self.store_checks_sha256 else "read"

    async def s3_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # boto3 blocks; its calls run on a bounded pool so the event loop keeps serving.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.loop_executor, partial(fn, *args, **kwargs))


STATE: Final = web.AppKey("blobs_state", _State)


_SETTINGS: Final = web.AppKey("blobs_settings", BlobSettings)
# The pool of the process when the app is mounted (the cloud API's), else unset.
_POOL: Final = web.AppKey("blobs_pool", Pool)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from botocore.config import Config

    settings = app[_SETTINGS]
    own = _POOL not in app  # served alone: a pool of its own; mounted: the API's
    if own:
        pool = database.make_pool(
            settings.db_url,
            name="scsync-blobs",
            # Sized for 20 uploads overlapping; opened lazily beyond min_size.
            min_size=2,
            max_size=settings.db_pool_size,
            timeout_s=settings.db_timeout_s,
        )
        await pool.open()
    else:
        pool = app[_POOL]
    session = boto3.session.Session(
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        region_name=settings.s3_region,
    )
    credentials = session.get_credentials()
    if credentials is None:
        if own:
            await pool.close()
        raise ConfigError(
            "no S3 credentials: set the S3 access key and secret key, "
            "or run where AWS's own credential chain finds some"
        )
    s3 = session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            max_pool_connections=settings.executor_threads,
        ),
    )
    executor = ThreadPoolExecutor(settings.executor_threads, thread_name_prefix="blobs-s3")
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
    )
    # The store's checksum check is probed on the first upload (_State.verify_by), not
    # here: a store that is slow to answer must not hold up the start.
    app[STATE] = _State(
        settings=settings,
        pool=pool,
        s3=s3,
        presign=Presigner(
            credentials, settings.s3_endpoint_url, settings.s3_region, settings.bucket
        ),
        loop_executor=executor,
        http=http,
    )
    try:
        yield
    finally:
        await http.close()
        executor.shutdown(wait=False, cancel_futures=True)
        if own:
            await pool.close()


# -- database -----------------------------------------------------------------------------


async def _scalar(cur: psycopg.AsyncCursor[Any]) -> Any:
    """The first column of a statement that returns exactly one row."""
    row = await cur.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row[0]


async def _blob_row(conn: Conn, t: _Target) -> Any:
    """The blob's row (attributes: state, size, upload_id), None when unknown."""
    return await fetch_one(
        conn, "files_blob_get", {"site_id": t.site_id, "sha256": t.sha256}, row=namedtuple_row
    )
