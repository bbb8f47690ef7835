"""Push and pull lanes between two sites and the cloud: the apply rule, deletes,
bookkeeping, tenant walls."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tests.world import World, content, rows, sync


def _insert_patient(conn: psycopg.Connection[tuple[object, ...]], site: int, code: str) -> int:
    cur = conn.execute(
        "INSERT INTO patients (site_id, patient_code, name) VALUES (%s, %s, %s) RETURNING id",
        (site, code, f"name {code}"),
    )
    row = cur.fetchone()
    assert row is not None
    return int(str(row[0]))


async def test_rows_flow_both_ways_and_stay_within_their_site(world: World) -> None:
    s1, s2 = world.site1, world.site2
    with s1.local.connect(autocommit=True) as c:
        p1 = _insert_patient(c, 1, "A-1")
        p1b = _insert_patient(c, 1, "A-2")
        gone = _insert_patient(c, 1, "A-3")
    with s2.local.connect(autocommit=True) as c:
        p2 = _insert_patient(c, 2, "B-1")
    await sync(s1)
    await sync(s2)

    cloud = rows(world.cloud, "patients")
    assert set(cloud) == {p1, p1b, gone, p2}
    local1 = rows(s1.local, "patients")
    assert {content(r) for r in local1.values()} == {content(cloud[i]) for i in (p1, p1b, gone)}
    # After a push the local row is marked synced; the cloud row carries the same revision.
    assert all(r["synced"] and r["last_synced_at"] for r in local1.values())
    assert all(cloud[i]["synced"] for i in cloud)

    # Updates, a soft delete and a hard delete locally; an update on the cloud.
    with s1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET notes = 'local edit' WHERE id = %s", (p1,))
        c.execute("UPDATE patients SET deleted = true WHERE id = %s", (p1b,))
        c.execute("DELETE FROM patients WHERE id = %s", (gone,))
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET notes = 'cloud edit' WHERE id = %s", (p2,))
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES (2, 'B-2', 'from cloud')"
        )
    await sync(s1)
    await sync(s2)

    cloud = rows(world.cloud, "patients")
    assert cloud[p1]["notes"] == "local edit"
    assert cloud[p1b]["deleted"] and cloud[p1b]["lifecycle"] == "deleted"
    # The cloud never hard-deletes: the row stays, marked deleted.
    assert cloud[gone]["deleted"] and cloud[gone]["lifecycle"] == "deleted"
    local2 = rows(s2.local, "patients")
    assert local2[p2]["notes"] == "cloud edit"
    assert {r["patient_code"] for r in local2.values()} == {"B-1", "B-2"}
    # Site 2 never receives site 1's rows and vice versa.
    assert not set(local2) & {p1, p1b, gone}
    assert set(rows(s1.local, "patients")) == {p1, p1b}
    # Nothing left behind in any outbox or inbox.
    for db in (s1.local, s2.local, world.cloud):
        with db.connect() as c:
            assert c.execute("SELECT count(*) FROM scsync_outbox").fetchone() == (0,)
            assert c.execute("SELECT count(*) FROM scsync_inbox").fetchone() == (0,)


async def test_cloud_hard_delete_and_soft_delete_reach_the_site(world: World) -> None:
    s1 = world.site1
    with s1.local.connect(autocommit=True) as c:
        a = _insert_patient(c, 1, "A-1")
        b = _insert_patient(c, 1, "A-2")
    await sync(s1)
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET deleted = true WHERE id = %s", (a,))
        c.execute("DELETE FROM patients WHERE id = %s", (b,))
    await sync(s1)
    local = rows(s1.local, "patients")
    assert local[a]["deleted"] is True
    assert b not in local


def test_site_role_cannot_see_or_touch_another_sites_rows(world: World) -> None:
    with world.cloud.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name) VALUES "
            "(1, 'S1', 'site one'), (2, 'S2', 'site two')"
        )
    with psycopg.connect(world.site2.cloud_url, autocommit=True) as c:
        codes = [r[0] for r in c.execute("SELECT patient_code FROM patients").fetchall()]
        assert codes == ["S2"]
        # Updating or deleting another site's rows touches nothing.
        assert c.execute("UPDATE patients SET name = 'x' WHERE site_id = 1").rowcount == 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("DELETE FROM patients WHERE site_id = 1")
        # Writing a row for another site is refused by the policy.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'X', 'x')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("UPDATE patients SET site_id = 1 WHERE site_id = 2")
        # Outbox, history and the site registry are walled too.
        assert c.execute("SELECT DISTINCT site_id FROM scsync_outbox").fetchall() == [(2,)]
        assert c.execute("SELECT DISTINCT site_id FROM scsync_history").fetchall() == [(2,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM scsync_sites")
        # Switching off row security is not open to it.
        c.execute("SET row_security = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM patients")
    with world.cloud.connect() as c:
        assert c.execute("SELECT name FROM patients WHERE site_id = 1").fetchall() == [
            ("site one",)
        ]


async def test_site_role_cannot_reach_another_site_through_the_lane_functions(
    world: World,
) -> None:
    """The lane functions run as their owner on the cloud; their guard must hold the wall."""
    with world.site1.local.connect(autocommit=True) as c:
        _insert_patient(c, 1, "A-1")
    await sync(world.site1)  # site 1 now has a cursor and rows on the cloud
    with world.cloud.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'S1', 'x')")
        (seq,) = c.execute("SELECT seq FROM scsync_outbox WHERE site_id = 1").fetchone() or (0,)
    with psycopg.connect(world.site2.cloud_url, autocommit=True) as c:
        for table in (
            "scsync_replication_cursor",
            "scsync_inbox",
            "scsync_conflicts",
            "scsync_dead_letters",
            "scsync_outbox",
        ):
            got = c.execute(
                sql.SQL("SELECT count(*) FROM {} WHERE site_id = 1").format(sql.Identifier(table))
            ).fetchone()
            assert got == (0,), table
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may not act for site 1"):
            c.execute("SELECT * FROM scsync_replicator_read('pull', 1, 10, '{}', '{}')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT scsync_replicator_park('pull', 'patients', 1, 1, 1, 'x', 1, 1)")
        # An ack naming site 1's outbox seq deletes nothing of site 1.
        c.execute("SELECT scsync_replicator_ack('pull', ARRAY[%s]::bigint[], '[]')", (seq,))
        # Staging a row of site 1 for apply is refused.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="its own rows"):
            c.execute(
                "SELECT * FROM scsync_replicator_apply('cloud', "
                '\'{"patients": ["id", "site_id", "name", "patient_code"]}\', '
                '\'[{"ord": 1, "table_name": "patients", "row_id": 1, "op": "U",'
                ' "revision": 1, "base": null,'
                ' "row_data": {"id": 1, "site_id": 1, "name": "x", "patient_code": "x"}}]\')'
            )
        with pytest.raises(psycopg.DatabaseError, match="not the local side"):
            c.execute("SELECT * FROM scsync_replicator_apply('local', '{}', '[]')")
    with world.cloud.connect() as c:
        assert c.execute("SELECT count(*) FROM scsync_outbox WHERE site_id = 1").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM patients WHERE id = 1").fetchone() == (0,)
