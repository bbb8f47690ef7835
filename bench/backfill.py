"""Backfill benchmark: metadata rows local -> cloud by scsync's backfill vs PostgreSQL's
native logical replication initial table copy of the same table, in the same run.

Both copy ``patients`` rows (no files) from a site's local database into a cloud
database on the same server. scsync: ``scsync backfill start`` as its own process
with its default batches (5,000 rows, two in flight: binary COPY out of the local table,
streamed to the cloud API (``scsync api run --side cloud``, its own process) with the
site's token, which COPYs it into a staging table on the cloud and applies it set-based
with history behind the tenant wall, then the rows marked synced locally), as in
production: the site holds no cloud database URL, the HTTP hop and the API's checks are
paid for. Its peak RSS is the backfill child's ``ru_maxrss``. Native: a publication on
the local database and a subscription (with
``copy_data``) from a second cloud database; timed from enabling the subscription until
its table is ``ready`` in ``pg_subscription_rel``.

Full run: 1,000,000 rows. ``--quick``: 100,000 rows. ``--batch-rows`` and
``--batches-in-flight`` are passed on to ``scsync backfill start`` (its defaults otherwise).
Prints a table, then one JSON line: scsync_rows_per_s, native_copy_rows_per_s, ratio,
peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from schema.urls import libpq_url
from scsync.devdb import admin_url, new_database

if __package__ in (None, ""):  # run as a file: bench/ is on the path, the repository not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._cloud_api import JWT_SECRET, CloudApi


def seed(local_url: str, rows: int) -> None:
    """`rows` patients that never crossed, written without triggers (as a legacy import)."""
    with psycopg.connect(libpq_url(local_url), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "INSERT INTO patients (id, site_id, patient_code, name, birth_date, phone, notes,"
            " revision)"
            " SELECT 1000000000 + g, 1, 'P' || g, 'Patient number ' || g,"
            " date '1950-01-01' + (g %% 20000), '+82-10-' || g,"
            " 'legacy record imported before the cloud was connected', 5000000000 + g"
            " FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE patients")


def register(cloud_url: str) -> None:
    from scsync.devdb import register_sites

    register_sites(cloud_url, ["bench-site"])  # site 1


def run_scsync(local_url: str, api_url: str, flags: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of `scsync backfill start` (with ``flags``) as a child
    process."""
    from schema.auth import site_token

    env = {
        **os.environ,
        "SCSYNC_LOCAL_DB_URL": local_url,
        "SCSYNC_CLOUD_API_URL": api_url,
        "SCSYNC_SITE_TOKEN": site_token(JWT_SECRET, 1, ttl_s=86400),
        "SCSYNC_SITE_ID": "1",
        "SCSYNC_CLOUD_DB_URL": "",  # a site command takes none
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scsync",
            "backfill",
            "start",
            "--no-progress",
            "--no-yield-to-live",
            *flags,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"backfill failed: {proc.stderr[-2000:]}")
    # ru_maxrss: kilobytes on Linux, the largest of the children waited for (only this
    # one: the cloud API is waited for after the figures are taken).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak_mb


def run_native(local_url: str, target_url: str, rows: int) -> float:
    """Seconds for logical replication's initial copy of `patients` into `target_url`."""
    src = make_url(libpq_url(local_url))
    conninfo = f"host={src.host} port={src.port} dbname={src.database} user={src.username}" + (
        f" password={src.password}" if src.password else ""
    )
    with psycopg.connect(libpq_url(local_url), autocommit=True) as pub:
        pub.execute("CREATE PUBLICATION bench_pub FOR TABLE patients")
        # A subscription into the same cluster cannot create its slot itself.
        pub.execute("SELECT pg_create_logical_replication_slot('bench_slot', 'pgoutput')")
    try:
        with psycopg.connect(libpq_url(target_url), autocommit=True) as sub:
            sub.execute(
                sql.SQL(
                    "CREATE SUBSCRIPTION bench_sub CONNECTION {} PUBLICATION bench_pub"
                    " WITH (create_slot = false, slot_name = 'bench_slot', enabled = false,"
                    " copy_data = true)"
                ).format(sql.Literal(conninfo))
            )
            t0 = time.perf_counter()
            sub.execute("ALTER SUBSCRIPTION bench_sub ENABLE")
            while True:
                state = sub.execute(
                    "SELECT srsubstate FROM pg_subscription_rel r"
                    " JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = 'bench_sub'"
                ).fetchone()
                if state and state[0] in ("r", "s"):
                    break
                if time.perf_counter() - t0 > 3600:
                    raise RuntimeError("native copy did not finish")
                time.sleep(0.02)
            seconds = time.perf_counter() - t0
            copied = sub.execute("SELECT count(*) FROM patients").fetchone()
            assert copied and copied[0] == rows, copied
            sub.execute("ALTER SUBSCRIPTION bench_sub DISABLE")
            sub.execute("ALTER SUBSCRIPTION bench_sub SET (slot_name = NONE)")
            sub.execute("DROP SUBSCRIPTION bench_sub")
    finally:
        with psycopg.connect(libpq_url(local_url), autocommit=True) as pub:
            pub.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                " WHERE slot_name = 'bench_slot'"
            )
            pub.execute("DROP PUBLICATION IF EXISTS bench_pub")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows (< 60 s)")
    parser.add_argument("--rows", type=int)
    # The backfill's own defaults unless given (to measure other batch shapes).
    parser.add_argument("--batch-rows", type=int)
    parser.add_argument("--batches-in-flight", type=int)
    args = parser.parse_args()
    flags = [
        f"--{name.replace('_', '-')}={value}"
        for name in ("batch_rows", "batches_in_flight")
        if (value := getattr(args, name)) is not None
    ]
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    pid = os.getpid()
    with ExitStack() as stack:
        admin = admin_url(stack, "bench-backfill-")
        local = new_database(stack, admin, f"bench_bf_local_{pid}", "local", 1, 1)
        cloud = new_database(stack, admin, f"bench_bf_cloud_{pid}", "cloud", 0, None)
        native_target = new_database(stack, admin, f"bench_bf_native_{pid}", "cloud", 5, None)
        register(cloud)
        workdir = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
        api_url = CloudApi(stack, cloud, workdir, log_level="WARNING").url
        seed(local, rows)
        native_s = run_native(local, native_target, rows)
        scsync_s, peak_mb = run_scsync(local, api_url, flags)
        with psycopg.connect(libpq_url(cloud)) as conn:
            got = conn.execute("SELECT count(*) FROM patients").fetchone()
        with psycopg.connect(libpq_url(local)) as conn:
            left = conn.execute("SELECT count(*) FROM patients WHERE NOT synced").fetchone()
        assert got and got[0] == rows and left and left[0] == 0, (got, left)
    scsync_rate = rows / scsync_s
    native_rate = rows / native_s
    print(f"{'path':<44} {'rows':>10} {'seconds':>8} {'rows/s':>10}")
    print(
        f"{'scsync backfill (COPY via API, apply, mark)':<44} {rows:>10,} {scsync_s:>8.2f} "
        f"{scsync_rate:>10,.0f}"
    )
    print(
        f"{'native logical replication initial copy':<44} {rows:>10,} {native_s:>8.2f} "
        f"{native_rate:>10,.0f}"
    )
    print(f"scsync backfill peak RSS: {peak_mb:.0f} MB")
    print(
        json.dumps(
            {
                "scsync_rows_per_s": round(scsync_rate),
                "native_copy_rows_per_s": round(native_rate),
                "ratio": round(scsync_rate / native_rate, 3),
                "peak_rss_mb": round(peak_mb, 1),
                "flags": flags,
            }
        )
    )


if __name__ == "__main__":
    main()
