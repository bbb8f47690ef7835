"""The demo's scenario, step by step, each checked through the public interfaces: the
first-connection backfill, every sign-in, local and cloud edits under leases, the lock
server unreachable (offline edit, conflict, resolve), sync turned off for a record, and
``scsync status``."""

from __future__ import annotations

import contextlib
import json
import sys
import time
import urllib.request
from typing import Any

from schema.events import EventType
from scsync.demo.client import (
    Editor,
    EventWatcher,
    HttpError,
    LockUnreachable,
    count_records,
    get_record,
    http,
    sign_in,
    sign_in_as,
    wait_until,
)
from scsync.demo.data import MiB
from scsync.demo.narration import Narrator, progress_bar
from scsync.demo.processes import Supervisor, run_cli, scsync_argv
from scsync.demo.world import World, sign_in_hints, site_config, start_replicator, start_site_lockd

TABLE = "patients"
PASSWORDS = {"alice": "alice-demo-password", "bob": "bob-demo-password"}
# The vendor's own account on the cloud (site 0, role vendor_admin): every clinic.


def run_backfill(sup: Supervisor, w: World, n: Narrator) -> None:
    n.step("First connection: backfill of everything that never crossed (newest first)")
    n.say("$ scsync backfill start   (per site; the live lanes keep running beside it)")
    for site in w.sites:
        sup.start(
            f"{site.name}-backfill",
            scsync_argv(
                "backfill",
                "start",
                "--no-progress",
                "--log-progress",
                # The site's config: the cloud API and the site's token, as the
                # replicator reaches the cloud (no cloud database URL on a site).
                "--config",
                str(site_config(w, site)),
                "--local-url",
                site.admin_url,
                "--blobs-url",
                w.blobs_url,
                "--token",
                site.site_token,
                "--batch-rows",
                "40",
                "--file-batch-rows",
                "4",
            ),
            # An operator's shell may export it for the cloud's commands; a site
            # command refuses it.
            env={"SCSYNC_CLOUD_DB_URL": ""},
        )
    first = w.sites[0]
    proc = sup.procs[f"{first.name}-backfill"]
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 600
    tty = sys.stdout.isatty()
    while proc.popen.poll() is None and time.monotonic() < deadline:
        for line in proc.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    last = json.loads(line)
        if last:
            bar = progress_bar(
                int(last.get("rows_done", 0)),
                int(last.get("rows_total", 0)),
                extra=f"rows {last.get('rows_done')}/{last.get('rows_total')}  "
                f"{last.get('bytes_done', 0) / MiB:.1f}/{last.get('bytes_total', 0) / MiB:.1f} MiB"
                f"  {last.get('table') or ''}",
            )
            print(("\r   " if tty else "   ") + bar, end="" if tty else "\n", flush=True)
        time.sleep(0.3 if tty else 1.0)
    for line in proc.log_text().splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                last = json.loads(line)
    if tty:
        print()
    print(
        "   "
        + progress_bar(
            int(last.get("rows_done", 0)),
            int(last.get("rows_total", 0)),
            extra=f"rows {last.get('rows_done')}/{last.get('rows_total')} {last.get('state')}",
        ),
        flush=True,
    )
    for site in w.sites:
        p = sup.procs[f"{site.name}-backfill"]
        rc = p.popen.wait(max(1.0, deadline - time.monotonic()))
        n.check(
            rc == 0,
            f"{site.name}: backfill finished (exit {rc})" + ("" if rc == 0 else f":\n{p.tail()}"),
        )


def check_backfill(w: World, n: Narrator) -> None:
    site = w.sites[0]
    s = site.seeded
    assert s is not None
    ok = wait_until(lambda: bool(sign_in(w.cloud_api, "bob", site.site_id)), 45, 0.5)
    n.check(ok, "the clinic's accounts arrived: bob signs in to the cloud API")
    if not ok:
        return
    token = sign_in(w.cloud_api, "bob", site.site_id)
    got = count_records(w.cloud_api, token, "patients")
    n.check(
        got == len(s.patients), f"cloud API lists {got}/{len(s.patients)} patients of {site.name}"
    )
    got = count_records(w.cloud_api, token, "images")
    n.check(got == len(s.images), f"cloud API lists {got}/{len(s.images)} images")
    vol = get_record(w.cloud_api, token, "images", s.volume_id)
    n.check(
        vol.get("blob_sha256") == s.volume_sha and vol.get("blob_state") == "uploaded",
        f"the CBCT volume ({s.volume_size / MiB:.1f} MiB) is in S3, sha256 verified by the cloud "
        f"(blob_state={vol.get('blob_state')})",
    )
    other = w.sites[1]
    token2 = sign_in(w.cloud_api, "bob", other.site_id)
    theirs = count_records(w.cloud_api, token2, "patients")
    assert other.seeded is not None
    n.check(
        theirs == len(other.seeded.patients),
        f"{other.name}'s bob sees only his clinic's {theirs} patients (tenant wall)",
    )


def check_sign_ins(w: World, n: Narrator) -> None:
    n.step("Everyone signs in as the demo's hint says (every status page)")
    failed = []
    for hint in sign_in_hints(w):
        try:
            sign_in_as(hint)
        except HttpError as exc:
            failed.append(f"{hint.user}@{hint.clinic or '-'} on {hint.page}: HTTP {exc.status}")
    n.check(
        not failed,
        f"{len(sign_in_hints(w))} sign-ins: clinic pages, the cloud page by clinic name, the"
        " vendor account" + (f"; failed: {failed}" if failed else ""),
    )


def scenario(sup: Supervisor, w: World, n: Narrator) -> None:
    site = w.sites[0]
    s = site.seeded
    assert s is not None
    alice = Editor(site.api_url, "alice")
    bob = Editor(w.cloud_api, "bob", site.site_id)
    watcher = EventWatcher(w.cloud_api, bob.token, site.site_id)
    watcher.start()
    clinic_watcher = EventWatcher(site.api_url, alice.token, site.site_id)
    clinic_watcher.start()
    rid = s.patients[0]
    try:
        n.step("A local edit is shown as 'Editing by local' in the cloud")
        t0 = time.monotonic()
        session = alice.open(TABLE, rid)
        n.say(
            f"alice opens patient {rid} for edit at {site.name} "
            f"(fencing token {session.get('fencing_token')})"
        )
        ev = watcher.find(
            lambda e: e["type"] == EventType.RECORD_EDITING and e.get("record_id") == str(rid), 1.5
        )
        if ev is not None:
            n.check(
                "local" in json.dumps(ev.get("data")),
                f"cloud WebSocket: record.editing by local after {time.monotonic() - t0:.2f} s",
            )
        else:
            state = http("GET", f"{w.cloud_lockd}/leases/{TABLE}/{rid}", token=bob.token)
            n.say("(the cloud WebSocket sends no record.editing yet: asked the cloud's lockd)")
            n.check(
                state.get("editing_by") == "local",
                f"cloud: patient {rid} is 'Editing by {state.get('editing_by')}' "
                f"(holder {state.get('holder')})",
            )

        figures = json.loads(
            run_cli(
                "status",
                "--config",
                str(site_config(w, site)),
                "--cloud-url",
                w.cloud_admin_url,
                "--json",
            )
        )
        n.check(
            figures["leases"].get("by_local") == 1,
            f"scsync status: leases live {figures['leases'].get('live')}, "
            f"editing by local {figures['leases'].get('by_local')}",
        )

        n.step("An edit is refused while the record is locked")
        try:
            bob.open(TABLE, rid)
            n.check(False, "bob's edit in the cloud was refused")
        except HttpError as exc:
            n.check(
                exc.status == 409 and exc.body.get("error") == "lease_busy",
                f"bob's edit in the cloud: HTTP {exc.status} {exc.body.get('error')}, "
                f"held by {exc.body.get('holder')}",
            )
        saved = alice.save(session, {"phone": "010-1111-2222"})
        t0 = time.monotonic()
        alice.close(session)
        n.say(f"alice saves (version {saved.get('version')}) and closes the editor")
        ok = wait_until(
            lambda: get_record(w.cloud_api, bob.token, TABLE, rid).get("phone") == "010-1111-2222",
            45,
        )
        n.check(ok, f"the local save reached the cloud in {time.monotonic() - t0:.1f} s")

        n.step("A cloud edit flows down to the clinic, shown there as 'Editing by cloud'")
        t0 = time.monotonic()
        session = bob.open(TABLE, rid)
        n.say(f"bob opens patient {rid} for edit in the cloud")
        ev = clinic_watcher.find(
            lambda e: (
                e["type"] == EventType.RECORD_EDITING
                and e.get("record_id") == str(rid)
                and (e.get("data") or {}).get("by") == "cloud"
            ),
            3.0,
        )
        n.check(
            ev is not None,
            f"clinic WebSocket (alice's): record.editing by cloud after "
            f"{time.monotonic() - t0:.2f} s",
        )
        try:
            res = bob.save(session, {"notes": "allergic to penicillin (entered in the cloud)"})
        finally:
            bob.close(session)
        t0 = time.monotonic()
        n.say(f"bob saves in the cloud: version {res.get('version')}")
        ok = wait_until(
            lambda: "penicillin" in str(get_record(site.api_url, alice.token, TABLE, rid)["notes"]),
            45,
        )
        n.check(ok, f"the local API shows bob's note after {time.monotonic() - t0:.1f} s")
        if watcher.find(lambda e: e.get("record_id") == str(rid), 0.1):
            n.say(
                f"cloud WebSocket events for the record: "
                f"{sorted({e['type'] for e in watcher.events if e.get('record_id') == str(rid)})}"
            )

        outage(sup, w, n, alice, bob, watcher)
        sync_off(w, n, alice, bob)
        status_step(w, n)
    finally:
        watcher.stop()
        clinic_watcher.stop()


def outage(
    sup: Supervisor,
    w: World,
    n: Narrator,
    alice: Editor,
    bob: Editor,
    watcher: EventWatcher,
) -> None:
    site = w.sites[0]
    assert site.seeded is not None
    rid = site.seeded.patients[1]
    n.step("The lock server is unreachable: offline edit offered, taken, conflict, resolved")
    sup.stop("lockd")
    sup.stop(f"{site.name}-replicator")
    n.say(f"{site.name}'s link to the cloud is down (lockd and the replicator stopped)")
    bob.edit(TABLE, rid, {"phone": "010-3333-4444"})
    n.say(f"meanwhile bob edits patient {rid} in the cloud (phone 010-3333-4444)")
    try:
        alice.open(TABLE, rid)
        n.check(False, "alice's edit reports the lock service unreachable")
        return
    except LockUnreachable as exc:
        n.check(
            exc.body.get("offline_edit_allowed") is True,
            f"alice's edit: HTTP 503 {exc.body.get('error')}, "
            f"offline_edit_allowed={exc.body.get('offline_edit_allowed')} — edit offline? [yes]",
        )
    session = alice.open(TABLE, rid, offline=True)
    saved = alice.save(session, {"phone": "010-5555-6666"})
    alice.close(session)
    row = get_record(site.api_url, alice.token, TABLE, rid)
    n.check(
        session.get("unfenced") is True
        and saved.get("offline") is True
        and row.get("phone") == "010-5555-6666",
        f"alice's offline (unfenced) session saved version {saved.get('version')} locally",
    )
    start_site_lockd(sup, w)
    start_replicator(sup, w, site)
    n.say("the link is back: lockd and the replicator run again")
    conflicts: list[dict[str, Any]] = []

    def has_conflict() -> bool:
        # Both lanes may meet the clash at once and record it under an id each; the
        # lower id then stays on both sides (docs/replicator.md): a conflict is settled
        # once both APIs list it under the same id.
        def listed(api: str, token: str) -> set[str]:
            items = http("GET", api + "/v1/conflicts", token=token)["items"]
            return {str(c["id"]) for c in items if str(c.get("record_id")) == str(rid)}

        both = listed(w.cloud_api, bob.token) & listed(site.api_url, alice.token)
        conflicts[:] = [{"id": i} for i in sorted(both)]
        return bool(conflicts)

    ok = wait_until(has_conflict, 60, 0.3)
    n.check(ok, f"the cloud API shows the conflict on patient {rid}: both versions kept")
    if not ok:
        return
    cid = conflicts[0]["id"]
    detail = http("GET", f"{w.cloud_api}/v1/conflicts/{cid}", token=bob.token)
    n.say(
        f"conflict {cid}: local phone {_phone(detail, 'local')} / cloud phone "
        f"{_phone(detail, 'cloud')}"
    )
    n.say(f"$ scsync conflicts resolve {cid} --keep local --side cloud --by it-admin")
    out = run_cli(
        "conflicts",
        "resolve",
        str(cid),
        "--keep",
        "local",
        "--side",
        "cloud",
        "--url",
        w.cloud_admin_url,
        "--by",
        "it-admin",
    )
    n.say(out.strip())

    def converged() -> bool:
        c = get_record(w.cloud_api, bob.token, TABLE, rid)
        loc = get_record(site.api_url, alice.token, TABLE, rid)
        return (
            c["phone"] == loc["phone"] == "010-5555-6666"
            and not c.get("in_conflict")
            and not loc.get("in_conflict")
        )

    n.check(wait_until(converged, 60, 0.3), "resolved: both sides hold alice's version")


def _phone(detail: dict[str, Any], side: str) -> Any:
    row = detail.get(f"{side}_row") or {}
    return row.get("phone") if isinstance(row, dict) else None


def status_step(w: World, n: Narrator) -> None:
    site = w.sites[0]
    cfg = str(site_config(w, site))
    n.step("What the operator sees: scsync status")
    n.say(f"$ scsync status --config {cfg} --cloud-url <operator URL>")
    text = run_cli("status", "--config", cfg, "--cloud-url", w.cloud_admin_url)
    print("\n".join("     " + line for line in text.rstrip().splitlines()))
    f = json.loads(run_cli("status", "--config", cfg, "--cloud-url", w.cloud_admin_url, "--json"))
    lanes, bf = f["lanes"], f["backfill"]
    n.check(
        all(lanes[x]["rows_moved"] > 0 and lanes[x]["last_applied_at"] for x in ("push", "pull"))
        and all(isinstance(lanes[x]["lag_s"], float) for x in ("push", "pull")),
        f"lanes: push moved {lanes['push']['rows_moved']} rows, pull {lanes['pull']['rows_moved']}",
    )
    n.check(
        bf["state"] == "done" and bf["rows_done"] == bf["rows_total"] > 0,
        f"backfill {bf['state']}: {bf['rows_done']}/{bf['rows_total']} rows",
    )
    n.check(
        all(
            isinstance(f[k][side], int)
            for k in ("outbox_depth", "parked", "conflicts_open")
            for side in ("local", "cloud")
        )
        and isinstance(f["leases"].get("live"), int),
        f"outbox depth {f['outbox_depth']}, parked {f['parked']}, conflicts "
        f"{f['conflicts_open']}, leases {f['leases']['live']}",
    )
    scrape = {"Authorization": f"Bearer {w.metrics_token}"}
    figures = {
        "cloud API": (w.cloud_api + "/metrics", "scsync_websocket_clients", scrape),
        f"{site.name} API": (site.api_url + "/metrics", "scsync_outbox_depth", scrape),
        # The replicator's exporter listens on the loopback only, with no token.
        f"{site.name} replicator": (
            f"http://127.0.0.1:{site.metrics_port}/metrics",
            "scsync_replication_rows_total",
            {},
        ),
    }
    for what, (url, name, headers) in figures.items():
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as resp:
                text = resp.read().decode()
        except OSError as exc:
            text = str(exc)
        n.check(name in text, f"{what} serves Prometheus {url} ({name} …)")
    n.say(f"$ scsync status --side cloud --url {w.cloud_admin_url}")
    text = run_cli("status", "--side", "cloud", "--url", w.cloud_admin_url)
    print("\n".join("     " + line for line in text.rstrip().splitlines()))
    n.check(all(s.name in text for s in w.sites), "the cloud view lists both sites")


def sync_off(w: World, n: Narrator, alice: Editor, bob: Editor) -> None:
    site = w.sites[0]
    assert site.seeded is not None
    rid = site.seeded.patients[2]
    n.step("Sync turned off for one record: the cloud copy is deleted")
    http("PUT", f"{site.api_url}/v1/records/{TABLE}/{rid}/sync", {"enabled": False}, alice.token)
    n.say(f"alice turns sync off for patient {rid} at {site.name}")

    def gone() -> bool:
        try:
            row = get_record(w.cloud_api, bob.token, TABLE, rid)
        except HttpError as exc:
            return exc.status == 404
        return row.get("lifecycle") == "deleted" or bool(row.get("deleted"))

    n.check(wait_until(gone, 45, 0.3), "the cloud copy is marked deleted (the local one stays)")
    local = get_record(site.api_url, alice.token, TABLE, rid)
    n.check(local.get("sync_enabled") is False, "locally the record stays, sync off")
