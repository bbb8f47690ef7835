"""A partition between the site and the cloud while both sides keep writing: after it
heals everything converges, with no manual step."""

from __future__ import annotations

import time

from tests.polling import wait_until
from tests.proxy import TcpProxy
from tests.replicator.conftest import Replicators
from tests.world import World, rows

PARTITION_S = 30.0  # the figure; longer than every timeout of the daemon


def _write(world: World, tag: str, n: int) -> None:
    with world.site1.local.connect(autocommit=True) as c:
        for i in range(n):
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'local')",
                (f"{tag}-L{i}",),
            )
    with world.cloud.connect(autocommit=True) as c:
        for i in range(n):
            c.execute(
                "INSERT INTO patients (site_id, patient_code, name) VALUES (1, %s, 'cloud')",
                (f"{tag}-C{i}",),
            )


def test_partition_heals_without_a_manual_step(world: World, replicators: Replicators) -> None:
    """The TCP proxy stands between the site and the cloud API."""
    with TcpProxy("127.0.0.1", world.api.port) as proxy:
        proc = replicators.start(
            world.site1,
            cloud_api_url=f"http://127.0.0.1:{proxy.port}",
            op_timeout_s=3.0,
        )
        _write(world, "before", 20)
        wait_until(lambda: len(rows(world.site1.local, "patients")) == 40, 20, "first sync")

        proxy.stall()
        started = time.monotonic()
        while time.monotonic() - started < PARTITION_S:
            _write(world, f"during{int(time.monotonic() - started)}", 3)
            time.sleep(1.0)
        assert proc.poll() is None
        proxy.heal()
        _write(world, "after", 5)

        def converged() -> bool:
            local = {r["patient_code"] for r in rows(world.site1.local, "patients").values()}
            cloud = {r["patient_code"] for r in rows(world.cloud, "patients").values()}
            return local == cloud and len(local) > 40

        # Up to one full reconnect backoff (backoff_max_s, 30 s) may pass before the retry.
        wait_until(converged, 75, "convergence after the partition")
        log = replicators.log_of(0)
        assert "retrying in" in log  # the lanes felt the partition ...
        assert "cloud hints" in log  # ... and so did the pull lane's long poll
        local = rows(world.site1.local, "patients")
        cloud = rows(world.cloud, "patients")
        assert {(r["id"], r["revision"]) for r in local.values()} == {
            (r["id"], r["revision"]) for r in cloud.values()
        }


def test_a_silent_link_drop_leaves_no_lane_held_by_a_ghost(
    world: World, replicators: Replicators
) -> None:
    """The link stops forwarding both ways for 20 s with no RST (the cloud side stays
    open, as after a dropped NAT entry). The lane's exclusivity on the cloud is a lease
    renewed by its own requests, not a session: after the heal both lanes converge
    within 60 s, and nothing claims the lanes run elsewhere."""
    with TcpProxy("127.0.0.1", world.api.port) as proxy:
        replicators.start(
            world.site1, cloud_api_url=f"http://127.0.0.1:{proxy.port}", op_timeout_s=3.0
        )
        _write(world, "before", 5)
        wait_until(lambda: len(rows(world.site1.local, "patients")) == 10, 20, "first sync")
        proxy.stall()
        started = time.monotonic()
        while time.monotonic() - started < 20.0:
            _write(world, f"silent{int(time.monotonic() - started)}", 2)
            time.sleep(1.0)
        proxy.heal()
        healed = time.monotonic()

        def converged() -> bool:
            local = {(r["id"], r["revision"]) for r in rows(world.site1.local, "patients").values()}
            cloud = {(r["id"], r["revision"]) for r in rows(world.cloud, "patients").values()}
            return local == cloud and len(local) > 10

        wait_until(converged, 60, "both lanes after the heal")
        assert time.monotonic() - healed < 60
        log = replicators.log_of(0)
        assert "retrying in" in log  # the lanes did notice the silence
        assert "runs elsewhere" not in log and "leased to" not in log and "is run by" not in log
    with world.cloud.connect() as c:
        leases = c.execute("SELECT lane FROM scsync_lane_leases ORDER BY lane").fetchall()
    assert leases == [("pull",), ("push",)]  # held by the one replicator, by its requests
