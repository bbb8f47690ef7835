"""Wake-ups: no trigger notifies (a NOTIFY serialises every committing transaction on one
cluster-wide lock); the code that commits calls scsync_wake(), one hint per transaction
and channel, on commit only. Absence is checked after a marker notification sent once the
write committed: notifications arrive in commit order, so nothing can come after it."""

from __future__ import annotations

from typing import Any

import pytest

from schema.sql import query as query_text_of
from tests.pg import TestDatabase
from tests.polling import until_marker

pytestmark = pytest.mark.dblevel

CHANNELS = ("scsync_outbox", "scsync_api_events", "scsync_lease")


def _until_marker(listener: Any, db: TestDatabase) -> list[tuple[str, str]]:
    """Every notification up to the marker, which is sent now (after what was written)."""
    with db.connect(autocommit=True) as marker:
        marker.execute("NOTIFY scsync_test_marker")
    heard = until_marker(
        listener.notifies(timeout=10.0),
        lambda n: n.channel == "scsync_test_marker",
        "the marker notification",
    )
    return [(n.channel, n.payload) for n in heard]


def _listener(db: TestDatabase) -> Any:
    conn = db.connect(autocommit=True)
    for channel in (*CHANNELS, "scsync_test_marker"):
        conn.execute(f"LISTEN {channel}")
    return conn


@pytest.mark.parametrize("db_name", ["local_db", "cloud_db"])
def test_no_trigger_notifies(db_name: str, request: pytest.FixtureRequest) -> None:
    db: TestDatabase = request.getfixturevalue(db_name)
    with db.connect() as conn:
        sources = conn.execute(
            "SELECT DISTINCT t.tgrelid::regclass::text, p.proname"
            "  FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE NOT t.tgisinternal AND p.prosrc ILIKE '%notify%'"
        ).fetchall()
    assert sources == []


def test_writes_of_every_kind_wake_nobody(local_db: TestDatabase) -> None:
    with _listener(local_db) as listener, local_db.connect() as writer:
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Han')")
        writer.execute("UPDATE doctors SET name = 'Dr. Han Jr.'")
        writer.execute("DELETE FROM doctors")
        writer.commit()
        assert _until_marker(listener, local_db) == []


def test_a_wake_is_one_hint_per_channel_after_commit(local_db: TestDatabase) -> None:
    with _listener(local_db) as listener, local_db.connect() as writer:
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Yoon')")
        writer.execute("SELECT scsync_wake()")
        writer.execute("SELECT scsync_wake()")
        assert _until_marker(listener, local_db) == []  # not committed yet
        writer.commit()
        assert sorted(_until_marker(listener, local_db)) == [
            ("scsync_api_events", ""),
            ("scsync_outbox", ""),
        ]


def test_a_rolled_back_wake_sends_nothing(local_db: TestDatabase) -> None:
    with _listener(local_db) as listener, local_db.connect() as writer:
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Gone')")
        writer.execute("SELECT scsync_wake()")
        writer.rollback()
        assert _until_marker(listener, local_db) == []


def test_an_api_transaction_wakes_only_when_it_wrote(local_db: TestDatabase) -> None:
    wake = query_text_of("api_wake")
    with _listener(local_db) as listener, local_db.connect() as api:
        api.execute("SELECT count(*) FROM doctors")
        api.execute(wake)
        api.commit()
        assert _until_marker(listener, local_db) == []  # a read: no NOTIFY lock, no hint
        api.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Write')")
        api.execute(wake)
        api.commit()
        assert sorted(_until_marker(listener, local_db)) == [
            ("scsync_api_events", ""),
            ("scsync_outbox", ""),
        ]
