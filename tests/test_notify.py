"""The outbox wake-up hint: sent on commit, never before, never for rolled-back work."""

from __future__ import annotations

import pytest

from tests.pg import TestDatabase

pytestmark = pytest.mark.dblevel


def _drain(listener: object, timeout: float) -> list[tuple[str, str]]:
    return [
        (n.channel, n.payload)
        for n in listener.notifies(timeout=timeout, stop_after=10)  # type: ignore[attr-defined]
    ]


def test_listen_receives_hint_after_commit_and_not_before(local_db: TestDatabase) -> None:
    with local_db.connect(autocommit=True) as listener, local_db.connect() as writer:
        listener.execute("LISTEN scsync_outbox")
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Han')")
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Yoon')")
        assert _drain(listener, 0.5) == []  # written, not committed: nothing yet
        writer.commit()
        # Two rows of one site in one transaction fold into one hint.
        assert _drain(listener, 2.0) == [("scsync_outbox", "1")]


def test_rolled_back_write_sends_no_hint(local_db: TestDatabase) -> None:
    with local_db.connect(autocommit=True) as listener, local_db.connect() as writer:
        listener.execute("LISTEN scsync_outbox")
        writer.execute("INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Gone')")
        writer.rollback()
        assert _drain(listener, 0.5) == []


def test_replicator_marked_write_sends_no_hint(local_db: TestDatabase) -> None:
    with local_db.connect(autocommit=True) as listener, local_db.connect() as writer:
        listener.execute("LISTEN scsync_outbox")
        writer.execute("SET LOCAL scsync.replicating = 'on'")
        writer.execute("INSERT INTO doctors (site_id, name, revision) VALUES (1, 'Dr. R', 5)")
        writer.commit()
        assert _drain(listener, 0.5) == []
