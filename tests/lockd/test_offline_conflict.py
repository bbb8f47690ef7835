"""Acceptance 10: an offline edit while a cloud user edits and saves under a lease.
After reconnect the replicator's apply rule keeps both versions as a conflict record;
nothing is overwritten."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from lockd.client import LockClient
from lockd.db import make_pool
from lockd.errors import LockServiceUnreachable
from lockd.manager import LeaseManager, LockdConfig
from lockd.offline import open_offline, open_offline_sessions, save_offline
from lockd.sessions import EditSession
from schema import conflicts
from scsync.embedded_pg import free_port
from tests.world import World, rows, sync

pytestmark = pytest.mark.dblevel


async def test_offline_edit_and_cloud_edit_become_a_conflict(world: World) -> None:
    with world.site1.local.connect(autocommit=True) as c:
        row = c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'X', 'base')"
            " RETURNING id"
        ).fetchone()
    assert row is not None
    pid = int(str(row[0]))
    await sync(world.site1)
    assert rows(world.cloud, "patients")[pid]["name"] == "base"

    # The site cannot reach lockd; its user chooses to edit offline.
    async with LockClient(f"http://127.0.0.1:{free_port()}/v1/locks", "t", timeout_s=0.3) as c:
        with pytest.raises(LockServiceUnreachable):
            await c.acquire("patients", pid, "local:1/alice")
    local_conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
        world.site1.local.libpq_url, autocommit=True
    )
    try:
        session = await open_offline(local_conn, "patients", pid, "local:1/alice")
        offline = await save_offline(local_conn, session.session_id, {"notes": "offline edit"})
        assert (offline.version_major, offline.version_minor) == (2, 0)

        # Meanwhile a cloud user edits the same record under a real lease and saves.
        async with make_pool(world.cloud.url, min_size=1, max_size=2) as pool:
            manager = LeaseManager(pool, LockdConfig(ttl_s=10))
            cloud_session = await EditSession.open(manager, "patients", pid, "cloud:1/bob")
            cloud = await cloud_session.save({"notes": "cloud edit"})
            await cloud_session.close()
        assert cloud.version == "2.0"

        # Reconnect: the replicator pushes the offline save; the apply rule decides.
        await sync(world.site1)
        [still_open] = await open_offline_sessions(local_conn)
        assert still_open.unfenced and still_open.saves == 1
    finally:
        await local_conn.close()

    local_row = rows(world.site1.local, "patients")[pid]
    cloud_row = rows(world.cloud, "patients")[pid]
    assert local_row["notes"] == "offline edit" and local_row["revision"] == offline.revision
    assert cloud_row["notes"] == "cloud edit" and cloud_row["revision"] == cloud.revision
    assert local_row["in_conflict"] and cloud_row["in_conflict"]
    [conflict] = await world.cloud.acall(conflicts.list_conflicts, site_id=1)
    full = await world.cloud.acall(conflicts.get_conflict, conflict.id)
    assert full.local_row is not None and full.local_row["notes"] == "offline edit"
    assert full.cloud_row is not None and full.cloud_row["notes"] == "cloud edit"
