"""The unit files in deploy/systemd pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).resolve().parent.parent / "deploy" / "systemd").glob("*.service"))
INSTALLED = "/usr/local/bin/scsync"


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: install Debian's systemd package (make test does)")
    return found


def test_there_are_units() -> None:
    names = {u.name for u in UNITS}
    assert {"scsync-api-local.service", "scsync-api-cloud.service"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists. The units name the installed
    # path (/usr/local/bin/scsync, see docs/operations.md); on a machine without that
    # install, verify the same unit with the path of this checkout's installed command.
    text = unit.read_text()
    if not Path(INSTALLED).exists():
        scsync = Path(sys.executable).with_name("scsync")
        assert scsync.exists(), "the project is not installed in this venv"
        text = text.replace(INSTALLED, str(scsync))
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run(
        [_systemd_analyze(), "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0, output
    assert output == "", output  # warnings (unknown keys, bad values) count as failures
    assert "Type=notify" in text and "WatchdogSec=" in text and "Restart=" in text
