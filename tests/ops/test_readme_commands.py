"""Every command the README shows is run here (or, for `make test`, by CI itself), so
the README cannot rot: each fenced ```sh block is executed line by line against fresh
databases (the README's example URLs are swapped for them), `make` targets are checked
with `make -n` (the demo itself runs in tests/ops/test_demo.py), and every `scsync …`
command quoted inline must exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.pg import PgCluster, TestDatabase

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```sh\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
EXAMPLE = {
    "cloud": "scsync@127.0.0.1:5432/scsync_cloud",
    "local": "scsync@127.0.0.1:5432/scsync_local",
}


def _where(tdb: TestDatabase) -> str:
    u = make_url(tdb.url)
    auth = u.username or ""
    if u.password:
        auth += f":{u.password}"
    return f"{auth}@{u.host}:{u.port}/{u.database}"


def test_readme_has_the_blocks_this_test_knows() -> None:
    assert len(BLOCKS) >= 3
    assert any(b.lstrip().startswith("make ") for b in BLOCKS)
    assert any("scsync site register" in b for b in BLOCKS)
    assert any(b.lstrip().startswith("alembic ") for b in BLOCKS)


def test_make_targets_run_what_the_readme_says() -> None:
    block = next(b for b in BLOCKS if b.lstrip().startswith("make "))
    targets = [ln.split()[1] for ln in block.splitlines() if ln.startswith("make ")]
    assert targets == ["demo", "test"]
    dry = {
        t: subprocess.run(
            ["make", "-n", "-W", "pyproject.toml", t],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for t in targets
    }
    assert "scsync demo" in dry["demo"] and "pip install" in dry["demo"]
    for step in ("ruff check", "ruff format --check", "mypy", "pytest -q", "bench/"):
        assert step in dry["test"], step


@pytest.mark.parametrize(
    "index", [i for i, b in enumerate(BLOCKS) if not b.lstrip().startswith("make ")]
)
def test_shell_block_runs(index: int, pg_cluster: PgCluster, tmp_path: Path) -> None:
    dbs = {
        side: pg_cluster.new_database(side, node_id=0, site_id=None, migrated=False)
        for side in ("cloud", "local")
    }
    try:
        script = BLOCKS[index]
        for side, tdb in dbs.items():
            script = script.replace(EXAMPLE[side], _where(tdb))
        assert "127.0.0.1:5432/scsync_" not in script, "an example URL the test cannot map"
        alembic = script.lstrip().startswith("alembic ")
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        for name in ("SCSYNC_CLOUD_DB_URL", "SCSYNC_LOCAL_DB_URL"):
            env.pop(name, None)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT if alembic else tmp_path,  # alembic.ini is at the repository root
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"{script}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
        if "scsync site register" in script:
            assert "site id 1" in done.stdout and "clinic-north" in done.stdout
            assert (tmp_path / "local.toml").exists() and (tmp_path / "cloud.toml").exists()
            # The last command, `scsync status --side cloud`, lists the registered site.
            assert re.search(r"^1\s+clinic-north\s", done.stdout, re.MULTILINE), done.stdout
        if alembic:
            assert "(head)" in done.stdout + done.stderr
    finally:
        for tdb in dbs.values():
            pg_cluster.remove(tdb)


def test_inline_scsync_commands_exist() -> None:
    """`scsync <group> <command>` quoted in the text (not in blocks) must be real commands."""
    text = re.sub(r"^```.*?^```", "", README, flags=re.MULTILINE | re.DOTALL)
    quoted = re.findall(r"`(scsync [^`]+)`", text.replace("\n", " "))
    assert quoted
    seen = set()
    for q in quoted:
        words = [w for w in q.split()[1:] if re.fullmatch(r"[a-z][a-z-]*", w)]
        for n in (2, 1):
            cmd = tuple(words[:n])
            if cmd in seen:
                break
            done = subprocess.run(
                [sys.executable, "-m", "scsync", *cmd, "--help"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if done.returncode == 0:
                seen.add(cmd)
                break
        else:
            pytest.fail(f"README quotes {q!r}, which is no scsync command")
