"""The first hour of an operator: what `scsync init` writes where only the operator can
know the value (the site's token, its database password; the example configs' JWT
secret) stops every service at start with one line naming the key, and `scsync site
register` prints real values only, and how the site gets its token."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from schema.config import PLACEHOLDERS
from tests.pg import TestDatabase

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "deploy" / "config"


def _init(run: Callable[[list[str]], tuple[int, str]], tmp_path: Path, side: str) -> Path:
    out = tmp_path / f"{side}.toml"
    code, msg = run(["init", "--side", side, "--output", str(out)])
    assert code == 0, msg
    if side == "local":  # init says what is left to fill in
        assert "site_token" in msg and "lockd_token" in msg and "site register" in msg, msg
    return out


def _refused(code: int, msg: str, key: str) -> None:
    assert code == 2, msg
    assert len(msg.splitlines()) == 1, msg
    assert f"'{key}'" in msg and "placeholder" in msg and "scsync init" in msg, msg


def test_services_refuse_what_init_wrote_for_a_site(
    run: Callable[[list[str]], tuple[int, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = _init(run, tmp_path, "local")
    _refused(*run(["api", "run", "--side", "local", "--config", str(local)]), "lockd_token")
    _refused(*run(["replicator", "run", "--config", str(local)]), "site_token")
    # [files] as written is commented out; uncommented as is, its token is refused too.
    text = local.read_text(encoding="utf-8")
    files = text.index("[files]")
    uncommented = text[:files] + re.sub(
        r"^# (blobs_url|token|store) = ", r"\1 = ", text[files:], flags=re.MULTILINE
    )
    # The replicator's own token filled in: what is left is [files]'s placeholder.
    uncommented = uncommented.replace(
        'site_token = "SITE-TOKEN"', 'site_token = "a-real-site-token"', 1
    )
    assert 'site_token = "a-real-site-token"' in uncommented
    local.write_text(uncommented, encoding="utf-8")
    _refused(*run(["files", "run", "--config", str(local)]), "token")
    _refused(*run(["replicator", "run", "--config", str(local)]), "token")


def test_services_refuse_the_example_configs_placeholders(
    run: Callable[[list[str]], tuple[int, str]],
) -> None:
    cloud, local = str(CONFIGS / "cloud.toml"), str(CONFIGS / "local.toml")
    _refused(*run(["api", "run", "--side", "cloud", "--config", cloud]), "jwt_secret")
    _refused(*run(["lockd", "run", "--config", cloud]), "jwt_secret")
    _refused(*run(["api", "run", "--side", "local", "--config", local]), "jwt_secret")
    _refused(*run(["replicator", "run", "--config", local]), "site_token")


def test_site_register_prints_real_values_and_how_to_get_the_token(
    run: Callable[[list[str]], tuple[int, str]], cloud_db: TestDatabase
) -> None:
    code, out = run(
        ["site", "register", "clinic-north", "--url", cloud_db.url, "--api-url", "https://c.x/"]
    )
    assert code == 0, out
    settings = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    values = dict(ln.split(" = ", 1) for ln in settings)
    assert set(values) == {"site_id", "cloud_api_url"}, settings
    assert values["site_id"] == "1"
    assert json.loads(values["cloud_api_url"]) == "https://c.x"
    for placeholder in PLACEHOLDERS:
        assert placeholder not in out
    assert "example" not in out and "<" not in out
    # No database role: the site reaches the cloud only through the cloud API.
    with psycopg.connect(cloud_db.libpq_url) as conn:
        assert conn.execute("SELECT db_role FROM scsync_sites").fetchall() == [(None,)]
    # How the token comes: the exact request on the cloud API, and where it goes.
    assert "POST /v1/auth/token" in out
    assert (
        'curl -sS -X POST -H "Authorization: Bearer $VENDOR_ADMIN_TOKEN"'
        " https://c.x/v1/sites/1/token" in out
    )
    assert "site_token in [replicator]" in out and "lockd_token" in out
    # Without --api-url: the path, and how to get the whole command.
    code, out = run(["site", "register", "clinic-south", "--url", cloud_db.url])
    assert code == 0, out
    assert "POST /v1/sites/2/token on the cloud API" in out and "--api-url" in out
