"""Acceptance with real processes: the replicator with its file lanes (`scsync replicator
run` and its alias `scsync files run`) and the backfill (`scsync backfill start`), killed
with SIGKILL and restarted, against moto over HTTP and real PostgreSQL databases."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import psutil
import pytest
from sqlalchemy import text

from replicator.files.localdb import APP_NAME
from replicator.files.transfer import BlobApi, Transfer, store_path
from replicator.sites import register_site
from schema.auth import site_token
from scsync.commands.file_lanes import ENV as FILE_ENV
from tests.files.conftest import SECRET, BlobServer
from tests.files.helpers import (
    MiB,
    add_image,
    add_patient,
    fetch,
    sha256_file,
    sha256_of,
    urandom_file,
)
from tests.pg import TestDatabase
from tests.polling import wait_until
from tests.world import CloudApi


class Procs:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"proc-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "scsync", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.procs.index(proc)
        return (self.tmp_path / f"proc-{index}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    try:
        yield p
    finally:
        p.kill_all()


def seed_legacy(
    local: TestDatabase, tmp_path: Path, patients: int, files: int, file_size: int = 2048
) -> dict[int, str]:
    """Rows that existed before the site was connected: no outbox entries, never synced."""
    store = tmp_path / "legacy"
    store.mkdir(exist_ok=True)
    shas: dict[str, tuple[str, int]] = {}
    for i in range(files):
        path = store / f"img{i:05d}.dcm"
        # Small and distinct; written with os.urandom-free bytes to stay fast.
        data = (f"image {i} ".encode() * (file_size // 8 + 1))[:file_size]
        path.write_bytes(data)
        shas[str(path)] = (sha256_of(data), len(data))
    with local.engine.begin() as conn:
        conn.execute(text("SET LOCAL scsync.replicating = 'on'"))
        conn.execute(
            text(
                "INSERT INTO patients (site_id, patient_code, name, revision)"
                " SELECT 1, 'L' || g, 'Legacy ' || g, scsync_snowflake()"
                " FROM generate_series(1, :n) g"
            ),
            {"n": patients},
        )
        first = conn.execute(text("SELECT min(id) FROM patients")).scalar_one()
        out: dict[int, str] = {}
        for local_path, (sha, size) in shas.items():
            rid = conn.execute(
                text(
                    "INSERT INTO images (site_id, patient_id, modality, blob_sha256, blob_size,"
                    " local_path, file_name, revision)"
                    " VALUES (1, :p, 'CT', :s, :z, :l, 'x.dcm', scsync_snowflake()) RETURNING id"
                ),
                {"p": first, "s": sha, "z": size, "l": local_path},
            ).scalar_one()
            out[int(rid)] = sha
        conn.execute(text("DELETE FROM scsync_outbox"))
    return out


def _newest_first(tdb: TestDatabase, table: str) -> None:
    """A backfill stopped midway: some rows crossed, some did not, and every one that
    crossed is newer (higher id) than every one that did not. Callers stop it midway."""
    row = fetch(
        tdb,
        f"SELECT max(id) FILTER (WHERE synced_revision IS NULL) AS unsynced,"
        f" min(id) FILTER (WHERE synced_revision IS NOT NULL) AS synced FROM {table}",
    )[0]
    assert row.synced is not None, f"{table}: no row crossed; nothing shows the order"
    assert row.unsynced is not None, f"{table}: every row crossed; nothing shows the order"
    assert row.synced > row.unsynced, f"{table}: an older row crossed before a newer one"


def _synced(tdb: TestDatabase, table: str) -> int:
    return int(fetch(tdb, f"SELECT count(*) AS n FROM {table} WHERE synced")[0].n)


def _env(
    local_db: TestDatabase,
    api: CloudApi | None,
    cloud_db: TestDatabase,
    blobs: BlobServer,
    tmp_path: Path,
) -> dict[str, str]:
    return _env_with_local(local_db.url, api, cloud_db, blobs, tmp_path)


def _env_with_local(
    local_url: str,
    api: CloudApi | None,
    cloud_db: TestDatabase,
    blobs: BlobServer,
    tmp_path: Path,
) -> dict[str, str]:
    return {
        "SCSYNC_LOCAL_DB_URL": local_url,
        # The replicator and the backfill reach the cloud through the cloud API only:
        # no cloud database URL on the site.
        "SCSYNC_CLOUD_API_URL": "http://127.0.0.1:9" if api is None else api.url,
        "SCSYNC_SITE_ID": "1",
        "SCSYNC_BLOBS_URL": blobs.base_url,
        "SCSYNC_SITE_TOKEN": blobs.token(1),
        "SCSYNC_FILE_STORE": str(tmp_path / "store"),
        "SCSYNC_POLL_INTERVAL_S": "0.5",
        "SCSYNC_SCHEMA_REFRESH_S": "0.5",
        "SCSYNC_DEAD_LETTER_INITIAL_S": "0.2",
        "SCSYNC_DEAD_LETTER_MAX_S": "1.0",
    }


def start_replicator(
    procs: Procs, how: str, env: dict[str, str], tmp_path: Path, *flags: str
) -> subprocess.Popen[bytes]:
    """The site's daemon with its file lanes, given the settings of `_env` two ways:
    `replicator run` with all of them in its config file ([replicator] and [files], as
    the systemd unit runs it), or the alias `files run` with all of them in the
    environment."""
    if how == "files-run-env":
        return procs.start("files", "run", *flags, env=env)
    assert how == "replicator-run-config", how
    replicator = {
        "local_db_url": env["SCSYNC_LOCAL_DB_URL"],
        "cloud_api_url": env["SCSYNC_CLOUD_API_URL"],
        "site_token": env["SCSYNC_SITE_TOKEN"],
        "site_id": int(env["SCSYNC_SITE_ID"]),
        "poll_interval_s": float(env["SCSYNC_POLL_INTERVAL_S"]),
        "schema_refresh_s": float(env["SCSYNC_SCHEMA_REFRESH_S"]),
        "dead_letter_initial_s": float(env["SCSYNC_DEAD_LETTER_INITIAL_S"]),
        "dead_letter_max_s": float(env["SCSYNC_DEAD_LETTER_MAX_S"]),
    }
    files = {
        "blobs_url": env["SCSYNC_BLOBS_URL"],
        "token": env["SCSYNC_SITE_TOKEN"],
        "store": env["SCSYNC_FILE_STORE"],
    }
    config = tmp_path / "local.toml"
    config.write_text(
        "".join(
            f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in table.items())
            for name, table in (("replicator", replicator), ("files", files))
        ),
        encoding="utf-8",
    )
    return procs.start("replicator", "run", "--config", str(config), *flags, env=NO_FILE_ENV)


DAEMONS = ["replicator-run-config", "files-run-env"]
# The file settings' variables blanked (= not given) even where the shell sets them.
NO_FILE_ENV = {name: "" for name in FILE_ENV.values()}


@pytest.mark.parametrize(
    ("patients", "files", "rows_per_s"),
    [
        pytest.param(3000, 150, 1500, id="small"),
        pytest.param(45_000, 5000, 6000, id="issue-size", marks=pytest.mark.slow),
    ],
)
def test_backfill_survives_two_kills_newest_first_and_live_edits_pass(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    procs: Procs,
    tmp_path: Path,
    patients: int,
    files: int,
    rows_per_s: int,
) -> None:
    cloud_db.call(register_site, "clinic-one")
    images = seed_legacy(local_db, tmp_path, patients, files)
    env = _env(local_db, sync_api, cloud_db, blobs, tmp_path)
    live = procs.start("files", "run", env=env)
    backfill_args = (
        "backfill",
        "start",
        "--no-progress",
        "--batch-rows",
        "500",
        "--rows-per-s",
        str(rows_per_s),
    )
    bf = procs.start(*backfill_args, env=env)
    wait_until(lambda: _synced(local_db, "patients") >= patients // 3, 60, "a third of patients")
    bf.send_signal(signal.SIGKILL)
    bf.wait(10)
    _newest_first(local_db, "patients")
    bf = procs.start(*backfill_args, env=env)

    # A live edit while the backfill runs: through the live lane within 2 s.
    t0 = time.monotonic()
    with local_db.engine.begin() as conn:
        new_id = conn.execute(
            text(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'LIVE', 'Live')"
                " RETURNING id"
            )
        ).scalar_one()
    wait_until(
        lambda: bool(fetch(cloud_db, "SELECT 1 FROM patients WHERE id = :i", i=new_id)),
        10,
        "the live edit on the cloud",
    )
    latency = time.monotonic() - t0
    assert latency < 2.0, f"live edit took {latency:.2f} s"

    wait_until(lambda: _synced(local_db, "images") >= files // 3, 120, "a third of images")
    bf.send_signal(signal.SIGKILL)
    bf.wait(10)
    # Parents first: every patient (and the live one) crossed before any image did.
    assert _synced(local_db, "patients") == patients + 1
    _newest_first(local_db, "images")
    bf = procs.start(*backfill_args, env=env)
    assert bf.wait(300) == 0, procs.log(bf)
    assert '"state": "done"' in procs.log(bf)

    assert _synced(local_db, "patients") == patients + 1
    assert _synced(local_db, "images") == files
    cloud = {r.id: r for r in fetch(cloud_db, "SELECT id, blob_state, revision FROM images")}
    assert set(cloud) == set(images)
    assert {r.blob_state for r in cloud.values()} == {"uploaded"}
    assert fetch(cloud_db, "SELECT count(*) AS n FROM patients")[0].n == patients + 1
    s3 = blobs.s3.client()
    for rid in sorted(images)[:: max(1, files // 20)]:
        body = s3.get_object(Bucket=blobs.settings.bucket, Key=blobs.key(1, images[rid]))["Body"]
        assert sha256_of(body.read()) == images[rid]
    assert live.poll() is None, procs.log(live)


def _rss_while(
    proc: subprocess.Popen[bytes], started: Callable[[], bool], until: Callable[[], bool]
) -> tuple[int, int]:
    """RSS of `proc` when `started()` first held, and its peak until `until()`."""
    p = psutil.Process(proc.pid)
    base = peak = 0
    while proc.poll() is None and not until():
        try:
            rss = p.memory_info().rss
        except psutil.NoSuchProcess:
            break
        if not base and started():
            base = rss
        peak = max(peak, rss)
        time.sleep(0.02)
    return base, peak


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(40 * MiB, id="40MiB"),
        pytest.param(300 * MiB, id="300MB", marks=pytest.mark.slow),
    ],
)
def test_kill_during_multipart_then_resume_without_resending_parts(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    procs: Procs,
    tmp_path: Path,
    size: int,
) -> None:
    cloud_db.call(register_site, "clinic-one")
    src = tmp_path / "ct-volume.raw"
    sha = urandom_file(src, size)
    with local_db.engine.begin() as conn:
        conn.execute(text("SET LOCAL scsync.replicating = 'on'"))
        p = conn.execute(
            text(
                "INSERT INTO patients (site_id, patient_code, name, revision)"
                " VALUES (1, 'P', 'P', scsync_snowflake()) RETURNING id"
            )
        ).scalar_one()
        image = conn.execute(
            text(
                "INSERT INTO images (site_id, patient_id, kind, modality, blob_sha256, blob_size,"
                " local_path, revision) VALUES (1, :p, '3d', 'CT', :s, :z, :l, scsync_snowflake())"
                " RETURNING id"
            ),
            {"p": p, "s": sha, "z": size, "l": str(src)},
        ).scalar_one()
        conn.execute(text("DELETE FROM scsync_outbox"))
    env = _env(local_db, sync_api, cloud_db, blobs, tmp_path)
    args = ("backfill", "start", "--no-progress", "--concurrency", "2")
    throttled = (*args, "--bytes-per-s", str(size // 4))  # about four seconds of upload

    def parts_done() -> set[int]:
        return {
            r.part_number for r in fetch(local_db, "SELECT part_number FROM scsync_upload_parts")
        }

    bf = procs.start(*throttled, env=env)
    upload_begun = lambda: bool(fetch(local_db, "SELECT 1 FROM scsync_uploads"))  # noqa: E731
    base, peak = _rss_while(bf, upload_begun, lambda: len(parts_done()) >= 2)
    bf.send_signal(signal.SIGKILL)
    bf.wait(10)
    finished = parts_done()
    assert len(finished) >= 2
    # Bytes never held whole: once its upload began the uploader grew by far less than
    # the file (parts of 5 MiB, two in flight, 1 MiB chunks).
    assert base and peak - base < min(size // 4, 32 * MiB), (base, peak)
    assert peak < 200 * MiB
    key = f"/{blobs.settings.bucket}/{blobs.key(1, sha)}?"
    log_before = len(blobs.s3.request_log(include_query=True))
    bf = procs.start(*args, env=env)
    assert bf.wait(300) == 0, procs.log(bf)
    after = [
        q
        for m, q in blobs.s3.request_log(include_query=True)[log_before:]
        if m == "PUT" and q.startswith(key) and "partNumber=" in q
    ]
    resent = {int(q.split("partNumber=")[1].split("&")[0]) for q in after}
    assert resent, "the restart sent the missing parts"
    assert not resent & finished, f"finished parts {sorted(resent & finished)} were sent again"
    row = fetch(cloud_db, "SELECT blob_state FROM images WHERE id = :i", i=image)[0]
    assert row.blob_state == "uploaded"
    # Both ways byte-identical: the cloud's object, then a site's download of it through
    # the file lane (verified, atomic) into another store.
    body = blobs.s3.client().get_object(Bucket=blobs.settings.bucket, Key=blobs.key(1, sha))["Body"]
    h = hashlib.sha256()
    for chunk in iter(lambda: body.read(MiB), b""):
        h.update(chunk)
    assert h.hexdigest() == sha

    async def download() -> Path:
        async with aiohttp.ClientSession() as session:
            t = Transfer(BlobApi(session, blobs.base_url, blobs.token(1), 1))
            return await t.download(sha, store_path(tmp_path / "other-site-store", sha), size)

    assert sha256_file(asyncio.run(download())) == sha


@pytest.mark.parametrize(
    ("how", "drop_local"),
    [
        *((how, False) for how in DAEMONS),
        pytest.param("replicator-run-config", True, id="local-connections-dropped"),
    ],
)
def test_on_demand_request_is_served_and_a_live_file_row_crosses_with_its_blob(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    procs: Procs,
    tmp_path: Path,
    how: str,
    drop_local: bool,
) -> None:
    """drop_local: every connection of the daemon to the local database is cut once it
    runs (as a database restart does); the file lanes must reopen theirs."""
    import urllib.request

    cloud_db.call(register_site, "clinic-one")
    images = seed_legacy(local_db, tmp_path, 5, 2)
    with local_db.engine.begin() as conn:
        conn.execute(text("INSERT INTO scsync_file_policy (mode) VALUES ('selective')"))
    env = _env(local_db, sync_api, cloud_db, blobs, tmp_path)
    bf = procs.start("backfill", "start", "--no-progress", env=env)
    assert bf.wait(60) == 0, procs.log(bf)
    states = {r.blob_state for r in fetch(cloud_db, "SELECT blob_state FROM images")}
    assert states == {"remote"}  # nothing in scope: metadata only
    live = start_replicator(procs, how, env, tmp_path, "--poll-s", "0.2")
    if drop_local:

        def sessions() -> set[str]:
            return {
                r.application_name
                for r in fetch(
                    local_db,
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name LIKE 'scsync-%'",
                )
            }

        wanted = {"scsync-push-src", "scsync-pull-dst", APP_NAME}
        wait_until(lambda: wanted <= sessions(), 30, "the daemon's local sessions")
        with local_db.engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    rid, sha = sorted(images.items())[0]
    req = urllib.request.Request(
        f"{blobs.base_url}/sites/1/blobs/{sha}/request",
        data=json.dumps({"table": "images", "row_id": str(rid)}).encode(),
        headers={
            "Authorization": f"Bearer {blobs.user_token(1)}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
    wait_until(
        lambda: (
            fetch(cloud_db, "SELECT blob_state FROM images WHERE id = :i", i=rid)[0].blob_state
            == "uploaded"
        ),
        20,
        "the requested blob on the cloud",
    )
    other = [r for r in fetch(cloud_db, "SELECT id, blob_state FROM images") if r.id != rid]
    assert [r.blob_state for r in other] == ["remote"]
    served = fetch(cloud_db, "SELECT state FROM scsync_blob_requests")
    assert [r.state for r in served] == ["served"]

    # A live file-bearing row in scope goes through the push lane's blob gate: it lands
    # on the cloud only together with its verified blob.
    with local_db.engine.begin() as conn:
        conn.execute(text("UPDATE scsync_file_policy SET mode = 'all'"))
    src = tmp_path / "live-scan.dcm"
    live_sha = urandom_file(src, 3000)
    patient = add_patient(local_db, 1, "LIVE")
    image = add_image(local_db, 1, patient, sha=live_sha, size=3000, path=src)
    wait_until(
        lambda: bool(fetch(cloud_db, "SELECT 1 FROM images WHERE id = :i", i=image)),
        20,
        "the live image row on the cloud",
    )
    row = fetch(cloud_db, "SELECT blob_state, blob_sha256 FROM images WHERE id = :i", i=image)
    assert (row[0].blob_state, row[0].blob_sha256) == ("uploaded", live_sha)
    body = blobs.s3.client().get_object(Bucket=blobs.settings.bucket, Key=blobs.key(1, live_sha))
    assert sha256_of(body["Body"].read()) == live_sha
    assert live.poll() is None, procs.log(live)
    assert "file lanes on" in procs.log(live)


def test_file_lanes_wait_for_a_local_database_that_is_down_at_start(
    cloud_db: TestDatabase, sync_api: CloudApi, blobs: BlobServer, procs: Procs, tmp_path: Path
) -> None:
    """Like the row lanes, the file lanes retry in the process (no exit for systemd to
    restart), and SIGTERM still ends the daemon cleanly."""
    from scsync.s3_server import free_port

    down = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    env = _env_with_local(down, sync_api, cloud_db, blobs, tmp_path)
    live = start_replicator(procs, "replicator-run-config", env, tmp_path, "--poll-s", "0.2")
    wait_until(lambda: "file lanes on" in procs.log(live), 30, "the daemon's start")

    def failed_connects() -> int:
        log = procs.log(live)
        return log.count("database unreachable") + log.count("cannot connect")

    # Retried in the process: a second failed attempt, by the same process, still up.
    wait_until(lambda: failed_connects() >= 2 or live.poll() is not None, 30, "a retry")
    assert live.poll() is None, procs.log(live)
    live.send_signal(signal.SIGTERM)
    assert live.wait(15) == 0, procs.log(live)


def test_replicator_without_file_settings_warns_and_sends_rows_as_metadata_only(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    procs: Procs,
    tmp_path: Path,
) -> None:
    """What the start-up warning says: the row lanes run, a file-bearing row crosses as
    metadata only and its file is not uploaded until a backfill with the blob settings."""
    cloud_db.call(register_site, "clinic-one")
    env = {**_env(local_db, sync_api, cloud_db, blobs, tmp_path), **NO_FILE_ENV}
    # The site's token for the cloud API in [replicator] (SCSYNC_SITE_TOKEN alone would
    # count as a partial file setting): no [files] table, so the file lanes are off.
    config = tmp_path / "rows-only.toml"
    config.write_text(
        f"[replicator]\nsite_token = {json.dumps(blobs.token(1))}\n", encoding="utf-8"
    )
    live = procs.start("replicator", "run", "--config", str(config), env=env)
    src = tmp_path / "scan.dcm"
    sha = urandom_file(src, 3000)
    image = add_image(local_db, 1, add_patient(local_db, 1), sha=sha, size=3000, path=src)
    wait_until(
        lambda: bool(fetch(cloud_db, "SELECT 1 FROM images WHERE id = :i", i=image)),
        20,
        "the image row on the cloud",
    )
    row = fetch(cloud_db, "SELECT blob_state FROM images WHERE id = :i", i=image)[0]
    assert row.blob_state == "remote"
    assert blobs.put_count() == 0
    live.send_signal(signal.SIGTERM)
    assert live.wait(20) == 0, procs.log(live)
    warnings = [line for line in procs.log(live).splitlines() if "file lanes are off" in line]
    assert len(warnings) == 1 and " WARNING " in warnings[0], procs.log(live)
    assert "metadata only" in warnings[0]

    # The remedy the warning names: a backfill with the blob settings uploads the file.
    file_env = _env(local_db, sync_api, cloud_db, blobs, tmp_path)
    bf = procs.start("backfill", "start", "--no-progress", env=file_env)
    assert bf.wait(60) == 0, procs.log(bf)
    row = fetch(cloud_db, "SELECT blob_state FROM images WHERE id = :i", i=image)[0]
    assert row.blob_state == "uploaded"


def test_backfill_cli_status_metrics_pause_and_throttle(
    local_db: TestDatabase, cloud_db: TestDatabase, sync_api: CloudApi, procs: Procs, tmp_path: Path
) -> None:
    cloud_db.call(register_site, "clinic-one")
    seed_legacy(local_db, tmp_path, 3000, 0)
    # The site's settings only: the cloud API and the site's token.
    env = {
        "SCSYNC_LOCAL_DB_URL": local_db.url,
        "SCSYNC_CLOUD_API_URL": sync_api.url,
        "SCSYNC_SITE_TOKEN": site_token(SECRET, 1),
        "SCSYNC_SITE_ID": "1",
    }
    t0 = time.monotonic()
    bf = procs.start(
        "backfill",
        "start",
        "--no-progress",
        "--no-yield-to-live",
        # 60 s for the 3,000 rows: the four CLI calls below (a Python start each) must
        # find it running on a loaded machine too (at 200/s, 15 s, it was done twice).
        "--rows-per-s",
        "50",
        "--batch-rows",
        "20",
        "--metrics-file",
        str(tmp_path / "bf.prom"),
        env=env,
    )
    wait_until(lambda: _synced(local_db, "patients") >= 100, 30, "100 rows")

    def cli(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "scsync", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    status = json.loads(cli("backfill", "status", "--json"))
    assert status["state"] == "running" and status["rows_total"] == 3000
    assert 100 <= status["rows_done"] < 3000
    metrics = cli("backfill", "status", "--metrics")
    assert "scsync_backfill_rows_total 3000" in metrics
    assert "scsync_backfill_running 1" in metrics
    assert "scsync_backfill_rows_done" in (tmp_path / "bf.prom").read_text()
    assert "backfill running: rows" in cli("backfill", "status")
    cli("backfill", "pause")
    assert bf.wait(30) == 0, procs.log(bf)
    elapsed = time.monotonic() - t0
    done = _synced(local_db, "patients")
    assert done < 3000 and '"state": "paused"' in procs.log(bf)
    # The throttle holds: never faster than 75 rows/s plus a batch of burst.
    assert done <= 75 * elapsed + 40
    _newest_first(local_db, "patients")
    final = json.loads(cli("backfill", "status", "--json"))
    assert (final["state"], final["rows_done"]) == ("paused", done)


def test_on_demand_is_served_ahead_of_a_running_backfill(
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    sync_api: CloudApi,
    blobs: BlobServer,
    procs: Procs,
    tmp_path: Path,
) -> None:
    import urllib.request

    cloud_db.call(register_site, "clinic-one")
    images = seed_legacy(local_db, tmp_path, 3000, 3)
    with local_db.engine.begin() as conn:
        conn.execute(text("INSERT INTO scsync_file_policy (mode) VALUES ('selective')"))
    env = _env(local_db, sync_api, cloud_db, blobs, tmp_path)
    bf = procs.start(
        "backfill",
        "start",
        "--no-progress",
        "--no-yield-to-live",
        "--batch-rows",
        "100",
        "--rows-per-s",
        "500",
        env=env,
    )
    # The patients (parents first) take seconds; the images have not crossed yet.
    wait_until(lambda: _synced(local_db, "patients") >= 200, 30, "the backfill under way")
    rid, sha = sorted(images.items())[0]
    req = urllib.request.Request(
        f"{blobs.base_url}/sites/1/blobs/{sha}/request",
        data=json.dumps({"table": "images", "row_id": str(rid)}).encode(),
        headers={
            "Authorization": f"Bearer {blobs.user_token(1)}",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 202
    wait_until(
        lambda: (
            [r.state for r in fetch(cloud_db, "SELECT state FROM scsync_blob_requests")]
            == ["served"]
        ),
        20,
        "the request served",
    )
    # Served while the backfill was still on the patients: ahead of everything it had left.
    assert _synced(local_db, "patients") < 3000
    assert _synced(local_db, "images") == 0
    assert bf.poll() is None
    assert bf.wait(60) == 0, procs.log(bf)
    states = {r.id: r.blob_state for r in fetch(cloud_db, "SELECT id, blob_state FROM images")}
    assert states == {i: ("uploaded" if i == rid else "remote") for i in images}
