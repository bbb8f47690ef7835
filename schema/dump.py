"""A normalised, deterministic text dump of a database's schema, read from the catalogs.

What ``schema/sql/current_local.sql`` and ``current_cloud.sql`` are made of: the schema of
a freshly migrated database of each side, in one file a reader can search. Every object of
the schemas that are not PostgreSQL's own (extensions' members left out), sorted by name:
types, sequences, tables (columns with type, default, nullability, generation; constraints;
row-level security), indexes, views, policies, functions by their full definition
(``pg_get_functiondef``), triggers, publications, privileges and default privileges. No
OIDs, no sequence positions, no statistics; the role that owns the objects is written
``<owner>``, so that dumps made by different roles and servers (PostgreSQL 15 to 18) are
equal. It is text to read and compare, not a script to restore (``pg_dump`` does that).

Regenerate the checked-in files after a migration changes the schema::

    python -m schema.dump            # both sides, on a throwaway PostgreSQL
    python -m schema.dump --check    # exit 1 with a diff when a file is stale

and dump any database with ``scsync db dump-schema --side local --url ...``.
``tests/test_schema_dump.py`` fails when a checked-in file differs from a fresh migration.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from schema.tables import SIDES, Side
from schema.urls import libpq_url

SQL_DIR = Path(__file__).resolve().parent / "sql"
OWNER = "<owner>"

# Schemas of PostgreSQL itself: never dumped.
_SYSTEM = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'"
)
# Objects an extension brought: its own business (only the extension's name is dumped).
_NOT_EXTENSION = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = {cls}::regclass"
    " AND d.objid = {oid} AND d.deptype = 'e')"
)

_PRIVILEGES = {
    "r": "SELECT",
    "a": "INSERT",
    "w": "UPDATE",
    "d": "DELETE",
    "D": "TRUNCATE",
    "x": "REFERENCES",
    "t": "TRIGGER",
    "X": "EXECUTE",
    "U": "USAGE",
    "C": "CREATE",
    "T": "TEMPORARY",
    "c": "CONNECT",
}
# MAINTAIN (PostgreSQL 17+) is left out: an owner holds it implicitly on 17 and 18 and
# cannot hold it on 15, so it would tell the servers apart, not the schemas.


def default_path(side: Side) -> Path:
    """The checked-in dump of a side."""
    return SQL_DIR / f"current_{side}.sql"


def _rows(conn: psycopg.Connection[Any], query: str, *params: object) -> list[tuple[Any, ...]]:
    return list(conn.execute(query, params or None).fetchall())


def _not_extension(cls: str, oid: str) -> str:
    return _NOT_EXTENSION.format(cls=f"'{cls}'", oid=oid)


def _role(name: str | None, owner: str) -> str:
    if name is None or name == "":
        return "PUBLIC"
    return OWNER if name == owner else name


def _acl(conn: psycopg.Connection[Any], acl: Sequence[str] | None, owner: str) -> list[str]:
    """``aclitem[]`` as sorted ``PRIVILEGES TO grantee`` lines (grantor left out)."""
    if acl is None:
        return []
    lines = []
    for item in acl:
        grantee, _, rest = str(item).partition("=")
        privs = rest.split("/", 1)[0]
        names = []
        i = 0
        while i < len(privs):
            letter = privs[i]
            grant_option = i + 1 < len(privs) and privs[i + 1] == "*"
            i += 2 if grant_option else 1
            if letter in _PRIVILEGES:
                names.append(_PRIVILEGES[letter] + (" WITH GRANT OPTION" if grant_option else ""))
        if names:
            who = _role(grantee.strip('"'), owner)
            lines.append(f"{', '.join(sorted(names))} TO {who}")
    return sorted(lines)


def _section(title: str, blocks: Iterable[str]) -> list[str]:
    body = [b.rstrip() for b in blocks]
    if not body:
        return []
    return [f"-- ==== {title} ====", "", *[b + "\n" for b in body]]


def _extensions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(conn, "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1")
    return [f"CREATE EXTENSION {name};" for (name,) in rows]


def _types(conn: psycopg.Connection[Any]) -> list[str]:
    out = []
    rows = _rows(
        conn,
        "SELECT t.oid, n.nspname, t.typname, t.typtype, c.oid FROM pg_type t"
        " JOIN pg_namespace n ON n.oid = t.typnamespace"
        " LEFT JOIN pg_class c ON c.oid = t.typrelid"
        f" WHERE {_SYSTEM} AND {_not_extension('pg_type', 't.oid')}"
        " AND t.typtype IN ('c', 'e', 'd', 'r') AND (t.typtype <> 'c' OR c.relkind = 'c')"
        " ORDER BY n.nspname, t.typname",
    )
    for oid, nsp, name, kind, relid in rows:
        qualified = _qualified(nsp, name)
        if kind == "c":
            cols = _rows(
                conn,
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
                " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                relid,
            )
            body = ",\n".join(f"    {c} {t}" for c, t in cols)
            out.append(f"CREATE TYPE {qualified} AS (\n{body}\n);")
        elif kind == "e":
            labels = _rows(
                conn,
                "SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder",
                oid,
            )
            values = ", ".join("'" + str(label).replace("'", "''") + "'" for (label,) in labels)
            out.append(f"CREATE TYPE {qualified} AS ENUM ({values});")
        elif kind == "d":
            (base, notnull, default) = _rows(
                conn,
                "SELECT format_type(typbasetype, typtypmod), typnotnull, typdefault"
                " FROM pg_type WHERE oid = %s",
                oid,
            )[0]
            checks = _rows(
                conn,
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contypid = %s AND contype = 'c' ORDER BY 1",
                oid,
            )
            text = f"CREATE DOMAIN {qualified} AS {base}"
            text += f" DEFAULT {default}" if default is not None else ""
            text += " NOT NULL" if notnull else ""
            text += "".join(f"\n    CONSTRAINT {n} {d}" for n, d in checks)
            out.append(text + ";")
        else:
            out.append(f"CREATE TYPE {qualified} AS RANGE;")
    return out


def _qualified(nsp: str, name: str) -> str:
    return name if nsp == "public" else f"{nsp}.{name}"


def _sequences(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL), s.seqstart,"
        " s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,"
        " (SELECT format('%%I.%%I', t.relname, a.attname) FROM pg_depend d"
        "    JOIN pg_class t ON t.oid = d.refobjid"
        "    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        "   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
        "     AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'a')"
        " FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND {_not_extension('pg_class', 'c.oid')}"
        # an identity column's sequence is part of its column
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
        "   AND d.objid = c.oid AND d.deptype = 'i')"
        " ORDER BY 1, 2",
    )
    out = []
    for nsp, name, typ, start, inc, lo, hi, cache, cycle, owned in rows:
        text = (
            f"CREATE SEQUENCE {_qualified(nsp, name)} AS {typ}\n"
            f"    START {start} INCREMENT {inc} MINVALUE {lo} MAXVALUE {hi} CACHE {cache}"
            f"{' CYCLE' if cycle else ''}"
        )
        if owned:
            text += f"\n    OWNED BY {owned}"
        out.append(text + ";")
    return out


def _tables(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    rows = _rows(
        conn,
        "SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.reloptions,"
        " c.relrowsecurity, c.relforcerowsecurity,"
        " CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,"
        " CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND c.relkind IN ('r', 'p', 'f')"
        f" AND {_not_extension('pg_class', 'c.oid')}"
        " ORDER BY 2, 3",
    )
    out = []
    for oid, nsp, name, kind, persistence, options, rls, force_rls, partkey, bound in rows:
        lines = []
        for col, typ, notnull, default, generated, identity, collation in _rows(
            conn,
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
            " pg_get_expr(d.adbin, d.adrelid), a.attgenerated, a.attidentity,"
            " CASE WHEN a.attcollation <> t.typcollation THEN co.collname END"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
            " LEFT JOIN pg_collation co ON co.oid = a.attcollation"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            oid,
        ):
            text = f"    {col} {typ}"
            if collation:
                text += f' COLLATE "{collation}"'
            if generated in ("s", "v"):
                text += f" GENERATED ALWAYS AS ({default})"
                text += " STORED" if generated == "s" else " VIRTUAL"
            elif default is not None:
                text += f" DEFAULT {default}"
            if identity in ("a", "d"):
                text += f" GENERATED {'ALWAYS' if identity == 'a' else 'BY DEFAULT'} AS IDENTITY"
            if notnull:
                text += " NOT NULL"
            lines.append(text)
        # NOT NULL constraints (contype 'n', PostgreSQL 18) are the columns' NOT NULL above.
        for conname, condef in _rows(
            conn,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s AND contype <> 'n' ORDER BY 1",
            oid,
        ):
            lines.append(f"    CONSTRAINT {conname} {condef}")
        unlogged = "UNLOGGED " if persistence == "u" else ""
        foreign = "FOREIGN " if kind == "f" else ""
        text = f"CREATE {unlogged}{foreign}TABLE {_qualified(nsp, name)} (\n"
        text += ",\n".join(lines) + "\n)"
        if partkey:
            text += f" PARTITION BY {partkey}"
        if bound:
            text += f" {bound}"
        if options:
            text += f" WITH ({', '.join(sorted(options))})"
        text += ";"
        if rls:
            text += f"\nALTER TABLE {_qualified(nsp, name)} ENABLE ROW LEVEL SECURITY;"
        if force_rls:
            text += f"\nALTER TABLE {_qualified(nsp, name)} FORCE ROW LEVEL SECURITY;"
        out.append(text)
    return out


def _indexes(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND {_not_extension('pg_class', 't.oid')}"
        " ORDER BY n.nspname, t.relname, c.relname",
    )
    return [f"{definition};" for (definition,) in rows]


def _views(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT n.nspname, c.relname, c.relkind, pg_get_viewdef(c.oid, true), c.reloptions"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND c.relkind IN ('v', 'm') AND {_not_extension('pg_class', 'c.oid')}"
        " ORDER BY 1, 2",
    )
    out = []
    for nsp, name, kind, definition, options in rows:
        materialized = "MATERIALIZED " if kind == "m" else ""
        with_options = f" WITH ({', '.join(sorted(options))})" if options else ""
        out.append(
            f"CREATE {materialized}VIEW {_qualified(nsp, name)}{with_options} AS\n"
            f"{definition.rstrip().rstrip(';')};"
        )
    return out


def _policies(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    rows = _rows(
        conn,
        "SELECT schemaname, tablename, policyname, permissive, roles, cmd, qual, with_check"
        " FROM pg_policies ORDER BY 1, 2, 3",
    )
    out = []
    for nsp, table, name, permissive, roles, cmd, qual, check in rows:
        text = f"CREATE POLICY {name} ON {_qualified(nsp, table)} AS {permissive} FOR {cmd}"
        text += f" TO {', '.join(sorted(_role(r, owner) for r in roles))}"
        if qual:
            text += f"\n    USING ({qual})"
        if check:
            text += f"\n    WITH CHECK ({check})"
        out.append(text + ";")
    return out


def _functions(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT p.prokind, n.nspname, p.proname, pg_get_function_identity_arguments(p.oid),"
        " CASE WHEN p.prokind IN ('f', 'p', 'w') THEN pg_get_functiondef(p.oid) END"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        f" WHERE {_SYSTEM} AND {_not_extension('pg_proc', 'p.oid')}"
        " ORDER BY 2, 3, 4",
    )
    out = []
    for _kind, nsp, name, args, definition in rows:
        if definition is None:  # an aggregate: its signature only
            out.append(f"CREATE AGGREGATE {_qualified(nsp, name)}({args});")
        else:
            out.append(definition.strip() + ";")
    return out


def _triggers(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT pg_get_triggerdef(tg.oid, true) FROM pg_trigger tg"
        " JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND NOT tg.tgisinternal AND {_not_extension('pg_class', 'c.oid')}"
        " ORDER BY n.nspname, c.relname, tg.tgname",
    )
    event = _rows(
        conn,
        "SELECT evtname, evtevent, evtfoid::regproc::text, evttags, evtenabled"
        " FROM pg_event_trigger ORDER BY 1",
    )
    out = [f"{definition};" for (definition,) in rows]
    for name, on, func, tags, enabled in event:
        when = f"\n    WHEN TAG IN ({', '.join(sorted(tags))})" if tags else ""
        state = "" if enabled == "O" else f" -- enabled: {enabled}"
        out.append(
            f"CREATE EVENT TRIGGER {name} ON {on}{when}\n    EXECUTE FUNCTION {func}();{state}"
        )
    return out


def _rules(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT definition FROM pg_rules WHERE schemaname NOT IN ('pg_catalog',"
        " 'information_schema') ORDER BY schemaname, tablename, rulename",
    )
    return [str(definition).strip() for (definition,) in rows]


def _publications(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT oid, pubname, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate,"
        " pubviaroot FROM pg_publication ORDER BY pubname",
    )
    out = []
    for oid, name, all_tables, ins, upd, dele, trunc, via_root in rows:
        ops = [o for o, on in (("insert", ins), ("update", upd), ("delete", dele)) if on]
        ops += ["truncate"] if trunc else []
        text = f"CREATE PUBLICATION {name}"
        if all_tables:
            text += " FOR ALL TABLES"
        text += f" WITH (publish = '{', '.join(ops)}'"
        text += ", publish_via_partition_root = true)" if via_root else ")"
        text += ";"
        members = _rows(
            conn,
            "SELECT n.nspname, c.relname, pg_get_expr(r.prqual, r.prrelid),"
            " (SELECT string_agg(a.attname, ', ' ORDER BY a.attnum) FROM pg_attribute a"
            "   WHERE a.attrelid = r.prrelid AND a.attnum = ANY (r.prattrs))"
            " FROM pg_publication_rel r JOIN pg_class c ON c.oid = r.prrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE r.prpubid = %s ORDER BY 1, 2",
            oid,
        )
        for nsp, table, where, columns in members:
            member = _qualified(nsp, table) + (f" ({columns})" if columns else "")
            member += f" WHERE ({where})" if where else ""
            text += f"\nALTER PUBLICATION {name} ADD TABLE {member};"
        schemas = _rows(
            conn,
            "SELECT n.nspname FROM pg_publication_namespace p"
            " JOIN pg_namespace n ON n.oid = p.pnnspid WHERE p.pnpubid = %s ORDER BY 1",
            oid,
        )
        for (nsp,) in schemas:
            text += f"\nALTER PUBLICATION {name} ADD TABLES IN SCHEMA {nsp};"
        out.append(text)
    return out


def _privileges(conn: psycopg.Connection[Any], owner: str) -> list[str]:
    """Privileges set on objects (an object without any has PostgreSQL's defaults)."""
    out = []
    relations = _rows(
        conn,
        "SELECT n.nspname, c.relname, c.relkind, c.relacl FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        f" WHERE {_SYSTEM} AND c.relacl IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        f" AND {_not_extension('pg_class', 'c.oid')} ORDER BY 1, 2",
    )
    for nsp, name, kind, acl in relations:
        what = "SEQUENCE" if kind == "S" else "TABLE"
        grants = _acl(conn, acl, owner)
        out.append(
            f"-- ON {what} {_qualified(nsp, name)}: "
            + ("; ".join(grants) if grants else "nothing granted")
        )
    functions = _rows(
        conn,
        "SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.proacl"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        f" WHERE {_SYSTEM} AND {_not_extension('pg_proc', 'p.oid')} ORDER BY 1, 2, 3",
    )
    for nsp, name, args, acl in functions:
        target = f"FUNCTION {_qualified(nsp, name)}({args})"
        if acl is None:
            out.append(f"-- ON {target}: PostgreSQL's default (EXECUTE TO PUBLIC)")
            continue
        grants = _acl(conn, acl, owner)
        out.append(f"-- ON {target}: " + ("; ".join(grants) if grants else "nothing granted"))
    schemas = _rows(
        conn,
        "SELECT n.nspname, n.nspacl FROM pg_namespace n"
        f" WHERE {_SYSTEM} AND n.nspname <> 'public' ORDER BY 1",
    )
    for nsp, acl in schemas:
        grants = _acl(conn, acl, owner)
        out.append(f"-- ON SCHEMA {nsp}: " + ("; ".join(grants) if grants else "default"))
    defaults = _rows(
        conn,
        "SELECT pg_get_userbyid(d.defaclrole), n.nspname, d.defaclobjtype, d.defaclacl"
        " FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace"
        " ORDER BY 1, 2, 3",
    )
    kinds = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}
    for role, nsp, kind, acl in defaults:
        scope = f" IN SCHEMA {nsp}" if nsp else ""
        grants = _acl(conn, acl, owner)
        out.append(
            f"-- ALTER DEFAULT PRIVILEGES FOR ROLE {_role(role, owner)}{scope} ON "
            f"{kinds.get(kind, kind)}: " + ("; ".join(grants) if grants else "nothing granted")
        )
    return ["\n".join(out)] if out else []


def _comments(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        "SELECT pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description"
        " FROM pg_description d WHERE d.classoid IN"
        " ('pg_class'::regclass, 'pg_proc'::regclass, 'pg_type'::regclass)"
        " AND EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        f"   WHERE c.oid = d.objoid AND {_SYSTEM}"
        "   UNION ALL SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        f"   WHERE p.oid = d.objoid AND {_SYSTEM}"
        "   UNION ALL SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        f"   WHERE t.oid = d.objoid AND {_SYSTEM})"
        " ORDER BY 1",
    )
    return ["\n".join(f"-- COMMENT ON {obj}: {text}" for obj, text in rows)] if rows else []


def _schemas(conn: psycopg.Connection[Any]) -> list[str]:
    rows = _rows(
        conn,
        f"SELECT n.nspname FROM pg_namespace n WHERE {_SYSTEM} AND n.nspname <> 'public'"
        f" AND {_not_extension('pg_namespace', 'n.oid')} ORDER BY 1",
    )
    return [f"CREATE SCHEMA {nsp};" for (nsp,) in rows]


def dump_schema(conn: psycopg.Connection[Any], title: str = "") -> str:
    """The dump of the database ``conn`` is connected to (read-only; any transaction)."""
    (owner,) = _rows(conn, "SELECT current_user")[0]
    header = [
        f"-- The schema of {title or 'a database'}, read from its catalogs by schema/dump.py.",
        "-- Generated: regenerate with `python -m schema.dump` (docs/schema.md); not for restore.",
        "",
    ]
    lines = header
    lines += _section("schemas", _schemas(conn))
    lines += _section("extensions", _extensions(conn))
    lines += _section("types", _types(conn))
    lines += _section("sequences", _sequences(conn))
    lines += _section("tables", _tables(conn, owner))
    lines += _section("indexes", _indexes(conn))
    lines += _section("views", _views(conn))
    lines += _section("rules", _rules(conn))
    lines += _section("row-level security policies", _policies(conn, owner))
    lines += _section("functions", _functions(conn))
    lines += _section("triggers", _triggers(conn))
    lines += _section("publications", _publications(conn))
    lines += _section("privileges", _privileges(conn, owner))
    lines += _section("comments", _comments(conn))
    return "\n".join(lines).rstrip() + "\n"


def dump_url(url: str, title: str = "") -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        return dump_schema(conn, title)


def side_title(side: Side) -> str:
    return f"a {side} database"


def diff(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    """A unified diff of two dumps, empty when equal."""
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=expected_name,
            tofile=actual_name,
        )
    )


def fresh_dump(admin_url: str, side: Side) -> str:
    """Migrate a new database of ``side`` on the server of ``admin_url`` to head, dump it
    and drop it."""
    import uuid

    from psycopg import sql
    from sqlalchemy.engine import make_url

    from schema import migrate

    name = f"scsync_dump_{side}_{uuid.uuid4().hex[:8]}"
    admin = libpq_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url, side)
        return dump_url(url, side_title(side))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schema.dump",
        description="Write schema/sql/current_<side>.sql from a freshly migrated database of "
        "each side, made on SCSYNC_TEST_PG_URL's server or a throwaway embedded PostgreSQL.",
    )
    parser.add_argument("--side", choices=SIDES, action="append", help="default: both")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff if a file is stale"
    )
    parser.add_argument("--admin-url", help="server to migrate on (default: see above)")
    args = parser.parse_args(argv)
    from contextlib import ExitStack

    from scsync.devdb import admin_url

    stale = 0
    with ExitStack() as stack:
        admin = args.admin_url or admin_url(stack, prefix="scsync-dump-")
        for side in args.side or list(SIDES):
            path = default_path(side)
            dumped = fresh_dump(admin, side)
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if args.check:
                changes = diff(current, dumped, str(path), f"fresh {side} migration")
                if changes:
                    sys.stdout.write(changes)
                    stale = 1
            elif current != dumped:
                path.write_text(dumped, encoding="utf-8")
                print(f"wrote {path}")
            else:
                print(f"{path} is current")
    return stale


if __name__ == "__main__":
    raise SystemExit(main())
