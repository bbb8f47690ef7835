"""Replication benchmark: scsync's push lane vs PostgreSQL's native logical replication,
same workload, same machine, one run.

Two embedded PostgreSQL clusters (``wal_level=logical``): cluster A holds the site's
local database and the native publisher, cluster B the cloud database and the native
subscriber. scsync runs as its own processes: the cloud API (``scsync api run --side
cloud``, on cluster B's database) and the site's replicator (``scsync replicator run``,
push lane only), which reaches the cloud only through the cloud API's sync endpoints
with its site token, as in production (the HTTP hop and the API's checks are paid for).

1. insert throughput: N inserts of ~1 KB image rows in 1,000-row transactions; rows/s
   from the first insert until the last row is visible at the destination;
2. update throughput: U rows of step 1 (the lowest ids) get a new description in
   1,000-row transactions (for scsync a content change: a new revision per row,
   replicated); rows/s from the first update until every updated row shows the new
   description at the destination (``*_update_rows_per_s``), and the writer alone until
   its last commit (``update_writer_ratio``);
3. latency: single-row updates at 200/s; commit -> visible, stamped on the destination by
   an ``ENABLE ALWAYS`` trigger (the same machine's clock on both clusters);
4. memory: the replicator's peak RSS (VmHWM) while a backlog written with the replicator
   stopped drains.

Steps 2 and 3 start once each peer has finished the previous step's work and SETTLE_S
has passed: for scsync that is when the site has recorded every row as synced (the acks
and their events, which go on after the rows are visible at the cloud; step 1's tail is
reported as ``scsync_ack_tail_s``), so a step measures its own load, not the tail of the
one before (step 1's put the latency p99 at 100+ ms in the first tenth of the updates).

Full run: 100,000 rows, 20,000 updated rows, 2,000 single-row updates, 1,000,000-row
backlog. ``--quick``: 10,000 rows, 2,000 updated rows, 300 single-row updates,
20,000-row backlog. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from schema import migrate
from schema.urls import libpq_url

if __package__ in (None, ""):  # run as a file: bench/ is on the path, the repository not
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._cloud_api import JWT_SECRET, CloudApi

DESCRIPTION = "x" * 1000  # ~1 KB per image row
BATCH = 1000
SETTLE_S = 1.0  # before the update and the latency step, for both peers
# The update step's new description: the same size, its end told apart from the inserts'.
UPDATE_MARKER = "#updated"
UPDATED_DESCRIPTION = DESCRIPTION[: -len(UPDATE_MARKER)] + UPDATE_MARKER
NATIVE_TABLE = """
CREATE TABLE images_plain (
    id bigint PRIMARY KEY, site_id int NOT NULL, patient_id bigint NOT NULL,
    revision bigint NOT NULL, kind text NOT NULL DEFAULT '2d', modality text,
    description text, tags jsonb NOT NULL DEFAULT '[]', deleted boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now())
"""
STAMP = """
CREATE TABLE bench_visible (marker text PRIMARY KEY, at timestamptz NOT NULL);
-- The apply worker of a subscription runs with an empty search_path.
CREATE FUNCTION bench_stamp() RETURNS trigger LANGUAGE plpgsql
SET search_path = public AS $$
BEGIN
    IF NEW.modality LIKE 'u%' THEN
        INSERT INTO bench_visible VALUES (NEW.modality, clock_timestamp())
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END $$;
"""


def cluster(stack: ExitStack, name: str) -> Any:
    from scsync.embedded_pg import EmbeddedPostgres

    workdir = Path(tempfile.mkdtemp(prefix=f"scsync-bench-{name}-"))
    stack.callback(shutil.rmtree, workdir, True)
    # Commits flushed at once (fsync stays off): with synchronous_commit=off a
    # walsender only sees a commit after the WAL writer's next round (up to 200 ms).
    server = EmbeddedPostgres(workdir / "data", settings={"synchronous_commit": "on"})
    server.start()
    stack.callback(server.stop)
    return server


def create_db(server: Any, name: str) -> str:
    with psycopg.connect(libpq_url(server.url), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(server.url_for(name))


def setup_scsync(a: Any, b: Any) -> tuple[str, str]:
    """Migrated local (A) and cloud (B) databases, site 1 registered; their URLs."""
    from scsync.devdb import register_sites, set_node

    local_url = create_db(a, "bench_local")
    cloud_url = create_db(b, "bench_cloud")
    migrate.upgrade(local_url, "local")
    migrate.upgrade(cloud_url, "cloud")
    for url, side, node, site in ((local_url, "local", 1, 1), (cloud_url, "cloud", 0, None)):
        set_node(url, node, side, site)  # type: ignore[arg-type]
        if side == "cloud":
            register_sites(url, ["bench-site"])
    with psycopg.connect(libpq_url(cloud_url), autocommit=True) as c:
        c.execute(STAMP)
        c.execute(
            "CREATE TRIGGER bench_stamp AFTER INSERT OR UPDATE ON images "
            "FOR EACH ROW EXECUTE FUNCTION bench_stamp()"
        )
    return local_url, cloud_url


def start_replicator(local_url: str, api_url: str, workdir: Path) -> subprocess.Popen[bytes]:
    from schema.auth import site_token

    config = workdir / "replicator.toml"
    config.write_text(
        "".join(
            f"{k} = {json.dumps(v)}\n"
            for k, v in {
                "local_db_url": local_url,
                "cloud_api_url": api_url,
                "site_token": site_token(JWT_SECRET, 1, ttl_s=86400),
                "site_id": 1,
                "lanes": ["push"],
                "batch_size": 2000,
                "poll_interval_s": 1.0,
                "log_level": "WARNING",
            }.items()
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "scsync", "replicator", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / "replicator.log", "wb"),
    )


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count(url: str, table: str) -> int:
    with psycopg.connect(libpq_url(url)) as c:
        row = c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def wait_count(url: str, table: str, n: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(url, table) >= n:
            return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError(f"{table}: {n} rows not visible within {timeout} s")


def wait_synced(url: str, timeout: float) -> float:
    """Until every local image row is recorded as synced (the push lane's acks done)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute("SELECT count(*) FROM images WHERE NOT synced").fetchone()
            if row is not None and row[0] == 0:
                return time.monotonic()
            time.sleep(0.02)
    raise RuntimeError(f"local rows not all synced within {timeout} s")


def insert_images(url: str, table: str, rows: int, patient: int, start: int) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        for first in range(start, start + rows, BATCH):
            n = min(BATCH, start + rows - first)
            if table == "images":
                c.execute(
                    "INSERT INTO images (site_id, patient_id, modality, description) "
                    "SELECT 1, %s, 'CT', %s FROM generate_series(1, %s)",
                    (patient, DESCRIPTION, n),
                )
            else:
                c.execute(
                    "INSERT INTO images_plain (id, site_id, patient_id, revision, modality, "
                    "description) SELECT g, 1, %s, g, 'CT', %s "
                    "FROM generate_series(%s::bigint, %s::bigint) g",
                    (patient, DESCRIPTION, first, first + n - 1),
                )


def first_ids(url: str, table: str, n: int) -> list[int]:
    """The n lowest ids of `table`: the update step's rows, one id range at both ends."""
    with psycopg.connect(libpq_url(url)) as c:
        rows = c.execute(
            sql.SQL("SELECT id FROM {} ORDER BY id LIMIT %s").format(sql.Identifier(table)), (n,)
        ).fetchall()
    if len(rows) < n:
        raise RuntimeError(f"{table}: {len(rows)} rows to update, {n} wanted")
    return [int(r[0]) for r in rows]


def update_images(url: str, table: str, ids: list[int]) -> None:
    """The update step's writer: `ids` in order, BATCH rows a transaction."""
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        for first in range(0, len(ids), BATCH):
            c.execute(
                sql.SQL("UPDATE {} SET description = %s WHERE id = ANY(%s)").format(
                    sql.Identifier(table)
                ),
                (UPDATED_DESCRIPTION, ids[first : first + BATCH]),
            )


def wait_updated(url: str, table: str, ids: list[int], timeout: float) -> float:
    """Until every row of `ids` (the n lowest ids of `table`, so the range ids[0]..ids[-1]
    holds them and nothing else) shows the update step's description at `url`.

    Counting 20,000 rows of ~1 KB every few ms would take a good share of the 2 cores
    from the peer being measured, so the poll is a primary-key lookup of the last
    updated row (every 5 ms: native applies 2,000 rows in well under 100 ms), and the
    count runs only once that row has arrived (both peers apply in commit order, so it
    is normally the last), then every 0.2 s until it is complete.
    """
    deadline = time.monotonic() + timeout
    last = sql.SQL("SELECT right(description, %s) = %s FROM {} WHERE id = %s").format(
        sql.Identifier(table)
    )
    updated = sql.SQL(
        "SELECT count(*) FROM {} WHERE id BETWEEN %s AND %s AND right(description, %s) = %s"
    ).format(sql.Identifier(table))
    marker = (len(UPDATE_MARKER), UPDATE_MARKER)
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        while time.monotonic() < deadline:
            row = c.execute(last, (*marker, ids[-1])).fetchone()
            if row is None or not row[0]:
                time.sleep(0.005)
                continue
            row = c.execute(updated, (ids[0], ids[-1], *marker)).fetchone()
            if row is not None and row[0] >= len(ids):
                return time.monotonic()
            time.sleep(0.2)
    raise RuntimeError(f"{table}: {len(ids)} updated rows not visible within {timeout} s")


def updates(url: str, table: str, n: int, rate: float) -> dict[str, float]:
    """n single-row updates at `rate`/s; commit wall time per marker."""
    committed: dict[str, float] = {}
    with psycopg.connect(libpq_url(url), autocommit=True) as c:
        ids = [
            r[0]
            for r in c.execute(
                sql.SQL("SELECT id FROM {} LIMIT 500").format(sql.Identifier(table))
            ).fetchall()
        ]
        started = time.monotonic()
        for i in range(n):
            target = started + i / rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            marker = f"u{i}"
            before = time.time()
            c.execute(
                sql.SQL("UPDATE {} SET modality = %s WHERE id = %s").format(sql.Identifier(table)),
                (marker, ids[i % len(ids)]),
            )
            # The commit happens inside the autocommit statement: between the two clocks.
            committed[marker] = (before + time.time()) / 2
    return committed


def latencies(url: str, committed: dict[str, float], timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count(url, "bench_visible") >= len(committed):
            break
        time.sleep(0.05)
    with psycopg.connect(libpq_url(url)) as c:
        seen: dict[str, float] = dict(
            c.execute("SELECT marker, extract(epoch FROM at)::float8 FROM bench_visible").fetchall()
        )
    missing = set(committed) - set(seen)
    if missing:
        raise RuntimeError(f"{len(missing)} updates never became visible")
    return [(float(seen[m]) - t) * 1000 for m, t in committed.items()]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_scsync(
    a: Any, b: Any, rows: int, n_bulk: int, n_updates: int, backlog: int, workdir: Path
) -> dict[str, float]:
    local_url, cloud_url = setup_scsync(a, b)
    stack = ExitStack()
    api_url = CloudApi(stack, cloud_url, workdir).url
    with psycopg.connect(libpq_url(local_url), autocommit=True) as c:
        row = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'P', 'bench') "
            "RETURNING id"
        ).fetchone()
        assert row is not None
        patient = int(row[0])
    proc = start_replicator(local_url, api_url, workdir)
    try:
        wait_count(cloud_url, "patients", 1, 60)
        t0 = time.monotonic()
        insert_images(local_url, "images", rows, patient, 0)
        inserted = time.monotonic()
        t1 = wait_count(cloud_url, "images", rows, 600)
        throughput = rows / (t1 - t0)
        ack_tail = wait_synced(local_url, 600) - t1
        time.sleep(SETTLE_S)
        ids = first_ids(local_url, "images", n_bulk)
        u0 = time.monotonic()
        update_images(local_url, "images", ids)
        updated = time.monotonic()
        u1 = wait_updated(cloud_url, "images", ids, 600)
        update_ack_tail = wait_synced(local_url, 600) - u1
        time.sleep(SETTLE_S)
        committed = updates(local_url, "images", n_updates, 200.0)
        lat = latencies(cloud_url, committed, 60)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        # Backlog: written while the replicator is down, drained by a fresh process.
        insert_images(local_url, "images", backlog, patient, 0)
        proc = start_replicator(local_url, api_url, workdir)
        t2 = time.monotonic()
        rss = 0.0
        target = rows + backlog
        while count(cloud_url, "images") < target:
            rss = max(rss, peak_rss_mb(proc.pid))
            if time.monotonic() - t2 > 3600:
                raise RuntimeError("backlog did not drain")
            time.sleep(0.5)
        rss = max(rss, peak_rss_mb(proc.pid))
        backlog_rate = backlog / (time.monotonic() - t2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
        stack.close()
    return {
        "rows_per_s": throughput,
        "insert_rows_per_s": rows / (inserted - t0),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "peak_rss_mb": rss,
        "backlog_rows_per_s": backlog_rate,
        "ack_tail_s": ack_tail,
        "update_rows_per_s": n_bulk / (u1 - u0),
        "update_writer_rows_per_s": n_bulk / (updated - u0),
        "update_ack_tail_s": update_ack_tail,
    }


def bench_native(a: Any, b: Any, rows: int, n_bulk: int, n_updates: int) -> dict[str, float]:
    pub_url = create_db(a, "native_pub")
    sub_url = create_db(b, "native_sub")
    with psycopg.connect(libpq_url(pub_url), autocommit=True) as c:
        c.execute(NATIVE_TABLE)
        c.execute("INSERT INTO images_plain (id, site_id, patient_id, revision) VALUES (0,1,0,0)")
        c.execute("CREATE PUBLICATION bench_pub FOR TABLE images_plain")
    with psycopg.connect(libpq_url(sub_url), autocommit=True) as c:
        c.execute(NATIVE_TABLE)
        c.execute(STAMP)
        c.execute(
            "CREATE TRIGGER bench_stamp AFTER INSERT OR UPDATE ON images_plain "
            "FOR EACH ROW EXECUTE FUNCTION bench_stamp()"
        )
        c.execute("ALTER TABLE images_plain ENABLE ALWAYS TRIGGER bench_stamp")
        conninfo = libpq_url(pub_url)
        c.execute(
            sql.SQL("CREATE SUBSCRIPTION bench_sub CONNECTION {} PUBLICATION bench_pub").format(
                sql.Literal(conninfo)
            )
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = c.execute("SELECT srsubstate FROM pg_subscription_rel").fetchall()
            if states and all(s[0] == "r" for s in states):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("subscription never became ready")
    try:
        t0 = time.monotonic()
        insert_images(pub_url, "images_plain", rows, 0, 1)
        inserted = time.monotonic()
        t1 = wait_count(sub_url, "images_plain", rows + 1, 600)
        throughput = rows / (t1 - t0)
        time.sleep(SETTLE_S)
        ids = first_ids(pub_url, "images_plain", n_bulk)
        u0 = time.monotonic()
        update_images(pub_url, "images_plain", ids)
        updated = time.monotonic()
        u1 = wait_updated(sub_url, "images_plain", ids, 600)
        time.sleep(SETTLE_S)
        committed = updates(pub_url, "images_plain", n_updates, 200.0)
        lat = latencies(sub_url, committed, 60)
    finally:
        with psycopg.connect(libpq_url(sub_url), autocommit=True) as c:
            c.execute("DROP SUBSCRIPTION bench_sub")
    return {
        "rows_per_s": throughput,
        "insert_rows_per_s": rows / (inserted - t0),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "update_rows_per_s": n_bulk / (u1 - u0),
        "update_writer_rows_per_s": n_bulk / (updated - u0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s)")
    args = parser.parse_args()
    rows, n_bulk, n_updates, backlog = (
        (10_000, 2_000, 300, 20_000) if args.quick else (100_000, 20_000, 2_000, 1_000_000)
    )
    with ExitStack() as stack:
        a, b = cluster(stack, "a"), cluster(stack, "b")
        workdir = Path(tempfile.mkdtemp(prefix="scsync-bench-rep-"))
        stack.callback(shutil.rmtree, workdir, True)
        native = bench_native(a, b, rows, n_bulk, n_updates)
        ours = bench_scsync(a, b, rows, n_bulk, n_updates, backlog, workdir)
    ratio = ours["rows_per_s"] / native["rows_per_s"]
    print(f"{'':28}{'scsync push':>14}{'native logical':>16}")
    print(f"{'inserts, rows/s':28}{ours['rows_per_s']:>14,.0f}{native['rows_per_s']:>16,.0f}")
    # The writer alone (until its last commit): what capture costs at the source, a
    # ceiling for the end-to-end ratio whatever the replicator does.
    print(
        f"{'  writer alone, rows/s':28}{ours['insert_rows_per_s']:>14,.0f}"
        f"{native['insert_rows_per_s']:>16,.0f}"
    )
    print(
        f"{'bulk updates, rows/s':28}{ours['update_rows_per_s']:>14,.0f}"
        f"{native['update_rows_per_s']:>16,.0f}"
    )
    print(
        f"{'  writer alone, rows/s':28}{ours['update_writer_rows_per_s']:>14,.0f}"
        f"{native['update_writer_rows_per_s']:>16,.0f}"
    )
    print(f"{'update visible p50, ms':28}{ours['p50_ms']:>14.1f}{native['p50_ms']:>16.1f}")
    print(f"{'update visible p99, ms':28}{ours['p99_ms']:>14.1f}{native['p99_ms']:>16.1f}")
    print(
        f"{'backlog of ' + format(backlog, ',') + ', rows/s':28}"
        f"{ours['backlog_rows_per_s']:>14,.0f}{'-':>16}"
    )
    print(f"{'acks done after visible, s':28}{ours['ack_tail_s']:>14.2f}{'-':>16}")
    print(f"{'  after the updates, s':28}{ours['update_ack_tail_s']:>14.2f}{'-':>16}")
    print(f"{'replicator peak RSS, MB':28}{ours['peak_rss_mb']:>14.1f}{'-':>16}")
    print(
        f"(rows={rows}, updated rows={n_bulk}, updates={n_updates} at 200/s, "
        f"backlog={backlog}, cpus={os.cpu_count()})"
    )
    print(
        json.dumps(
            {
                "scsync_rows_per_s": round(ours["rows_per_s"], 1),
                "native_rows_per_s": round(native["rows_per_s"], 1),
                "throughput_ratio": round(ratio, 3),
                "scsync_p50_ms": round(ours["p50_ms"], 2),
                "scsync_p99_ms": round(ours["p99_ms"], 2),
                "native_p50_ms": round(native["p50_ms"], 2),
                "native_p99_ms": round(native["p99_ms"], 2),
                "replicator_peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "scsync_writer_rows_per_s": round(ours["insert_rows_per_s"], 1),
                "native_writer_rows_per_s": round(native["insert_rows_per_s"], 1),
                "writer_ratio": round(ours["insert_rows_per_s"] / native["insert_rows_per_s"], 3),
                "scsync_ack_tail_s": round(ours["ack_tail_s"], 2),
                "scsync_update_rows_per_s": round(ours["update_rows_per_s"], 1),
                "native_update_rows_per_s": round(native["update_rows_per_s"], 1),
                "update_throughput_ratio": round(
                    ours["update_rows_per_s"] / native["update_rows_per_s"], 3
                ),
                "update_writer_ratio": round(
                    ours["update_writer_rows_per_s"] / native["update_writer_rows_per_s"], 3
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
