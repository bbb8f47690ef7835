"""`scsync init`: a commented config file per side that names every setting of every
service and that the services load as written."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from api.app import relay_missing
from api.settings import Settings as ApiSettings
from api.settings import load_settings as load_api
from replicator.settings import Settings as ReplicatorSettings
from replicator.settings import load_settings as load_replicator
from schema.config import read_config_file
from scsync.cli import main
from scsync.config_example import HELP, LOCKD


def _keys(text: str, section: str) -> set[str]:
    """Keys (set or shown commented) of one [section] of the file."""
    body = re.split(r"^(?:# )?\[", text, flags=re.MULTILINE)
    part = next(b for b in body if b.startswith(section + "]"))
    return set(re.findall(r"^(?:# )?(\w+) = ", part, flags=re.MULTILINE))


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_init_names_every_setting_and_loads(
    side: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / f"{side}.toml"
    assert main(["init", "--side", side, "--output", str(out)]) == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600  # it holds the JWT secret
    text = out.read_text(encoding="utf-8")
    api_fields = set(ApiSettings.model_fields) - {"side"}
    assert _keys(text, "api") == api_fields
    for name in api_fields | set(ReplicatorSettings.model_fields):
        assert name in HELP, f"{name} has no explanation in scsync/config_example.py"
    if side == "cloud":
        assert _keys(text, "lockd") == {key for key, _, _ in LOCKD}
    else:
        assert "\n[lockd]\n" not in text  # sites do not run lockd
    if side == "local":
        # The site's token and database password are placeholders until it is registered:
        # refused (tests/ops/test_placeholders.py), loaded once real values are in.
        settings = load_api(side, out, env={"SCSYNC_API_LOCKD_TOKEN": "a-real-site-token"})
    else:
        settings = load_api(side, out, env={})
    assert settings.side == side and len(settings.jwt_secret) >= 32
    if side == "local":
        assert _keys(text, "replicator") == set(ReplicatorSettings.model_fields)
        assert _keys(text, "files") == {"blobs_url", "token", "store"}
        assert read_config_file(out, "files") == {}  # optional: all commented out
        rep = load_replicator(out, site_token="a-real-site-token")
        assert rep.site_id == 1 and rep.local_db_url.startswith("postgresql://")
        # The cloud relay ("Editing by cloud" at the clinic) is configured.
        assert relay_missing(settings) is None
    else:
        assert "\n[replicator]\n" not in text


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "local.toml"
    out.write_text("keep me\n", encoding="utf-8")
    assert main(["init", "--side", "local", "--output", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == "keep me\n"
    assert main(["init", "--side", "local", "--output", str(out), "--force"]) == 0
    assert "[replicator]" in out.read_text(encoding="utf-8")


def test_init_to_stdout_makes_a_new_secret_each_time(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--side", "cloud"]) == 0
    first = capsys.readouterr().out
    assert main(["init", "--side", "cloud"]) == 0
    second = capsys.readouterr().out
    secret = re.compile(r'^jwt_secret = "(.+)"$', re.MULTILINE)
    a, b = secret.search(first), secret.search(second)
    assert a and b and a.group(1) != b.group(1)
