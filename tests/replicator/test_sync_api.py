"""The sync endpoints' own behaviour, apart from the walls (test_sync_walls.py)."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.polling import until_async
from tests.world import World


async def test_a_held_long_poll_answers_when_the_api_shuts_down(world: World) -> None:
    """A stopping API answers a held pull/wait with ``changed`` (its listener stops, so
    a later change would go unheard): the replicator reads at once and polls again,
    rather than taking the cut-off poll for "nothing changed". And it stops promptly."""
    headers = {"Authorization": f"Bearer {world.site1.token}", "X-Scsync-Holder": "host/1"}
    async with aiohttp.ClientSession() as http:

        async def wait() -> tuple[int, dict[str, object]]:
            async with http.post(
                f"{world.api.url}/v1/sync/pull/wait", json={"timeout_s": 25}, headers=headers
            ) as resp:
                return resp.status, await resp.json()

        async def hints_live() -> bool:
            return world.api.hints_live()

        # The listener's first connect answers every poll held before it: after it.
        await until_async(hints_live, 15, "the API's change hints")
        held = asyncio.create_task(wait())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not world.api.long_poll_held(world.site1.creds.site_id) and not held.done():
            assert loop.time() < deadline, "the long poll was never held"
            await asyncio.sleep(0.01)
        assert not held.done(), "the long poll answered before any change or the shutdown"
        t0 = time.monotonic()
        await asyncio.to_thread(world.api.stop)
        stopped_s = time.monotonic() - t0
        status, body = await asyncio.wait_for(held, 5)
    assert status == 200 and body["changed"] is True, body
    assert stopped_s < 5, f"the API took {stopped_s:.1f} s to stop with a long poll held"
