"""Generic change capture: outbox rows, revisions, history, replicator marking."""

from __future__ import annotations

from typing import Any

import pytest

from tests.pg import TestDatabase

pytestmark = pytest.mark.dblevel

Conn = Any


def _outbox(conn: Conn) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT table_name, row_id, site_id, op, origin, revision, synced_revision"
        " FROM scsync_outbox ORDER BY seq"
    ).fetchall()
    return [tuple(r) for r in rows]


def _row(conn: Conn, row_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT revision, synced_revision, synced, updated_at FROM patients WHERE id = %s",
        (row_id,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def _insert_patient(conn: Conn, code: str = "P-1") -> int:
    row = conn.execute(
        "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'Kim') RETURNING id",
        (code,),
    ).fetchone()
    conn.commit()
    return int(row[0])


def test_insert_update_soft_and_hard_delete_leave_expected_outbox_rows(
    local_db: TestDatabase,
) -> None:
    with local_db.connect() as conn:
        pid = _insert_patient(conn)
        rev_insert = _row(conn, pid)[0]
        conn.execute("UPDATE patients SET name = 'Kim Minji' WHERE id = %s", (pid,))
        conn.commit()
        rev_update = _row(conn, pid)[0]
        conn.execute("UPDATE patients SET deleted = true WHERE id = %s", (pid,))
        conn.commit()
        rev_soft = _row(conn, pid)[0]
        conn.execute("UPDATE patients SET synced_revision = revision WHERE id = %s", (pid,))
        conn.commit()
        conn.execute("DELETE FROM patients WHERE id = %s", (pid,))
        conn.commit()
        assert len({rev_insert, rev_update, rev_soft}) == 3
        assert _outbox(conn) == [
            ("patients", pid, 1, "I", "local", rev_insert, None),
            ("patients", pid, 1, "U", "local", rev_update, None),
            ("patients", pid, 1, "U", "local", rev_soft, None),
            # The tombstone carries the last revision and what was known synced.
            ("patients", pid, 1, "D", "local", rev_soft, rev_soft),
        ]
        txids = conn.execute("SELECT DISTINCT txid FROM scsync_outbox").fetchall()
        assert len(txids) == 4


def test_bookkeeping_only_updates_change_neither_revision_nor_outbox(
    local_db: TestDatabase,
) -> None:
    with local_db.connect() as conn:
        pid = _insert_patient(conn)
        revision, _, synced, updated_at = _row(conn, pid)
        assert synced is False
        conn.execute(
            "UPDATE patients SET synced_revision = revision, last_synced_at = now(),"
            " in_conflict = false WHERE id = %s",
            (pid,),
        )
        conn.commit()
        after = _row(conn, pid)
        assert after[0] == revision
        assert after[1] == revision and after[2] is True  # synced is derived
        assert after[3] == updated_at
        assert len(_outbox(conn)) == 1
        # A no-op content update (same values) is no change either.
        conn.execute("UPDATE patients SET name = name WHERE id = %s", (pid,))
        conn.commit()
        assert _row(conn, pid)[0] == revision
        assert len(_outbox(conn)) == 1


def test_revision_cannot_be_forced_by_a_client(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        pid = _insert_patient(conn)
        revision = _row(conn, pid)[0]
        conn.execute("UPDATE patients SET revision = 42 WHERE id = %s", (pid,))
        conn.commit()
        assert _row(conn, pid)[0] == revision
        conn.execute("UPDATE patients SET revision = 42, notes = 'x' WHERE id = %s", (pid,))
        conn.commit()
        new_revision = _row(conn, pid)[0]
        assert new_revision not in (42, revision)


def test_synced_cannot_be_written_by_hand(local_db: TestDatabase) -> None:
    import psycopg

    with local_db.connect() as conn:
        pid = _insert_patient(conn)
        with pytest.raises(psycopg.errors.GeneratedAlways):
            conn.execute("UPDATE patients SET synced = true WHERE id = %s", (pid,))


def test_replicator_marked_writes_keep_revision_and_skip_outbox(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        conn.execute("SET LOCAL scsync.replicating = 'on'")
        conn.execute(
            "INSERT INTO patients (id, site_id, patient_code, name, revision, synced_revision)"
            " VALUES (1001, 1, 'C-1', 'From cloud', 777, 777)"
        )
        conn.execute("UPDATE patients SET name = 'Cloud edit', revision = 778 WHERE id = 1001")
        conn.execute("DELETE FROM patients WHERE id = 1001")
        conn.execute(
            "INSERT INTO patients (id, site_id, patient_code, name, revision, synced_revision)"
            " VALUES (1002, 1, 'C-2', 'From cloud', 779, 779)"
        )
        conn.commit()
        assert _outbox(conn) == []
        assert _row(conn, 1002)[:3] == (779, 779, True)
        # History keeps replicated revisions too (rollback works on both sides).
        history = conn.execute(
            "SELECT row_id, revision, origin FROM scsync_history ORDER BY seq"
        ).fetchall()
        assert history == [
            (1001, 777, "replicated"),
            (1001, 778, "replicated"),
            (1002, 779, "replicated"),
        ]
        # The marking is transaction-local: the next transaction is captured again.
        conn.execute("UPDATE patients SET name = 'Local edit' WHERE id = 1002")
        conn.commit()
        assert [r[3] for r in _outbox(conn)] == ["U"]
        assert _row(conn, 1002)[0] != 779


def test_every_content_revision_is_in_history(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        pid = _insert_patient(conn)
        for name in ("A", "B", "C"):
            conn.execute("UPDATE patients SET name = %s WHERE id = %s", (name, pid))
            conn.commit()
        rows = conn.execute(
            "SELECT revision, row_data->>'name' FROM scsync_history WHERE row_id = %s ORDER BY seq",
            (pid,),
        ).fetchall()
        assert [r[1] for r in rows] == ["Kim", "A", "B", "C"]
        assert rows[-1][0] == _row(conn, pid)[0]


def test_capture_is_generic_for_every_synced_table(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        doctor = conn.execute(
            "INSERT INTO doctors (site_id, name) VALUES (1, 'Dr. Choi') RETURNING id"
        ).fetchone()
        pid = conn.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'P', 'Lee') RETURNING id"
        ).fetchone()
        assert doctor is not None and pid is not None
        image = conn.execute(
            "INSERT INTO images (site_id, patient_id, doctor_id, modality, blob_sha256, blob_size)"
            " VALUES (1, %s, %s, 'CT', repeat('a', 64), 10) RETURNING id",
            (pid[0], doctor[0]),
        ).fetchone()
        assert image is not None
        conn.execute(
            "INSERT INTO reports (site_id, patient_id, image_id, title) VALUES (1, %s, %s, 'R')",
            (pid[0], image[0]),
        )
        conn.execute("INSERT INTO settings (site_id, key, value) VALUES (1, 'k', '1')")
        conn.commit()
        # blob_state/local_path are bookkeeping: a download finishing is not an edit.
        conn.execute(
            "UPDATE images SET local_path = '/x', blob_state = 'present' WHERE id = %s", (image[0],)
        )
        conn.commit()
        tables = [r[0] for r in _outbox(conn)]
    assert tables == ["doctors", "patients", "images", "reports", "settings"]


def test_register_table_makes_a_new_table_synced(local_db: TestDatabase) -> None:
    with local_db.connect() as conn:
        conn.execute(
            "CREATE TABLE notes_extra (LIKE patients INCLUDING DEFAULTS INCLUDING GENERATED)"
        )
        conn.execute("ALTER TABLE notes_extra ADD PRIMARY KEY (id)")
        conn.execute("SELECT scsync_register_table('notes_extra')")
        conn.execute("INSERT INTO notes_extra (site_id, patient_code, name) VALUES (1, 'N', 'n')")
        conn.commit()
        assert [r[0] for r in _outbox(conn)] == ["notes_extra"]
        conn.execute("SELECT scsync_unregister_table('notes_extra')")
        conn.execute(
            "INSERT INTO notes_extra (site_id, patient_code, name, revision)"
            " VALUES (1, 'M', 'm', 1)"
        )
        conn.commit()
        assert len(_outbox(conn)) == 1


def test_cloud_capture_marks_origin_cloud(cloud_db: TestDatabase) -> None:
    with cloud_db.connect() as conn:
        conn.execute("INSERT INTO doctors (site_id, name) VALUES (7, 'Dr. Cloud')")
        conn.commit()
        assert [(r[2], r[4]) for r in _outbox(conn)] == [(7, "cloud")]


def test_a_legacy_insert_without_site_is_the_sites_own(
    local_db: TestDatabase, cloud_db: TestDatabase
) -> None:
    """A legacy application's plain INSERT names no site_id: on a site's database it
    gets the site that `scsync db set-node --site-id` recorded, and crosses like any
    row; on the cloud, which has no site of its own, it is still refused."""
    import psycopg

    with local_db.connect() as conn:
        row = conn.execute(
            "INSERT INTO patients (patient_code, name) VALUES ('L-1', 'Legacy') RETURNING id,"
            " site_id"
        ).fetchone()
        conn.commit()
        assert row is not None and row[1] == local_db.site_id == 1
        assert [(r[0], r[1], r[2]) for r in _outbox(conn)] == [("patients", row[0], 1)]
    with cloud_db.connect() as conn, pytest.raises(psycopg.errors.NotNullViolation):
        conn.execute("INSERT INTO patients (patient_code, name) VALUES ('L-2', 'Legacy')")
