"""Files benchmark: scsync's upload path vs plain boto3 ``upload_file``, same endpoint.

scsync's path per file: presign (cloud API) -> PUT or multipart PUTs straight to S3 ->
complete (the cloud proves size and sha256 before recording it, with the API's default
``verify_by=checksum``: a HEAD for the SHA256 that S3 checked on a single PUT, a read
back for a multipart object). boto3 does only the PUTs. Both run in this same run
against the same moto S3 server over HTTP, with the same number of S3 streams at once
(``--concurrency``, 4): boto3 as threads with one file each, scsync as its Transfer's
bound while the API calls of up to 5 x that many files overlap, as in the backfill's
batches. The blob API runs as its own process
(``python -m api.blobs``); PostgreSQL is the embedded server (or ``SCSYNC_BENCH_PG_URL``
/ ``SCSYNC_TEST_PG_URL``, an admin URL).

Full run: 500 x 2 MB + 2 x 256 MB. ``--quick``: 40 x 2 MB + 1 x 48 MB. Two rounds in
alternating order (boto3, scsync, scsync, boto3); each side's best round counts, since
the machine is shared.
Prints a table, then one JSON line: scsync_mb_per_s, boto3_mb_per_s, ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp

from scsync.devdb import admin_url, new_database

MB = 1_000_000
MiB = 1024 * 1024
SECRET = "bench-files-secret-0123456789abcdef"


@contextmanager
def blobs_api(cloud_url: str, s3_url: str, bucket: str) -> Iterator[str]:
    from scsync.s3_server import ACCESS_KEY, REGION, SECRET_KEY, free_port

    port = free_port()
    env = {
        **os.environ,
        "SCSYNC_CLOUD_DB_URL": cloud_url,
        "SCSYNC_JWT_SECRET": SECRET,
        "SCSYNC_S3_BUCKET": bucket,
        "SCSYNC_S3_ENDPOINT_URL": s3_url,
        "SCSYNC_S3_REGION": REGION,
        "SCSYNC_S3_ACCESS_KEY": ACCESS_KEY,
        "SCSYNC_S3_SECRET_KEY": SECRET_KEY,
        "SCSYNC_S3_MULTIPART_THRESHOLD": str(64 * MiB),
        "SCSYNC_S3_PART_SIZE": str(16 * MiB),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.blobs", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}/v1/blobs"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/sites/1/requests", timeout=1)
            except urllib.error.HTTPError:
                break  # 401: it answers
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"blob API did not start: {err}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def make_files(root: Path, small: int, small_size: int, large: int, large_size: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(small + large):
        size = small_size if i < small else large_size
        path = root / f"f{i:04d}.bin"
        with path.open("wb") as f:
            left = size
            while left:
                n = min(left, MiB)
                f.write(os.urandom(n))
                left -= n
        out.append(path)
    return out


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


async def scsync_upload(
    base: str, files: list[tuple[Path, str, int]], concurrency: int, site_id: int
) -> float:
    from replicator.files.transfer import BlobApi, Transfer, TransferConfig
    from schema.auth import site_token

    # As in the backfill (a batch of files in progress, Transfer bounding the S3
    # streams): `concurrency` PUT/GET streams at once, like boto3's threads; the cloud
    # API calls of other files (presign, complete) overlap them.
    limit = asyncio.Semaphore(5 * concurrency)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        transfer = Transfer(
            # One site per round: each round uploads (no dedupe across rounds).
            BlobApi(session, base, site_token(SECRET, site_id), site_id),
            config=TransferConfig(concurrency=concurrency),
        )

        async def one(path: Path, sha: str, size: int) -> None:
            async with limit:
                out = await transfer.upload(path, sha, size)
                assert out.status == "uploaded", out

        t0 = time.perf_counter()
        await asyncio.gather(*(one(*f) for f in files))
        return time.perf_counter() - t0


def boto3_upload(
    s3: object, bucket: str, files: list[Path], concurrency: int, prefix: str
) -> float:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(max_concurrency=concurrency)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(
            pool.map(
                lambda p: s3.upload_file(str(p), bucket, f"{prefix}/{p.name}", Config=config),  # type: ignore[attr-defined]
                files,
            )
        )
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s)")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    small, small_size, large, large_size = (
        (40, 2 * MB, 1, 48 * MB) if args.quick else (500, 2 * MB, 2, 256 * MB)
    )
    from scsync.s3_server import S3Endpoint

    with ExitStack() as stack:
        admin = admin_url(stack, "bench-files-")
        cloud = new_database(stack, admin, f"bench_files_{os.getpid()}", "cloud", 0, None)
        s3_server = S3Endpoint()
        s3_server.start()
        stack.callback(s3_server.stop)
        s3 = s3_server.client()
        bucket = "bench-files"
        s3.create_bucket(Bucket=bucket)
        work = Path(tempfile.mkdtemp(prefix="bench-files-data-"))
        stack.callback(shutil.rmtree, work, True)
        paths = make_files(work, small, small_size, large, large_size)
        total = sum(p.stat().st_size for p in paths)
        items = [(p, sha256_file(p), p.stat().st_size) for p in paths]
        base = stack.enter_context(blobs_api(cloud, s3_server.url, bucket))
        # Warm the endpoint up so neither side pays for moto's first requests.
        s3.upload_file(str(paths[0]), bucket, "warmup")
        # Two rounds in alternating order on the shared machine; each side's best counts.
        boto_times: list[float] = []
        scsync_times: list[float] = []
        for round_no in (1, 2):
            runs = [
                lambda r=round_no: boto_times.append(
                    boto3_upload(s3, bucket, paths, args.concurrency, f"plain{r}")
                ),
                lambda r=round_no: scsync_times.append(
                    asyncio.run(scsync_upload(base, items, args.concurrency, r))
                ),
            ]
            for run in runs if round_no == 1 else reversed(runs):
                run()
        boto_s, scsync_s = min(boto_times), min(scsync_times)
    scsync_rate = total / MB / scsync_s
    boto_rate = total / MB / boto_s
    print(f"{'path':<34} {'files':>6} {'MB':>8} {'seconds':>8} {'MB/s':>8}")
    print(
        f"{'scsync (presign+PUT+verify)':<34} {len(paths):>6} {total / MB:>8.0f} "
        f"{scsync_s:>8.2f} {scsync_rate:>8.1f}"
    )
    print(
        f"{'boto3 upload_file':<34} {len(paths):>6} {total / MB:>8.0f} "
        f"{boto_s:>8.2f} {boto_rate:>8.1f}"
    )
    print(
        json.dumps(
            {
                "scsync_mb_per_s": round(scsync_rate, 1),
                "boto3_mb_per_s": round(boto_rate, 1),
                "ratio": round(scsync_rate / boto_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
