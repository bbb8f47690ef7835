"""The status page in a real browser (Debian's headless Chromium driven by Playwright):
badges change when the server pushes an event, without a reload."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from playwright.sync_api import expect, sync_playwright

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


def test_status_page_shows_pushed_badge_changes_without_reload(
    tmp_path: Path, local_db: TestDatabase, processes: list[ApiProcess]
) -> None:
    assert os.path.exists(CHROMIUM), "install Debian's chromium: apt-get install -y chromium"
    proc = start_api("local", write_config(tmp_path / "local.toml", local_db, free_port()))
    processes.append(proc)
    alice = token("editor", site=1, name="alice")
    p = _call(
        proc.url + "/v1/records/patients", "POST", alice, {"patient_code": "P", "name": "Kim"}
    )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{proc.url}/#token={token('viewer', site=1, name='vera')}")
            badge = page.get_by_test_id(f"badge-patients-{p['id']}")
            expect(badge).to_have_text("Uploading", timeout=10_000)
            expect(page.locator("#conn")).to_have_text("connected")
            page.evaluate("window.__no_reload_marker = 42")
            # An offline edit session (no lockd configured): pushed as Editing by local.
            session = _call(
                f"{proc.url}/v1/records/patients/{p['id']}/edit", "POST", alice, {"offline": True}
            )
            expect(badge).to_have_text("Editing by local (offline)", timeout=5_000)
            _call(
                proc.url + "/v1/edit-sessions/close", "POST", alice, {"session": session["session"]}
            )
            expect(badge).to_have_text("Uploading", timeout=5_000)
            # The replicator's bookkeeping marks the row synced: the badge follows.
            with local_db.connect() as conn:
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
                "Uploading", timeout=5_000
            )
            assert page.evaluate("window.__no_reload_marker") == 42
            page.screenshot(path=str(tmp_path / "status.png"))
        finally:
            browser.close()
