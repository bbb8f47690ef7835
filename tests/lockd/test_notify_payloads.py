"""What a notification on the cloud carries: ids only. Any session of the database (a
site's role too, or a compromised service) may LISTEN, so a lease's token and id, its
holder and a record's content must never travel on a channel; listeners read them by
id from the logs (tests/lockd/conftest.py EventListener, api/events.py)."""

from __future__ import annotations

import json

import psycopg
import pytest

from lockd.manager import LeaseManager
from tests.lockd.conftest import add_patient
from tests.world import World

pytestmark = pytest.mark.dblevel

LEASE_KEYS = {"seq", "event", "table", "row_id", "site_id"}


async def test_another_clinic_listening_sees_ids_only(world: World, manager: LeaseManager) -> None:
    rid = add_patient(world.cloud, 1, "P-SECRETCODE", "Alice Secretname")
    async with await psycopg.AsyncConnection.connect(world.cloud.libpq_url, autocommit=True) as spy:
        await spy.execute("LISTEN scsync_lease")
        await spy.execute("LISTEN scsync_api_events")
        lease = await manager.acquire("patients", rid, "local:1/alice-holder", scope_site=1)
        await manager.save(
            lease.lease_id,
            lease.token,
            {"notes": "secret-note-text"},
            expected_revision=lease.revision,
        )
        await manager.release(lease.lease_id, lease.token)
        got: list[tuple[str, str]] = []
        # The release is the last thing done: its notification is the marker.
        async for note in spy.notifies(timeout=10):
            got.append((note.channel, note.payload))
            if note.channel == "scsync_lease" and '"lease.released"' in note.payload:
                break
    lease_notes = [json.loads(p) for c, p in got if c == "scsync_lease"]
    api_notes = [p for c, p in got if c == "scsync_api_events"]
    assert [n["event"] for n in lease_notes] == ["lease.acquired", "lease.released"]
    assert all(set(n) == LEASE_KEYS for n in lease_notes), lease_notes
    assert all(n["table"] == "patients" and n["row_id"] == rid for n in lease_notes)
    # The API's event listeners are only woken (once per transaction): no content.
    assert len(api_notes) >= 1  # the acquire's (the release's comes after the marker)
    assert all(n == "" for n in api_notes), api_notes
    for _, payload in got:
        for secret in (
            str(lease.lease_id),
            "token",
            "lease_id",
            "alice-holder",
            "secret-note-text",
            "Secretname",
            "SECRETCODE",
        ):
            assert secret not in payload, payload
