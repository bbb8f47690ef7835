"""On-demand lane: blobs a cloud client asked for, uploaded ahead of the backfill.

A cloud client that opens a record whose blob is ``remote`` calls
``POST /v1/blobs/sites/<site>/blobs/<sha256>/request``; the cloud records the request
and publishes ``blob.requested``. The site's replicator lists open requests
(``GET /v1/blobs/sites/<site>/requests``), finds the file in its store and uploads it;
the cloud's ``complete`` marks the blob uploaded, the rows ``uploaded``, the requests
served, and publishes ``record.sync``. Scope does not apply: asking is consent.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psycopg.rows import namedtuple_row

from replicator.files.errors import BlobMissing, FilesError
from replicator.files.localdb import LocalDb
from replicator.files.transfer import Transfer
from schema.database import fetch_one

log = logging.getLogger(__name__)


class OnDemand:
    """Serves the cloud's open blob requests for one site from the local file store."""

    def __init__(self, transfer: Transfer, local: LocalDb) -> None:
        self.transfer = transfer
        self.local = local
        self.unservable: set[str] = set()  # no local file: asking again will not help
        self.served = 0
        self.bytes = 0

    async def serve_once(self) -> int:
        """Upload every requested blob this site has; returns how many were served."""
        served = 0
        for req in await self.transfer.api.open_requests():
            sha = req["sha256"]
            if sha in self.unservable:
                continue
            async with self.local.connection() as conn:
                row: Any = await fetch_one(
                    conn,
                    "files_local_blob_file",
                    {"site_id": self.transfer.api.site_id, "sha256": sha},
                    row=namedtuple_row,
                )
            if row is None:
                log.warning("blob %s requested by the cloud is not in this site's store", sha)
                self.unservable.add(sha)
                continue
            try:
                out = await self.transfer.upload(Path(row.local_path), sha, row.blob_size)
            except BlobMissing as exc:
                log.warning("blob %s requested by the cloud: %s", sha, exc)
                self.unservable.add(sha)
                continue
            except FilesError:
                raise
            served += 1
            self.bytes += out.bytes_sent
        self.served += served
        return served
