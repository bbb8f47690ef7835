"""SECURITY DEFINER functions and EXECUTE rights (baseline_privileges.sql): no app function is
executable by PUBLIC or by any role but its owner, and no lane function runs the code of
a temp table (with a trigger) planted under a name the function uses."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

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
CREATE FUNCTION pg_temp.spy_boolean() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.loot VALUES (current_user);
    RETURN NULL;
END $$;
CREATE FUNCTION pg_temp.spy_bigint() RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pg_temp.loot VALUES (current_user);
    RETURN NULL;
END $$;
GRANT EXECUTE ON FUNCTION pg_temp.spy_boolean(), pg_temp.spy_bigint() TO PUBLIC;
"""


def _plant(
    conn: psycopg.Connection[tuple[object, ...]], table: str, of_type: str, how: str = "trigger"
) -> None:
    """A temp table of exactly the lane function's type, that runs pg_temp code when the
    function writes it: by a trigger, a rule, or a default of a column the function does
    not name in its INSERT (the type's last one)."""
    conn.execute(f"CREATE TEMP TABLE {table} OF {of_type}")
    if how == "default":
        row = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
            " WHERE a.attrelid = %s::regclass AND a.attnum > 0 ORDER BY a.attnum DESC LIMIT 1",
            (f"pg_temp.{table}",),
        ).fetchone()
        assert row is not None
        last, kind = row
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN {last} SET DEFAULT pg_temp.spy_{kind}()")
        conn.execute(f"GRANT ALL ON {table} TO PUBLIC")
        return
    conn.execute(f"GRANT ALL ON {table} TO PUBLIC")
    if how == "rule":
        conn.execute(
            f"CREATE RULE spy AS ON INSERT TO {table}"
            " DO ALSO INSERT INTO pg_temp.loot VALUES (current_user)"
        )
        return
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


@contextmanager
def _stranger(world: World) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A session on the cloud database as a role that is not the functions' owner (what
    a site's login was before revision 0011, or anyone else's)."""
    role = f"scsync_probe_{uuid.uuid4().hex[:8]}"
    with world.cloud.connect(autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role}")
        admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        try:
            with world.cloud.connect(autocommit=True) as c:
                c.execute(f"SET ROLE {role}")
                yield c
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


# What the lane functions make their scratch tables of (baseline_replicator.sql): a planted
# table of the very same type is told apart only by the code it carries.
_STAGE_TYPE = "scsync_stage_row"
_READ_TYPE = "scsync_read_key"
_COLUMNS = '{"patients": ["id", "site_id", "name", "patient_code", "revision"]}'
_BATCH = (
    '[{"ord": 1, "table_name": "patients", "row_id": 7, "op": "U", "revision": 5,'
    ' "base": null, "row_data": {"id": 7, "site_id": 1, "name": "x", "patient_code": "x",'
    ' "revision": 5}}]'
)
_LANE_CALLS = (
    ("SELECT * FROM scsync_replicator_read('pull', 1, 10, '{}', '{}')", ()),
    ("SELECT * FROM scsync_replicator_apply('cloud', %s, %s)", (_COLUMNS, _BATCH)),
    (
        "SELECT * FROM scsync_replicator_apply_batch('push', 1, 'cloud', %s, '[1]', '{}',"
        " now(), NULL, %s)",
        (_COLUMNS, _BATCH),
    ),
)


def test_no_one_but_the_owner_calls_a_lane_function(world: World) -> None:
    """No site holds a login here any more (revision 0011); whoever else has one cannot
    call the lane functions at all, planted temp tables or not."""
    with _stranger(world) as c:
        c.execute(_PLANT)
        _plant(c, "scsync_read_keys", _READ_TYPE)
        _plant(c, "scsync_stage", _STAGE_TYPE)
        for call, params in _LANE_CALLS:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                c.execute(call, params)
        assert _who(c) == set()


@pytest.mark.parametrize("how", ["trigger", "rule", "default"])
def test_a_planted_table_never_runs_its_code_in_a_lane_function(world: World, how: str) -> None:
    """The read and the apply use only scratch tables they made themselves: one planted
    first (here by the owner itself) is replaced, and its trigger never fires."""
    with world.cloud.connect() as c:
        c.execute("INSERT INTO patients (id, site_id, name, patient_code) VALUES (1, 1, 'a', 'p1')")
        c.commit()
    with world.cloud.connect(autocommit=True) as c:
        c.execute(_PLANT)
        for call, params in _LANE_CALLS:
            c.execute("DROP TABLE IF EXISTS pg_temp.scsync_read_keys, pg_temp.scsync_stage")
            _plant(c, "scsync_read_keys", _READ_TYPE, how)
            _plant(c, "scsync_stage", _STAGE_TYPE, how)
            c.execute("SELECT set_config('scsync.replicating', 'on', false)")
            c.execute(call, params)
            assert _who(c) == set(), call


def test_the_lanes_still_apply_with_their_own_stage(world: World) -> None:
    """The same call without a planted table applies (the guard above is not a refusal
    of everything)."""
    with world.cloud.connect() as c:
        c.execute("SELECT set_config('scsync.replicating', 'on', true)")
        got = c.execute(
            "SELECT row_id, outcome FROM scsync_replicator_apply('cloud', %s, %s)",
            (_COLUMNS, _BATCH),
        ).fetchall()
        assert got == [(7, "apply")]
        c.commit()
        # Nothing of the batch outlives the transaction.
        assert c.execute("SELECT count(*) FROM pg_temp.scsync_stage").fetchone() == (0,)


def test_the_lanes_keep_their_own_scratch_tables_between_calls(world: World) -> None:
    """A scratch table the lane function made is kept for the session's next call (made
    afresh per call, its catalog writes cost a one-row read ~7 ms instead of ~1): the
    check that replaces a planted one accepts exactly its own."""
    with world.cloud.connect(autocommit=True) as c:
        c.execute("INSERT INTO patients (id, site_id, name, patient_code) VALUES (1, 1, 'a', 'p1')")
        oids: dict[str, set[int]] = {"scsync_read_keys": set(), "scsync_stage": set()}
        for _ in range(3):
            for call, params in _LANE_CALLS:
                c.execute("SELECT set_config('scsync.replicating', 'on', false)")
                c.execute(call, params)
            for name, seen in oids.items():
                row = c.execute(
                    "SELECT to_regclass(%s)::oid::bigint", (f"pg_temp.{name}",)
                ).fetchone()
                assert row is not None and isinstance(row[0], int), name
                seen.add(row[0])
        assert {name: len(seen) for name, seen in oids.items()} == {
            "scsync_read_keys": 1,
            "scsync_stage": 1,
        }


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


def test_no_definer_function_is_callable_but_by_the_owner(world: World) -> None:
    """A SECURITY DEFINER function runs as its owner: only the owner may call it (no
    site has a login here since revision 0011)."""
    for db in (world.cloud, world.site1.local):
        with db.connect() as c:
            rows = c.execute(
                "SELECT p.oid::regprocedure::text, r.rolname FROM pg_proc p,"
                " LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
                " LEFT JOIN pg_roles r ON r.oid = a.grantee"
                " WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef"
                "   AND a.privilege_type = 'EXECUTE' AND a.grantee <> p.proowner"
            ).fetchall()
        assert rows == [], rows
