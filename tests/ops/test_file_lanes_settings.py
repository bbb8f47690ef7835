"""The replicator's file settings (scsync/commands/file_lanes.py), read once for
`scsync replicator run` and `scsync files run`: where each value comes from and when the
file lanes are off. The error messages are covered in test_config_errors.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from schema.errors import ConfigError
from scsync.commands.file_lanes import read_file_settings

FILES_TABLE = (
    '[replicator]\nsite_id = 1\n[files]\nblobs_url = "http://file/v1/blobs"\n'
    'token = "file-token"\nstore = "/srv/file-store"\n'
)
ENV = {
    "SCSYNC_BLOBS_URL": "http://env/v1/blobs",
    "SCSYNC_SITE_TOKEN": "env-token",
    "SCSYNC_FILE_STORE": "/srv/env-store",
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "local.toml"
    path.write_text(FILES_TABLE, encoding="utf-8")
    return path


def test_none_given_means_file_lanes_off(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    path.write_text("[replicator]\nsite_id = 1\n", encoding="utf-8")
    assert read_file_settings(path, env={}) is None
    assert read_file_settings(None, env={}) is None
    # Empty values count as not given, as in a unit's env file with `SCSYNC_BLOBS_URL=`.
    assert read_file_settings(path, env=dict.fromkeys(ENV, "")) is None


def test_the_files_table_alone_turns_them_on_with_defaults(config: Path) -> None:
    files = read_file_settings(config, env={})
    assert files is not None
    assert (files.blobs_url, files.token, files.store_root) == (
        "http://file/v1/blobs",
        "file-token",
        Path("/srv/file-store"),
    )
    assert (files.poll_s, files.concurrency) == (1.0, 4)


def test_flag_beats_env_beats_file_per_key(config: Path) -> None:
    env = {"SCSYNC_SITE_TOKEN": "env-token", "SCSYNC_FILE_STORE": "/srv/env-store"}
    files = read_file_settings(config, store="/srv/flag-store", poll_s=0.25, concurrency=2, env=env)
    assert files is not None
    assert (files.blobs_url, files.token, files.store_root) == (
        "http://file/v1/blobs",
        "env-token",
        Path("/srv/flag-store"),
    )
    assert (files.poll_s, files.concurrency) == (0.25, 2)


def test_environment_alone_without_a_config_file() -> None:
    files = read_file_settings(None, env=ENV)
    assert files is not None and files.token == "env-token"


def test_required_without_any_is_an_error() -> None:
    with pytest.raises(ConfigError, match="need blobs_url, token and store: missing blobs_url"):
        read_file_settings(None, env={}, required=True)


@pytest.mark.parametrize(
    ("poll_s", "concurrency", "expected"), [(0.0, None, "--poll-s"), (None, 0, "--concurrency")]
)
def test_tuning_values_are_checked(
    poll_s: float | None, concurrency: int | None, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        read_file_settings(None, poll_s=poll_s, concurrency=concurrency, env=ENV)


def test_the_sites_token_alone_is_no_file_setting_and_serves_the_files() -> None:
    """SCSYNC_SITE_TOKEN is the replicator's site_token: set alone (a site configured by
    environment) it leaves the file lanes off instead of making a partial [files]; with
    the file settings given, the file lanes use it (or site_token of [replicator])."""
    assert read_file_settings(None, env={"SCSYNC_SITE_TOKEN": "site-token"}) is None
    assert read_file_settings(None, env={}, site_token="site-token") is None
    files = read_file_settings(
        None, env={"SCSYNC_BLOBS_URL": "http://env/v1/blobs"}, store="/s", site_token="own"
    )
    assert files is not None and files.token == "own"
    files = read_file_settings(None, env=ENV, site_token="own")
    assert files is not None and files.token == "env-token"  # the variable wins, as before
