"""The sub-application mounted in a host app with a shared pool (how the cloud API uses
it), the client's heartbeat helper, and the `scsync lockd` admin commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lockd.client import LockClient, heartbeat
from lockd.db import Pool
from lockd.errors import LeaseNotHeld
from lockd.manager import LockdConfig
from lockd.web import make_app
from schema.auth import issue_token, site_token
from scsync.cli import main as cli_main
from tests.lockd.conftest import Records, age_leases, lease_rows
from tests.lockd.procs import SECRET

pytestmark = pytest.mark.dblevel


@pytest.fixture
async def mounted(pool: Pool) -> AsyncIterator[str]:
    root = web.Application()

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"host": "api"})

    root.router.add_get("/v1/hello", hello)
    root.add_subapp(
        "/v1/locks",
        make_app(
            jwt_secret=SECRET,
            pool=pool,
            config=LockdConfig(ttl_s=0.6, sweep_interval_s=0.1),
            run_sweeper=True,
        ),
    )
    server = TestServer(root)
    await server.start_server()
    try:
        yield str(server.make_url("/v1/locks"))
    finally:
        await server.close()
    assert not pool.closed  # the host's pool stays the host's


async def test_mounted_app_shares_the_host_pool(mounted: str, records: Records) -> None:
    rid = records.site1[0]
    user = issue_token(
        SECRET, side="cloud", subject="user:dora", kind="user", role="editor", site_id=1
    )
    async with LockClient(mounted, user) as client:
        lease = await client.acquire("patients", rid, "ignored")
        assert lease.holder == "cloud:1/dora"
        state = await client.get("patients", rid)
        assert state.editing_by == "cloud"
        # The sweeper of the mounted app expires the lease without anyone asking, once
        # the database's clock is past its TTL (moved there, not slept).
        age_leases(records.db, 0.6)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while lease_rows(records.db):
            assert loop.time() < deadline, "the sweeper never expired the lease"
            await asyncio.sleep(0.02)
        with pytest.raises(LeaseNotHeld):
            await client.renew(lease.lease_id, lease.token)


async def test_heartbeat_keeps_a_lease_and_stops_when_asked(mounted: str, records: Records) -> None:
    rid = records.site1[0]
    async with LockClient(mounted, site_token(SECRET, 1)) as client:
        lease = await client.acquire("patients", rid, "local:1/alice")
        stop = asyncio.Event()
        beat = asyncio.create_task(heartbeat(client, lease, every_s=0.15, stop=stop))
        await asyncio.sleep(1.5)  # well past the 0.6 s TTL
        assert (await client.get("patients", rid)).status == "held"
        stop.set()
        await asyncio.wait_for(beat, 2)
        await client.release(lease.lease_id, lease.token)


def test_cli_get_break_sweep(records: Records, capsys: pytest.CaptureFixture[str]) -> None:
    rid = records.site1[0]
    url = records.db.url
    assert (
        cli_main(["lockd", "get", "--db-url", url, "--table", "patients", "--row-id", str(rid)])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["status"] == "free"
    with records.db.connect(autocommit=True) as conn:
        conn.execute(
            "SELECT scsync_lockd_acquire('patients', %s, NULL, 'cloud:1/x', 60000)", (rid,)
        )
    assert (
        cli_main(
            [
                "lockd",
                "break",
                "--db-url",
                url,
                "--table",
                "patients",
                "--row-id",
                str(rid),
                "--by",
                "cloud:1/admin",
                "--reason",
                "cli",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["holder"] == "cloud:1/x"
    assert (
        cli_main(
            [
                "lockd",
                "break",
                "--db-url",
                url,
                "--table",
                "patients",
                "--row-id",
                str(rid),
                "--by",
                "cloud:1/admin",
            ]
        )
        == 1
    )
    assert "no lease" in capsys.readouterr().err
    assert cli_main(["lockd", "sweep", "--db-url", url]) == 0
    assert json.loads(capsys.readouterr().out)["expired"] == 0


def test_lockd_process_stops_cleanly_on_sigterm(records: Records) -> None:
    import signal

    from tests.lockd.procs import lockd_process

    with lockd_process(records.db.url) as server:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
