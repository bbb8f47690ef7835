"""The status page in a real browser (Debian's headless Chromium driven by Playwright):
badges change when the server pushes an event, without a reload."""

from __future__ import annotations

import json
import os
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright

from schema.auth import Side
from scsync.embedded_pg import free_port
from tests.api.conftest import SECRET, ApiProcess, auth, start_api, token, write_config
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


def test_everyone_signs_in_on_each_page_as_the_demo_says(
    tmp_path: Path,
    local_db: TestDatabase,
    cloud_db: TestDatabase,
    processes: list[ApiProcess],
) -> None:
    """Issue #18, item 5: the demo's sign-in hints work in the browser, on the clinic's
    page and on the cloud's (a clinic user names the clinic there; the vendor does not)."""
    from api.passwords import hash_password
    from replicator.sites import register_site
    from scsync.demo.data import PASSWORDS, VENDOR
    from scsync.demo.world import SiteInfo, World, sign_in_hints

    cloud_db.call(register_site, "clinic-one")
    accounts = [(local_db, 1, u, p, "editor") for u, p in PASSWORDS.items()]
    accounts += [(cloud_db, 1, u, p, "editor") for u, p in PASSWORDS.items()]
    accounts.append((cloud_db, 0, VENDOR[0], VENDOR[1], "vendor_admin"))
    for db, site, user, password, role in accounts:
        with db.connect() as conn:
            conn.execute(
                "INSERT INTO user_accounts (site_id, username, password_hash, role)"
                " VALUES (%s, %s, %s, %s)",
                (site, user, hash_password(password), role),
            )
            conn.commit()
    cloud = start_api("cloud", write_config(tmp_path / "cloud.toml", cloud_db, free_port()))
    processes.append(cloud)
    local = start_api("local", write_config(tmp_path / "local.toml", local_db, free_port()))
    processes.append(local)
    world = World(tmp_path, SECRET, cloud_api=cloud.url)
    world.sites.append(SiteInfo("clinic-one", site_id=1, api_url=local.url))
    hints = sign_in_hints(world)
    assert {h.page for h in hints} == {cloud.url + "/", local.url + "/"}
    assert any(h.clinic == "clinic-one" for h in hints)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for hint in hints:
                page = browser.new_context().new_page()
                page.goto(hint.page)
                site_field = page.locator("#site")
                if hint.page.startswith(cloud.url):
                    expect(site_field).to_be_visible(timeout=5_000)
                    site_field.fill(hint.clinic)
                else:
                    expect(page.locator("#username")).to_be_visible(timeout=5_000)
                    expect(site_field).to_be_hidden()
                page.locator("#username").fill(hint.user)
                page.locator("#password").fill(hint.password)
                page.get_by_role("button", name="Sign in").click()
                who = re.compile(rf"[:/]{re.escape(hint.user)} \(")  # local:1/alice, cloud:bob
                expect(page.locator("#who")).to_have_text(who, timeout=10_000)
                expect(page.locator("#conn")).to_have_text("connected", timeout=10_000)
                page.context.close()
        finally:
            browser.close()
