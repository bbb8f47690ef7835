"""Shared fixtures of the operations tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from scsync.cli import main

# Variables a developer's shell or CI may hold that would change what a command reads.
SETTING_VARS = (
    "SCSYNC_LOCAL_DB_URL",
    "SCSYNC_CLOUD_DB_URL",
    "SCSYNC_CLOUD_API_URL",
    "SCSYNC_SITE_TOKEN",
    "SCSYNC_SITE_ID",
    "SCSYNC_API_PORT",
    "SCSYNC_JWT_SECRET",
)


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[str]], tuple[int, str]]:
    """`scsync <argv>` in this process, without the setting variables: (exit code,
    what it printed on stderr then stdout)."""
    for var in SETTING_VARS:
        monkeypatch.delenv(var, raising=False)

    def call(argv: list[str]) -> tuple[int, str]:
        code = main(argv)
        captured = capsys.readouterr()
        return code, (captured.err + captured.out).strip()

    return call
