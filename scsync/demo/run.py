"""Running the demo (``scsync demo``): build the world, run the scenario, print the
summary; then, unless ``--once``, keep serving and print the status pages with working
sign-ins until Ctrl-C or SIGTERM, which stop every process."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from scsync.demo.client import HttpError
from scsync.demo.narration import Narrator
from scsync.demo.processes import DemoError, Supervisor
from scsync.demo.scenario import check_backfill, check_sign_ins, run_backfill, scenario
from scsync.demo.world import DemoOptions, World, build, sign_in_hints, site_config


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a demo started in the background of a script inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_demo(opts: DemoOptions) -> int:
    """Build the world, run the scenario; 0 when every check passed."""
    workdir = opts.workdir or Path(tempfile.mkdtemp(prefix="scsync-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    w = World(workdir=workdir, secret=secrets.token_urlsafe(36))
    sup = Supervisor(workdir / "logs")
    n = Narrator()
    started = time.monotonic()
    print(f"scsync demo: working directory {workdir} (service logs in {workdir / 'logs'})")
    if opts.once:
        print(f"--once: a {opts.volume_mb} MiB volume instead of tens of MB, to stay fast")
    try:
        with _sigterm_as_interrupt():
            try:
                build(sup, w, opts, n)
                run_backfill(sup, w, n)
                check_backfill(w, n)
                check_sign_ins(w, n)
                scenario(sup, w, n)
            except (DemoError, HttpError, OSError) as exc:
                n.check(False, f"the demo could not go on: {exc}")
            print(
                f"\n{n.passed} checks passed, {len(n.failures)} failed "
                f"({time.monotonic() - started:.0f} s)"
            )
            for f in n.failures:
                print(f"   FAILED: {f}")
            if opts.once:
                return 0 if not n.failures else 1
            serve(sup, w)
            return 0 if not n.failures else 1
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 130 if not opts.once else 1
    finally:
        sup.stop_all()
        if w.s3 is not None:
            with contextlib.suppress(Exception):
                w.s3.stop()
        if opts.workdir is None and not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def serve(sup: Supervisor, w: World) -> None:
    print("\nserving — open the status pages:")
    print(f"   cloud            {w.cloud_api}/   (metrics {w.cloud_api}/metrics)")
    for site in w.sites:
        print(
            f"   {site.name:16} {site.api_url}/   (metrics {site.api_url}/metrics,"
            f" replicator http://127.0.0.1:{site.metrics_port}/metrics)"
        )
    print(f"   metrics: Prometheus' bearer token (metrics_token) is {w.metrics_token}")
    print("   sign in (page: clinic field, user / password):")
    for hint in sign_in_hints(w):
        clinic = f"clinic {hint.clinic!r}" if hint.clinic else "no clinic"
        if hint.page.startswith(w.cloud_api) and not hint.clinic:
            clinic = "clinic left empty (vendor account)"
        print(f"     {hint.page:28} {clinic:38} {hint.user} / {hint.password}")
    print(f"   try: scsync status --config {site_config(w, w.sites[0])}")
    print(f"        scsync status --side cloud --url {w.cloud_admin_url}")
    print("Ctrl-C stops every process.", flush=True)
    while True:
        time.sleep(1)
        dead = [name for name in sup.order if sup.procs[name].popen.poll() not in (None, 0)]
        for name in dead:
            if not name.endswith("-backfill"):
                print(
                    f"{name} exited ({sup.procs[name].popen.returncode}); log:\n"
                    f"{sup.procs[name].tail()}"
                )
                sup.order.remove(name)
