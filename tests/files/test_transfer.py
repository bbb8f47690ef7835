"""Blob transfer through presigned URLs: dedupe, multipart resume, verified downloads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from replicator.files.errors import BlobCorrupt, BlobMissing
from replicator.files.localdb import make_pool
from replicator.files.transfer import (
    BlobApi,
    DbJournal,
    Transfer,
    TransferConfig,
    store_path,
)
from schema.database import Pool
from tests.files.conftest import BlobServer
from tests.files.helpers import MiB, fetch, sha256_file, urandom_file
from tests.pg import TestDatabase


@pytest.fixture
async def local_pool(local_db: TestDatabase) -> AsyncIterator[Pool]:
    pool = make_pool(local_db.url)
    await pool.open()
    yield pool
    await pool.close()


def _parts_put(blobs: BlobServer, sha: str) -> list[str]:
    key = f"/{blobs.settings.bucket}/{blobs.key(1, sha)}"
    return [
        p for m, p in blobs.s3.request_log(include_query=True) if m == "PUT" and p.startswith(key)
    ]


async def test_upload_download_byte_identical_and_dedupe(
    blobs: BlobServer, tmp_path: Path, local_pool: Pool
) -> None:
    src = tmp_path / "small.bin"
    sha = urandom_file(src, 700_000)
    async with aiohttp.ClientSession() as session:
        t = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1), DbJournal(local_pool))
        first = await t.upload(src, sha, src.stat().st_size)
        assert (first.status, first.bytes_sent) == ("uploaded", 700_000)
        puts = len(_parts_put(blobs, sha))
        again = await t.upload(src, sha, src.stat().st_size)
        assert again.status == "exists"
        assert len(_parts_put(blobs, sha)) == puts == 1
        dest = store_path(tmp_path / "store", sha)
        await t.download(sha, dest)
    assert sha256_file(dest) == sha
    assert list(dest.parent.iterdir()) == [dest]  # no temporary file left behind


async def test_multipart_round_trip_with_bounded_chunks(
    blobs: BlobServer, tmp_path: Path, local_pool: Pool, local_db: TestDatabase
) -> None:
    src = tmp_path / "ct.vol"
    sha = urandom_file(src, 17 * MiB)  # parts 5+5+5+2
    async with aiohttp.ClientSession() as session:
        api = BlobApi(session, blobs.base_url, blobs.token(1), 1)
        t = Transfer(api, DbJournal(local_pool), TransferConfig(concurrency=2))
        out = await t.upload(src, sha, 17 * MiB)
        assert (out.status, out.parts_sent) == ("uploaded", 4)
        dest = tmp_path / "back" / "ct.vol"
        await t.download(sha, dest)
    assert sha256_file(dest) == sha
    assert len(_parts_put(blobs, sha)) == 4
    assert fetch(local_db, "SELECT * FROM scsync_uploads") == []  # journal cleared


async def test_multipart_resume_after_crash_sends_only_missing_parts(
    blobs: BlobServer, tmp_path: Path, local_pool: Pool, local_db: TestDatabase
) -> None:
    src = tmp_path / "big.vol"
    sha = urandom_file(src, 21 * MiB)  # 5 parts
    async with aiohttp.ClientSession() as session:
        api = BlobApi(session, blobs.base_url, blobs.token(1), 1)
        t = Transfer(api, DbJournal(local_pool), TransferConfig(concurrency=1))
        task = asyncio.create_task(t.upload(src, sha, 21 * MiB))
        # "Crash" once two parts are recorded in the journal.
        for _ in range(400):
            done = fetch(local_db, "SELECT part_number FROM scsync_upload_parts")
            if len(done) >= 2:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        finished = {
            r.part_number for r in fetch(local_db, "SELECT part_number FROM scsync_upload_parts")
        }
        assert len(finished) >= 2
        before = len(_parts_put(blobs, sha))
        t2 = Transfer(api, DbJournal(local_pool))
        out = await t2.upload(src, sha, 21 * MiB)
        assert out.status == "uploaded"
        after = _parts_put(blobs, sha)[before:]
        resent = {int(p.split("partNumber=")[1].split("&")[0]) for p in after}
        assert resent and not (resent & finished)
        dest = tmp_path / "back.vol"
        await t2.download(sha, dest)
    assert sha256_file(dest) == sha


async def test_corrupted_download_is_detected_and_never_written_in_place(
    blobs: BlobServer, tmp_path: Path
) -> None:
    src = tmp_path / "x.bin"
    sha = urandom_file(src, 200_000)
    dest = tmp_path / "store" / "x.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"previous content")
    async with aiohttp.ClientSession() as session:
        t = Transfer(
            BlobApi(session, blobs.base_url, blobs.token(1), 1),
            config=TransferConfig(retries=2, retry_delay_s=0.01),
        )
        await t.upload(src, sha, 200_000)
        # Bytes changed at the endpoint, same size.
        blobs.s3.client().put_object(
            Bucket=blobs.settings.bucket, Key=blobs.key(1, sha), Body=b"\0" * 200_000
        )
        gets_before = sum(1 for m, _ in blobs.s3.request_log() if m == "GET")
        with pytest.raises(BlobCorrupt):
            await t.download(sha, dest)
        gets = sum(1 for m, _ in blobs.s3.request_log() if m == "GET") - gets_before
    assert gets == 2  # retried
    assert dest.read_bytes() == b"previous content"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.bin"]


@pytest.mark.parametrize("server", ["blobs", "read_blobs"])  # verify_by checksum, read
async def test_a_file_that_changed_is_not_uploaded(
    server: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    blobs: BlobServer = request.getfixturevalue(server)
    src = tmp_path / "y.bin"
    sha = urandom_file(src, 1000)
    async with aiohttp.ClientSession() as session:
        t = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
        with pytest.raises(BlobMissing):
            await t.upload(src, sha, 999)
        with pytest.raises(BlobMissing):
            await t.upload(tmp_path / "gone.bin", sha, 1000)
        # Same size, other bytes: S3 (checksum mode) or the cloud's read-back refuses
        # them, once: sending the same bytes again cannot help.
        src.write_bytes(b"x" * 1000)
        puts = blobs.put_count()
        refusal = "BadDigest" if blobs.settings.verify_by == "checksum" else "sha256 of the"
        with pytest.raises(BlobMissing, match=f"does not match it: .*{refusal}"):
            await t.upload(src, sha, 1000)
        assert blobs.put_count() == puts + 1
        assert await t.api.info(sha) is None
