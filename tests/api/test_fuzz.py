"""schemathesis against /openapi.json of both apps (real processes): no 5xx, and every
response conforms to the document (status code, content type, body schema). The
stateful phase follows the document's links (create -> get/update/delete/history/sync/
edit of the new record), so records that exist are exercised too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schema.auth import Side, site_token
from scsync.embedded_pg import free_port
from tests.api.conftest import SECRET, ApiProcess, start_api, token, write_config
from tests.pg import TestDatabase

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_schemathesis_finds_no_server_error_or_schema_violation(
    tmp_path: Path,
    side: Side,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    processes: list[ApiProcess],
) -> None:
    cloud = start_api("cloud", write_config(tmp_path / "cloud.toml", cloud_db, free_port()))
    processes.append(cloud)
    proc = cloud
    if side == "local":
        # With its lock service reachable: an unreachable one is a 503 by design.
        cfg = write_config(
            tmp_path / "local.toml",
            local_db,
            free_port(),
            lockd_url=cloud.url + "/v1/locks",
            lockd_token=site_token(SECRET, 1),
        )
        proc = start_api("local", cfg)
        processes.append(proc)
    st = Path(sys.executable).with_name("st")
    result = subprocess.run(
        [
            str(st),
            "run",
            proc.url + "/openapi.json",
            "--header",
            f"Authorization: Bearer {token('admin', site=1, name='fuzz', side=side)}",
            "--checks",
            CHECKS,
            "--max-examples",
            os.environ.get("SCSYNC_FUZZ_EXAMPLES", "5"),
            "--phases",
            # The coverage phase (boundary values of every field) passes too but takes
            # minutes on the shared machine: SCSYNC_FUZZ_PHASES=examples,coverage,fuzzing.
            os.environ.get("SCSYNC_FUZZ_PHASES", "examples,fuzzing,stateful"),
            "--seed",
            "1",
            "--no-shrink",
            "--generation-database",
            "none",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    print(result.stdout[-3000:])  # the summary, shown with -s
    # What failed comes before the long summary of warnings: shown first.
    errors_at = result.stdout.find("= ERRORS =")
    failures_at = result.stdout.find("= FAILURES =")
    starts = [i for i in (errors_at, failures_at) if i >= 0]
    detail = result.stdout[min(starts) : min(starts) + 6000] if starts else ""
    assert result.returncode == 0, detail + result.stdout[-3000:] + result.stderr[-2000:]
