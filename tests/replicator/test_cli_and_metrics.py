"""The CLI commands of the replicator area, the in-process daemon's metrics, backoff."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import psycopg
import pytest

from replicator import metrics as m
from replicator.backoff import Backoff
from replicator.daemon import Daemon
from replicator.errors import SettingsError
from replicator.settings import load_settings
from scsync.cli import main
from tests.pg import TestDatabase
from tests.world import World, rows, sync


def test_site_register_prints_working_credentials(
    cloud_db: TestDatabase, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["site", "register", "clinic-x", "--url", cloud_db.url, "--node-id", "77"]) == 0
    out = capsys.readouterr().out
    assert "site id 1, node id 77" in out
    url_line = next(line for line in out.splitlines() if line.startswith("cloud_db_url"))
    with psycopg.connect(url_line.split(" = ", 1)[1].strip('"')) as c:
        assert c.execute("SELECT scsync_current_site()").fetchone() == (1,)
    # The same name twice is refused with a one-line error.
    assert main(["site", "register", "clinic-x", "--url", cloud_db.url]) == 1
    assert "exists already" in capsys.readouterr().err


async def test_conflicts_cli_list_show_resolve(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'P', 'b')")
    await sync(world.site1)
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'here'")
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'there'")
    await sync(world.site1)
    local_url = world.site1.local.url
    assert main(["conflicts", "list", "--url", local_url]) == 0
    listed = capsys.readouterr().out
    conflict_id = listed.split()[0]
    assert "patients/" in listed
    assert main(["conflicts", "show", conflict_id, "--url", local_url]) == 0
    shown = capsys.readouterr().out
    assert '"name": "here"' in shown and '"name": "there"' in shown
    assert main(["conflicts", "resolve", conflict_id, "--keep", "local", "--url", local_url]) == 0
    await sync(world.site1)
    assert {r["name"] for r in rows(world.cloud, "patients").values()} == {"here"}
    assert main(["conflicts", "resolve", "12345", "--keep", "local", "--url", local_url]) == 1


async def test_daemon_metrics_after_a_sync(world: World) -> None:
    with world.site1.local.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) "
            "SELECT 1, 'p' || g, 'n' FROM generate_series(1, 30) g"
        )
    daemon = Daemon(world.site1.settings(poll_interval_s=0.2, metrics_interval_s=0.1))
    task = asyncio.create_task(daemon.serve())
    for _ in range(100):
        if daemon.metrics.get(m.ROWS, lane="push", outcome="apply") == 30:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    daemon.stop()
    assert await asyncio.wait_for(task, 10) == 0
    assert daemon.metrics.get(m.ROWS, lane="push", outcome="apply") == 30
    assert daemon.metrics.get(m.OUTBOX_DEPTH, lane="push") == 0
    assert daemon.metrics.get(m.LAG_SECONDS, lane="push") == 0
    assert daemon.metrics.get(m.CONFLICTS_OPEN) == 0
    assert "scsync_replication_batches_total" in daemon.metrics.snapshot()


def test_backoff_grows_is_capped_and_never_zero() -> None:
    b = Backoff(0.5, 8.0, random.Random(1))
    delays = [b.next() for _ in range(10)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert delays[-1] >= 4.0  # capped step 8: at least half of it
    b.reset()
    assert b.next() <= 0.5


def test_settings_from_file_and_env_env_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "r.toml"
    config.write_text(
        'local_db_url = "postgresql://a/l"\ncloud_db_url = "postgresql://a/c"\n'
        "site_id = 3\nbatch_size = 10\n"
    )
    monkeypatch.setenv("SCSYNC_BATCH_SIZE", "77")
    loaded = load_settings(config)
    assert (loaded.site_id, loaded.batch_size, loaded.lanes) == (3, 77, ("push", "pull"))
    monkeypatch.setenv("SCSYNC_LANES", '["sideways"]')
    with pytest.raises(SettingsError, match="lanes"):
        load_settings(config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


async def test_status_shows_parked_records(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with world.cloud.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients ADD CONSTRAINT ck_test_poison CHECK (name <> 'bad')")
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'X', 'bad')")
    await sync(world.site1, rounds=1)
    config = tmp_path / "r.toml"
    config.write_text(
        f"local_db_url = {json.dumps(world.site1.local.url)}\n"
        f"cloud_db_url = {json.dumps(world.site1.cloud_url)}\nsite_id = 1\n"
    )
    assert main(["replicator", "status", "--config", str(config)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["local"]["outbox_depth"] == 1
    (parked,) = status["local"]["parked"]
    assert parked["table"] == "patients" and "ck_test_poison" in parked["reason"]
    assert status["cloud"]["conflicts_open"] == 0
