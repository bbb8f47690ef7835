"""Push and pull lanes between two sites and the cloud: the apply rule, deletes,
bookkeeping, tenant walls."""

from __future__ import annotations

import psycopg

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
