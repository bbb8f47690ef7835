"""schema.events.EventType is the one list of event types: every event type the SQL
names is a member, every member is named somewhere (the SQL, or the code through the
enum), and the code names none by a string literal."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

from sqlalchemy import CheckConstraint

from schema.events import LEASE_EVENTS, EventType
from schema.tables import metadata_for

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "lockd", "replicator", "schema", "scsync")
# Frozen migration steps keep their own copy of what they created; the enum itself.
NOT_CODE = {"schema/events.py", "schema/migrations/steps.py"}
# Files still allowed to name an event type by a string literal: none.
LITERALS_LEFT: dict[str, set[str]] = {}


def _sql_texts() -> dict[str, str]:
    """The SQL the migrations and queries run (not the generated current_*.sql dumps)."""
    folder = resources.files("schema.sql")
    return {
        p.name: p.read_text()
        for p in folder.iterdir()
        if p.name.endswith(".sql") and not p.name.startswith("current_")
    }


def _sql_event_types() -> set[str]:
    found: set[str] = set()
    for text in _sql_texts().values():
        # a quoted 'word.word' is an event type, or one of our settings (scsync.*)
        found |= {s for s in re.findall(r"'([a-z_]+\.[a-z_]+)'", text)}
    return {s for s in found if not s.startswith("scsync.")}


def _python_files() -> list[tuple[str, ast.Module]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in NOT_CODE:
                out.append((rel, ast.parse(path.read_text(), rel)))
    return out


def _literals(tree: ast.Module) -> set[str]:
    values = {m.value for m in EventType}
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in values
    }


def _enum_uses(tree: ast.Module) -> set[str]:
    return {
        EventType[n.attr].value
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "EventType"
        and n.attr in EventType.__members__
    }


def test_every_event_type_in_the_sql_is_a_member() -> None:
    found = _sql_event_types()
    assert found, "no event type found in schema/sql: the pattern is wrong"
    assert found <= {m.value for m in EventType}, sorted(found - set(EventType))


def test_every_member_is_named_somewhere() -> None:
    named = _sql_event_types()
    for _, tree in _python_files():
        named |= _enum_uses(tree) | _literals(tree)
    assert {m.value for m in EventType} <= named, sorted(set(EventType) - named)


def test_the_code_names_no_event_type_by_a_literal() -> None:
    found = {
        rel: lits
        for rel, tree in _python_files()
        if (lits := _literals(tree) - LITERALS_LEFT.get(rel, set()))
    }
    assert not found, found


def test_the_lease_events_constraint_is_the_enums() -> None:
    events = metadata_for("cloud").tables["scsync_lease_events"]
    (check,) = [
        str(c.sqltext)
        for c in events.constraints
        if isinstance(c, CheckConstraint) and "event IN" in str(c.sqltext)
    ]
    assert set(re.findall(r"'([a-z_.]+)'", check)) == set(LEASE_EVENTS)
    assert set(LEASE_EVENTS) == {m for m in EventType if m.startswith("lease.")}
