"""The cloud end of the backfill and of the per-record commands (``scsync sync``,
``scsync restore``, ``scsync policy set``'s old data): the cloud API's site endpoints
(api/sync_files.py on the sync app) over HTTPS with the site's token, through the
replicator's :class:`~replicator.cloud_client.CloudClient`. The site holds no login on
the cloud database; the cloud takes the site from the token.

The replicator's errors map here, once, to the file area's: unreachable, 5xx and
timeouts are :class:`CloudUnavailable`; anything refused (the token, the tenant wall,
a malformed request) is :class:`CloudRefused` with the API's message.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from replicator.cloud_client import CloudClient, default_holder
from replicator.errors import ReplicatorError, Unavailable
from replicator.files.errors import CloudRefused, CloudUnavailable
from replicator.settings import Settings

Record = tuple[str, int]


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except Unavailable as exc:
        raise CloudUnavailable(str(exc)) from exc
    except ReplicatorError as exc:
        raise CloudRefused(str(exc)) from exc


class FilesCloud:
    """One HTTP session (keep-alive, shared by the backfill's batches in flight)."""

    def __init__(self, settings: Settings) -> None:
        self.client = CloudClient(settings)
        # Names the caller in the API's logs; these endpoints take no lane lease.
        self.holder = f"files/{default_holder(settings)}"

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> FilesCloud:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _json(self, path: str, body: Any) -> Any:
        with _mapped():
            async with self.client.post(path, self.holder, body=body) as resp:
                return await resp.json()

    async def apply(
        self, table: str, columns: Sequence[str], rows: AsyncIterator[bytes]
    ) -> list[tuple[int, int]]:
        """Stream a batch (binary COPY rows of `columns`) to the cloud, which applies it
        in one transaction; the (id, revision) of the rows it holds as sent."""
        path = "backfill/apply?" + urlencode({"table": table, "columns": ",".join(columns)})
        with _mapped():
            async with self.client.post(path, self.holder, data=rows) as resp:
                got = await resp.json()
        return [(int(i), int(rev)) for i, rev in got["accepted"]]

    async def has(self, shas: Sequence[str]) -> set[str]:
        """Which of these blobs the cloud has verified for this site."""
        got = await self._json("backfill/has", {"shas": list(shas)})
        return {str(s) for s in got["uploaded"]}

    async def switch(self, table: str, row_id: int, enabled: bool) -> bool:
        """Mark the cloud copy of one record active/deleted; False: the cloud has none."""
        got = await self._json("records/switch", {"table": table, "id": row_id, "enabled": enabled})
        return bool(got["found"])

    async def restore(self, table: str, row_id: int) -> bool:
        """A backed-up cloud copy made active again; False: none backed up."""
        got = await self._json("records/restore", {"table": table, "id": row_id})
        return bool(got["restored"])

    async def set_lifecycle(self, records: Sequence[Record], lifecycle: str) -> list[Record]:
        """Active copies of these records marked `lifecycle`; those that changed."""
        got = await self._json(
            "records/lifecycle",
            {"lifecycle": lifecycle, "records": [{"t": t, "id": i} for t, i in records]},
        )
        return [(str(r["t"]), int(r["id"])) for r in got["changed"]]

    async def blob_remote(self, records: Sequence[Record]) -> None:
        """These copies hold metadata only (their blob was deleted)."""
        await self._json(
            "records/blob-remote", {"records": [{"t": t, "id": i} for t, i in records]}
        )
