"""SECURITY DEFINER functions and EXECUTE rights (revision 0010): no app function is
executable by PUBLIC, and a site role cannot make a definer function run its code by
planting a temp table (with a trigger) under a name the function uses."""

from __future__ import annotations

import psycopg
import pytest

from tests.world import World

pytestmark = pytest.mark.dblevel

# A trigger function in the caller's own temp schema that records who runs it. The
# planted tables carry it for every event a function could cause on them.
_PLANT = """
CREATE TEMP TABLE loot (who text);
GRANT ALL ON loot TO PUBLIC;
CREATE FUNCTION pg_temp.spy() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.loot VALUES (current_user);
    RETURN NULL;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.spy() TO PUBLIC;
"""


def _plant(conn: psycopg.Connection[tuple[object, ...]], table: str, columns: str) -> None:
    conn.execute(f"CREATE TEMP TABLE {table} ({columns})")
    conn.execute(f"GRANT ALL ON {table} TO PUBLIC")
    conn.execute(
        f"CREATE TRIGGER spy_row AFTER INSERT OR UPDATE OR DELETE ON {table}"
        " FOR EACH ROW EXECUTE FUNCTION pg_temp.spy()"
    )
    conn.execute(
        f"CREATE TRIGGER spy_stmt AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}"
        " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.spy()"
    )


def _who(conn: psycopg.Connection[tuple[object, ...]]) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT who FROM pg_temp.loot").fetchall()}


def test_a_planted_read_table_never_runs_as_the_owner(world: World) -> None:
    site = world.site1
    with world.cloud.connect() as c:
        c.execute("INSERT INTO patients (id, site_id, name, patient_code) VALUES (1, 1, 'a', 'p1')")
        c.commit()
    with psycopg.connect(site.cloud_url, autocommit=True) as c:
        c.execute(_PLANT)
        _plant(
            c,
            "scsync_read_keys",
            "ord bigint, seqs bigint[], table_name text, row_id bigint, last_op text,"
            " last_revision bigint, last_base bigint, source_commit_at timestamptz",
        )
        try:
            c.execute("SELECT * FROM scsync_replicator_read('pull', 1, 10, '{}', '{}')")
        except psycopg.errors.InsufficientPrivilege as exc:
            assert "owner" in str(exc)  # an owner that may not drop it refuses the call
        assert _who(c) <= {site.creds.db_role}


def test_a_planted_stage_table_never_runs_as_the_owner(world: World) -> None:
    """The apply stages the batch in a table it makes itself: one the caller made first
    is dropped (an owner that may: the tests' superuser) or refuses the call (an owner
    that may not), and never runs the caller's trigger as the owner."""
    site = world.site1
    columns = '{"patients": ["id", "site_id", "name", "patient_code"]}'
    batch = (
        '[{"ord": 1, "table_name": "patients", "row_id": 7, "op": "U", "revision": 5,'
        ' "base": null, "row_data": {"id": 7, "site_id": 1, "name": "x", "patient_code": "x"}}]'
    )
    with psycopg.connect(site.cloud_url, autocommit=True) as c:
        c.execute(_PLANT)
        for call in (
            "SELECT * FROM scsync_replicator_apply('cloud', %s, %s)",
            "SELECT * FROM scsync_replicator_apply_batch('push', 1, 'cloud', %s, '[1]', '{}',"
            " now(), NULL, %s)",
        ):
            c.execute("DROP TABLE IF EXISTS pg_temp.scsync_stage")
            _plant(
                c,
                "scsync_stage",
                "ord bigint, table_name text, row_id bigint, op text, revision bigint,"
                " base bigint, row_data jsonb, resolution jsonb, dest_row jsonb,"
                " dest_revision bigint, outcome text, conflict_id bigint",
            )
            c.execute(
                "INSERT INTO scsync_stage (ord, table_name, row_id, op, revision)"
                " VALUES (1, 'patients', 7, 'U', 5)"
            )
            try:
                c.execute(call, (columns, batch))
            except psycopg.errors.InsufficientPrivilege as exc:
                assert "owner" in str(exc)
            assert _who(c) <= {site.creds.db_role}


def test_the_lanes_still_apply_with_their_own_stage(world: World) -> None:
    """The same call without a planted table applies (the guard above is not a refusal
    of everything)."""
    site = world.site1
    columns = '{"patients": ["id", "site_id", "name", "patient_code", "revision"]}'
    batch = (
        '[{"ord": 1, "table_name": "patients", "row_id": 7, "op": "U", "revision": 5,'
        ' "base": null, "row_data": {"id": 7, "site_id": 1, "name": "x", "patient_code": "x",'
        ' "revision": 5}}]'
    )
    with psycopg.connect(site.cloud_url) as c:
        c.execute("SELECT set_config('scsync.replicating', 'on', true)")
        got = c.execute(
            "SELECT row_id, outcome FROM scsync_replicator_apply('cloud', %s, %s)",
            (columns, batch),
        ).fetchall()
        assert got == [(7, "apply")]
        c.commit()
        # The stage went with the transaction: nothing of the batch outlives it.
        assert c.execute("SELECT to_regclass('pg_temp.scsync_stage')").fetchone() == (None,)


_APP_FUNCTIONS = """
SELECT p.oid::regprocedure::text, p.prosecdef, p.proowner::regrole::text, p.proacl::text[]
  FROM pg_proc p
 WHERE p.pronamespace = 'public'::regnamespace
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
"""


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_public_executes_no_app_function(world: World, side: str) -> None:
    db = world.cloud if side == "cloud" else world.site1.local
    with db.connect() as c:
        functions = c.execute(_APP_FUNCTIONS).fetchall()
        assert len(functions) > 20  # the query finds them: an empty answer proves nothing
        public = c.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace = 'public'::regnamespace"
            "   AND has_function_privilege('public', p.oid, 'EXECUTE')"
        ).fetchall()
        assert public == []
        # The same from the ACLs themselves: no entry for PUBLIC (grantee 0).
        acl_public = c.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p,"
            " LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            " WHERE p.pronamespace = 'public'::regnamespace AND a.grantee = 0"
        ).fetchall()
        assert acl_public == []
        # A function made later by the migrations' role is covered as well.
        c.execute("CREATE FUNCTION scsync_later() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        assert c.execute(
            "SELECT has_function_privilege('public', 'scsync_later()', 'EXECUTE')"
        ).fetchone() == (False,)
        c.rollback()


def test_no_definer_function_is_callable_but_by_the_owner_and_site_lanes(world: World) -> None:
    """A SECURITY DEFINER function runs as its owner: only the owner may call it, except
    the lane functions a site role still uses until revision 0011 drops those roles
    (each checks the caller's site, and makes every table it uses in the same call)."""
    allowed_for_sites = {
        "scsync_current_site()",
        "scsync_replicator_read(text,integer,integer,jsonb,bigint[])",
        "scsync_replicator_apply(text,jsonb,jsonb,bigint)",
        "scsync_replicator_ack(text,bigint[],jsonb)",
        "scsync_replicator_recover_rows(jsonb)",
        "scsync_replicator_park(text,text,bigint,integer,bigint,text,double precision,"
        "double precision)",
    }
    with world.cloud.connect() as c:
        rows = c.execute(
            "SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p,"
            " LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
            " LEFT JOIN pg_roles r ON r.oid = a.grantee"
            " WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef"
            "   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner"
        ).fetchall()
    callers: dict[str, set[str]] = {}
    for fn, role in rows:
        callers.setdefault(str(fn).replace(", ", ","), set()).add(str(role))
    assert set(callers) == allowed_for_sites
    assert all(who == {"scsync_site"} for who in callers.values()), callers
