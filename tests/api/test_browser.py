"""The status page in a real browser (Debian's headless Chromium driven by Playwright):
badges change when the server pushes an event, without a reload."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from schema.auth import Side
from scsync.embedded_pg import free_port
from tests.api.conftest import ApiProcess, auth, start_api, token, write_config
from tests.pg import TestDatabase

CHROMIUM = "/usr/bin/chromium"  # Debian's package `chromium`; nothing is downloaded
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _call(url: str, method: str, tok: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers=auth(tok) | {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.mark.parametrize("side", ["local", "cloud"])
def test_status_page_shows_pushed_badge_changes_without_reload(
    tmp_path: Path,
    side: Side,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    processes: list[ApiProcess],
) -> None:
    assert os.path.exists(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    db = local_db if side == "local" else cloud_db
    proc = start_api(side, write_config(tmp_path / "api.toml", db, free_port()))
    processes.append(proc)
    # Not yet crossed: seen from the site, a local row is uploading, a cloud row downloading.
    pending = "Uploading" if side == "local" else "Downloading"
    alice = token("editor", site=1, name="alice", side=side)
    p = _call(
        proc.url + "/v1/records/patients", "POST", alice, {"patient_code": "P", "name": "Kim"}
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{proc.url}/#token={token('viewer', site=1, name='vera', side=side)}")
            badge = page.get_by_test_id(f"badge-patients-{p['id']}")
            expect(badge).to_have_text(pending, timeout=10_000)
            expect(page.locator("#conn")).to_have_text("connected")
            page.evaluate("window.__no_reload_marker = 42")
            # An edit session: locally offline (no lockd configured), in the cloud a lease
            # from the mounted lockd. Either way pushed as Editing by <side>.
            body = {"offline": True} if side == "local" else {}
            session = _call(f"{proc.url}/v1/records/patients/{p['id']}/edit", "POST", alice, body)
            editing = "Editing by local (offline)" if side == "local" else "Editing by cloud"
            expect(badge).to_have_text(editing, timeout=5_000)
            _call(
                proc.url + "/v1/edit-sessions/close", "POST", alice, {"session": session["session"]}
            )
            expect(badge).to_have_text(pending, timeout=5_000)
            # The replicator's bookkeeping marks the row synced: the badge follows.
            with db.connect() as conn:
                conn.execute(
                    "UPDATE patients SET synced_revision = revision WHERE id = %s", (int(p["id"]),)
                )
                conn.commit()
            expect(badge).to_have_text("Synced", timeout=5_000)
            # A record created after the page loaded appears by itself.
            q = _call(
                proc.url + "/v1/records/patients",
                "POST",
                alice,
                {"patient_code": "Q", "name": "Lee"},
            )
            expect(page.get_by_test_id(f"badge-patients-{q['id']}")).to_have_text(
                pending, timeout=5_000
            )
            assert page.evaluate("window.__no_reload_marker") == 42
            page.screenshot(path=str(tmp_path / "status.png"))
        finally:
            browser.close()
