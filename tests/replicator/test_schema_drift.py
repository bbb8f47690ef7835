"""The cloud one migration ahead (a new nullable column): both directions keep working
with a site on the previous schema, and the column flows once the site has it too."""

from __future__ import annotations

from tests.world import World, rows, sync


async def test_cloud_ahead_by_a_column_then_site_catches_up(world: World) -> None:
    s1 = world.site1
    with world.cloud.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients ADD COLUMN nickname text")
    with s1.local.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (site_id, patient_code, name) VALUES (1, 'L', 'local')")
    with world.cloud.connect(autocommit=True) as c:
        c.execute(
            "INSERT INTO patients (site_id, patient_code, name, nickname) "
            "VALUES (1, 'C', 'cloud', 'Cee')"
        )
    await sync(s1)
    local = {r["patient_code"]: r for r in rows(s1.local, "patients").values()}
    cloud = {r["patient_code"]: r for r in rows(world.cloud, "patients").values()}
    assert set(local) == set(cloud) == {"L", "C"}
    assert "nickname" not in local["C"]
    assert local["C"]["revision"] == cloud["C"]["revision"]

    # A site edit of a row whose cloud copy has the new column leaves that column alone.
    with s1.local.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET name = 'renamed' WHERE patient_code = 'C'")
    await sync(s1)
    cloud = {r["patient_code"]: r for r in rows(world.cloud, "patients").values()}
    assert (cloud["C"]["name"], cloud["C"]["nickname"]) == ("renamed", "Cee")
    assert not cloud["C"]["in_conflict"]
    # Each batch carries the sender's schema revision.
    with world.cloud.connect() as c:
        got = c.execute(
            "SELECT peer_schema_revision FROM scsync_replication_cursor WHERE lane = 'push'"
        ).fetchone()
    with s1.local.connect() as c:
        assert got == c.execute("SELECT version_num FROM alembic_version").fetchone()

    # The site upgrades: from now on the column crosses both ways.
    with s1.local.connect(autocommit=True) as c:
        c.execute("ALTER TABLE patients ADD COLUMN nickname text")
        c.execute("UPDATE patients SET nickname = 'Ell' WHERE patient_code = 'L'")
    with world.cloud.connect(autocommit=True) as c:
        c.execute("UPDATE patients SET nickname = 'Cee2' WHERE patient_code = 'C'")
    await sync(s1)
    local = {r["patient_code"]: r for r in rows(s1.local, "patients").values()}
    cloud = {r["patient_code"]: r for r in rows(world.cloud, "patients").values()}
    assert (local["L"]["nickname"], cloud["L"]["nickname"]) == ("Ell", "Ell")
    assert (local["C"]["nickname"], cloud["C"]["nickname"]) == ("Cee2", "Cee2")
