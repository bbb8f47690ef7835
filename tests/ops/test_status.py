"""`scsync status` against a small live setup: every figure, with the values it must show."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from lockd.db import make_pool
from lockd.manager import LeaseManager
from replicator.settings import load_settings
from replicator.sites import register_site
from schema.auth import site_token
from tests.pg import TestDatabase
from tests.world import JWT_SECRET, cloud_api, drain


def _status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scsync", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _take_lease(cloud_url: str, row_id: int) -> None:
    async with make_pool(cloud_url, min_size=1, max_size=1) as pool:
        await LeaseManager(pool).acquire("patients", row_id, "cloud:1/bob", ttl_s=120)


def test_status_prints_every_figure(
    local_db: TestDatabase, cloud_db: TestDatabase, tmp_path: Path
) -> None:
    creds = cloud_db.call(register_site, "clinic-status")
    with cloud_api(cloud_db) as api:
        _every_figure(local_db, cloud_db, tmp_path, creds.site_id, api.url)


def _every_figure(
    local_db: TestDatabase, cloud_db: TestDatabase, tmp_path: Path, site_id: int, api_url: str
) -> None:
    config = tmp_path / "local.toml"
    config.write_text(
        "[replicator]\n"
        f"local_db_url = {json.dumps(local_db.url)}\n"
        f"cloud_api_url = {json.dumps(api_url)}\n"
        f"site_token = {json.dumps(site_token(JWT_SECRET, site_id))}\n"
        f"site_id = {site_id}\n"
        # The outbox's figures (waiting, lag) of a change the replicator has not read: with
        # the WAL capture such a change is still in the WAL (test_wal_capture's status).
        'capture = "triggers"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)
    with local_db.connect(autocommit=True) as c:
        for i in range(3):
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, 'L')",
                (site_id, f"L{i}"),
            )
        # History from before the site was connected: only a backfill sends it.
        with c.transaction():
            c.execute("SET LOCAL scsync.replicating = 'on'")
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name, revision)"
                " VALUES (%s, 'OLD', 'old', scsync_snowflake())",
                (site_id,),
            )
    with cloud_db.connect(autocommit=True) as c:
        cloud_ids: list[int] = []
        for i in range(2):
            row = c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, 'C')"
                " RETURNING id",
                (site_id, f"C{i}"),
            ).fetchone()
            assert row is not None
            cloud_ids.append(int(str(row[0])))
    asyncio.run(drain(settings))
    # After the sync: one change waiting locally, one parked row, one open conflict, a lease.
    with local_db.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, 'W', 'waiting')",
            (site_id,),
        )
        c.execute(
            "INSERT INTO scsync_dead_letters (lane, table_name, row_id, site_id, reason,"
            " next_retry_at) VALUES ('pull', 'patients', 42, %s, 'poisoned', now())",
            (site_id,),
        )
    with cloud_db.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO scsync_conflicts (table_name, row_id, site_id, detected_on)"
            " VALUES ('patients', %s, %s, 'cloud')",
            (cloud_ids[0], site_id),
        )
    asyncio.run(_take_lease(cloud_db.url, cloud_ids[1]))
    # The waiting change ages 30 s by the database's clock (the lag is clock_timestamp()
    # minus the oldest outbox row's created_at): moved, not slept.
    with local_db.connect(autocommit=True) as c:
        c.execute("UPDATE scsync_outbox SET created_at = created_at - interval '30 s'")

    done = _status("--config", str(config), "--cloud-url", cloud_db.url, "--json")
    assert done.returncode == 0, done.stderr
    f = json.loads(done.stdout)
    push, pull = f["lanes"]["push"], f["lanes"]["pull"]
    assert (push["waiting"], push["rows_moved"]) == (1, 3)
    assert 30 <= push["lag_s"] < 60 and push["last_applied_at"]
    assert (pull["waiting"], pull["rows_moved"], pull["lag_s"]) == (0, 2, 0.0)
    assert pull["last_applied_at"]
    assert f["outbox_depth"] == {"local": 1, "cloud": 0}
    assert f["parked"] == {"local": 1, "cloud": 0}
    assert f["conflicts_open"] == {"local": 0, "cloud": 1}
    assert f["leases"] == {"live": 1, "by_local": 0, "by_cloud": 1}
    bf = f["backfill"]
    # Never crossed: the row from before the connection and the one still waiting.
    assert (bf["rows_total"], bf["rows_done"]) == (2, 0)

    text = _status("--config", str(config), "--cloud-url", cloud_db.url)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    for line in (
        "outbox depth    local 1  cloud 0",
        "parked rows     local 1  cloud 0",
        "conflicts open  local 0  cloud 1",
        "leases live     1 (editing by local 0, by cloud 1)",
    ):
        assert line in out, out
    assert "backfill" in out and "rows" in out
    push_line = next(ln for ln in out.splitlines() if ln.startswith("push "))
    waiting, lag, unit, moved = push_line.split()[1:5]
    assert (waiting, unit, moved) == ("1", "s", "3") and float(lag) >= push["lag_s"], push_line
    assert "rows 0/2" in out, out

    # Without an operator's URL the same figures come from the cloud API (site token).
    own = _status("--config", str(config), "--json")
    assert own.returncode == 0, own.stderr
    mine = json.loads(own.stdout)
    for key in ("outbox_depth", "parked", "conflicts_open", "leases"):
        assert mine[key] == f[key], key
    assert (mine["lanes"]["push"]["rows_moved"], mine["lanes"]["pull"]["rows_moved"]) == (3, 2)

    cloud = _status("--side", "cloud", "--url", cloud_db.url)
    assert cloud.returncode == 0, cloud.stderr
    cells = next(ln for ln in cloud.stdout.splitlines() if "clinic-status" in ln).split()
    assert cells[0] == str(site_id)
    assert "leases live 1" in cloud.stdout


def test_status_names_an_unreachable_database(tmp_path: Path) -> None:
    config = tmp_path / "local.toml"
    config.write_text(
        'local_db_url = "postgresql://nobody@127.0.0.1:9/none"\n'
        'cloud_api_url = "http://127.0.0.1:9"\nsite_token = "t"\nsite_id = 1\n',
        encoding="utf-8",
    )
    done = _status("--config", str(config))
    assert done.returncode == 3
    assert "cannot reach the local database" in done.stderr


def test_status_during_a_cloud_outage_shows_the_local_figures(
    local_db: TestDatabase, tmp_path: Path
) -> None:
    """The cloud unreachable (a long outage): the site's own figures are still shown, the
    cloud's are '?', and the exit code (3) tells a script."""
    config = tmp_path / "local.toml"
    config.write_text(
        f"local_db_url = {json.dumps(local_db.url)}\n"
        'cloud_api_url = "http://127.0.0.1:9"\nsite_token = "t"\n'
        f"site_id = {local_db.site_id}\n",
        encoding="utf-8",
    )
    with local_db.connect(autocommit=True) as c:
        for i in range(2):
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, 'x')",
                (local_db.site_id, f"O{i}"),
            )
    done = _status("--config", str(config), "--json")
    assert done.returncode == 3, done.stderr
    f = json.loads(done.stdout)
    assert "cannot reach the cloud API" in f["cloud_error"]
    assert f["outbox_depth"] == {"local": 2, "cloud": None}
    assert f["lanes"]["push"]["waiting"] == 2 and f["lanes"]["push"]["rows_moved"] is None
    assert f["parked"]["local"] == 0 and f["conflicts_open"]["cloud"] is None
    text = _status("--config", str(config))
    assert text.returncode == 3
    assert "CLOUD UNREACHABLE" in text.stdout
    assert "outbox depth    local 2  cloud ?" in text.stdout


def test_site_commands_read_the_site_config_file(local_db: TestDatabase, tmp_path: Path) -> None:
    """policy/backfill/sync take their URLs from the same file (scsync init's layout)."""
    config = tmp_path / "local.toml"
    config.write_text(
        f"[replicator]\nlocal_db_url = {json.dumps(local_db.url)}\n"
        'cloud_api_url = "http://127.0.0.1:9"\nsite_token = "t"\nsite_id = 1\n',
        encoding="utf-8",
    )
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("SCSYNC_")}
    run = functools.partial(
        subprocess.run, capture_output=True, text=True, timeout=60, check=False, env=env_free
    )
    policy = run([sys.executable, "-m", "scsync", "policy", "show", "--config", str(config)])
    assert policy.returncode == 0, policy.stderr
    assert json.loads(policy.stdout)["mode"] == "all"
    backfill = run([sys.executable, "-m", "scsync", "backfill", "status", "--config", str(config)])
    assert backfill.returncode == 0, backfill.stderr
    assert backfill.stdout.startswith("backfill ")
    (tmp_path / "empty.toml").write_text("[replicator]\nsite_id = 1\n", encoding="utf-8")
    missing = run(
        [sys.executable, "-m", "scsync", "policy", "show", "--config", str(tmp_path / "empty.toml")]
    )
    assert missing.returncode == 2
    assert "local_db_url in [replicator] of --config" in missing.stderr
