"""A lease holder as a real process, for the kill/stop tests.

``python -m tests.lockd.holder URL TABLE ROW_ID TTL_S RENEW_EVERY_S``: acquires, prints
the lease as one JSON line, then renews every RENEW_EVERY_S seconds. When a renewal is
refused it tries what a stale holder would (save, then release), prints one JSON line
with the outcome of each, and exits.
"""

from __future__ import annotations

import asyncio
import json
import sys

from lockd.db import make_pool
from lockd.errors import LockdError
from lockd.manager import LeaseManager, LockdConfig


async def main(url: str, table: str, row_id: int, ttl_s: float, every_s: float) -> None:
    async with make_pool(url, min_size=1, max_size=1) as pool:
        manager = LeaseManager(pool, LockdConfig(ttl_s=ttl_s))
        lease = await manager.acquire(table, row_id, "local:1/holder-process")
        print(json.dumps({"lease": lease.to_json()}), flush=True)
        while True:
            await asyncio.sleep(every_s)
            try:
                await manager.renew(lease.lease_id, lease.token)
            except LockdError as exc:
                outcome = {"renew": exc.code}
                break
        try:
            await manager.save(
                lease.lease_id,
                lease.token,
                {"notes": "stale holder"},
                expected_revision=lease.revision,
            )
            outcome["save"] = "accepted"
        except LockdError as exc:
            outcome["save"] = exc.code
        try:
            await manager.release(lease.lease_id, lease.token)
            outcome["release"] = "accepted"
        except LockdError as exc:
            outcome["release"] = exc.code
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    u, t, r, ttl, every = sys.argv[1:6]
    asyncio.run(main(u, t, int(r), float(ttl), float(every)))
