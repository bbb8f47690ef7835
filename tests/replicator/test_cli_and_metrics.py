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


def test_site_register_prints_the_sites_settings_and_makes_no_role(
    cloud_db: TestDatabase, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["site", "register", "clinic-x", "--url", cloud_db.url, "--node-id", "77"]
    assert main([*args, "--api-url", "https://cloud.example.net/"]) == 0
    out = capsys.readouterr().out
    assert "site id 1, node id 77" in out
    assert "/v1/sites/1/token" in out  # how to get the token
    # Only real values: the token and the site's own database are the operator's to add,
    # and with them the printed settings are a working config.
    assert "<" not in out
    config = tmp_path / "site.toml"
    config.write_text(
        out + 'site_token = "a.b.c"\nlocal_db_url = "postgresql://scsync@127.0.0.1/scsync"\n',
        encoding="utf-8",
    )
    loaded = load_settings(config)
    assert (loaded.site_id, loaded.cloud_api_url) == (1, "https://cloud.example.net")
    with psycopg.connect(cloud_db.libpq_url) as c:
        assert (
            c.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'scsync_site%'").fetchall()
            == []
        )
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

    # The CLI runs its own event loop (one asyncio.run): from this test's, on a thread.
    async def cli(argv: list[str]) -> int:
        return await asyncio.to_thread(main, argv)

    assert await cli(["conflicts", "list", "--url", local_url]) == 0
    listed = capsys.readouterr().out
    conflict_id = listed.split()[0]
    assert "patients/" in listed
    assert await cli(["conflicts", "show", conflict_id, "--url", local_url]) == 0
    shown = capsys.readouterr().out
    assert '"name": "here"' in shown and '"name": "there"' in shown
    assert (
        await cli(["conflicts", "resolve", conflict_id, "--keep", "local", "--url", local_url]) == 0
    )
    await sync(world.site1)
    assert {r["name"] for r in rows(world.cloud, "patients").values()} == {"here"}
    assert await cli(["conflicts", "resolve", "12345", "--keep", "local", "--url", local_url]) == 1


async def test_daemon_metrics_after_a_sync(world: World) -> None:
    with world.site1.local.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) "
            "SELECT 1, 'p' || g, 'n' FROM generate_series(1, 30) g"
        )
    daemon = Daemon(world.site1.settings(poll_interval_s=0.2, metrics_interval_s=0.1))
    task = asyncio.create_task(daemon.serve())

    def settled() -> bool:  # the rows applied, then a metrics refresh that saw it
        return (
            daemon.metrics.get(m.ROWS, lane="push", outcome="apply") == 30
            and daemon.metrics.get(m.OUTBOX_DEPTH, lane="push") == 0
            and daemon.metrics.get(m.LAG_SECONDS, lane="push") == 0
            and daemon.metrics.get(m.CONFLICTS_OPEN) == 0
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not settled():
        assert loop.time() < deadline, daemon.metrics.snapshot()
        await asyncio.sleep(0.05)
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
        'local_db_url = "postgresql://a/l"\ncloud_api_url = "https://cloud.example"\n'
        'site_token = "t"\nsite_id = 3\nbatch_size = 10\n'
    )
    monkeypatch.setenv("SCSYNC_BATCH_SIZE", "77")
    loaded = load_settings(config)
    assert (loaded.site_id, loaded.batch_size, loaded.lanes) == (3, 77, ("push", "pull"))
    monkeypatch.setenv("SCSYNC_LANES", '["sideways"]')
    with pytest.raises(SettingsError, match="lanes"):
        load_settings(config)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_a_leftover_cloud_db_url_is_an_error_naming_what_replaced_it(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text(
        'local_db_url = "postgresql://a/l"\ncloud_db_url = "postgresql://site@cloud/c"\n'
        'cloud_api_url = "https://cloud.example"\nsite_token = "t"\nsite_id = 3\n'
    )
    with pytest.raises(SettingsError) as err:
        load_settings(config)
    assert "cloud_db_url is no longer used" in str(err.value)
    assert "cloud_api_url" in str(err.value) and "site_token" in str(err.value)


def test_status_shows_parked_records(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with world.cloud.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients ADD CONSTRAINT ck_test_poison CHECK (name <> 'bad')")
    with world.site1.local.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'X', 'bad')")
    asyncio.run(sync(world.site1, rounds=1))
    config = tmp_path / "r.toml"
    config.write_text(
        f"local_db_url = {json.dumps(world.site1.local.url)}\n"
        f"cloud_api_url = {json.dumps(world.site1.cloud_api_url)}\n"
        f"site_token = {json.dumps(world.site1.token)}\nsite_id = 1\n"
    )
    assert main(["replicator", "status", "--config", str(config)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["local"]["outbox_depth"] == 1
    (parked,) = status["local"]["parked"]
    assert parked["table"] == "patients" and "ck_test_poison" in parked["reason"]
    assert status["cloud"]["conflicts_open"] == 0
