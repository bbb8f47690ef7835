"""Edit sessions on the cloud DB: open (acquire) -> save ... -> close (release).

Versions A.B: acquiring changes nothing; the first save with real changes makes
(A+1).0; each later save in the session A.(B+1); a save that changes nothing, and a
session that never saves, leave the version alone. Every save is one transaction of
``scsync_lockd_save`` (lease live + token + revision check + write + version bump), and
every save lands in ``scsync_history`` through the capture trigger, so an older revision
can be restored (:meth:`EditSession.rollback_to`) as a new save.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from lockd.manager import LeaseManager
from lockd.models import Lease, SaveResult


class EditSession:
    """One holder's session on one record. Not safe for concurrent use by two tasks."""

    def __init__(self, manager: LeaseManager, lease: Lease) -> None:
        self.manager = manager
        self.lease = lease
        self.revision = lease.session_revision
        self.version = (lease.version_major, lease.version_minor)
        self.closed = False

    @classmethod
    async def open(
        cls,
        manager: LeaseManager,
        table: str,
        row_id: int,
        holder: str,
        *,
        scope_site: int | None = None,
        ttl_s: float | None = None,
        wait_s: float = 0.0,
    ) -> EditSession:
        lease = await manager.acquire(
            table, row_id, holder, scope_site=scope_site, ttl_s=ttl_s, wait_s=wait_s
        )
        return cls(manager, lease)

    async def save(
        self, changes: Mapping[str, Any], *, save_id: uuid.UUID | None = None
    ) -> SaveResult:
        """Save; retry a save whose reply was lost with the same ``save_id``."""
        result = await self.manager.save(
            self.lease.lease_id,
            self.lease.token,
            changes,
            table=self.lease.table,
            expected_revision=self.revision,
            save_id=save_id or uuid.uuid4(),
        )
        self._after(result)
        return result

    async def rollback_to(self, revision: int) -> SaveResult:
        result = await self.manager.rollback(
            self.lease.lease_id,
            self.lease.token,
            revision,
            expected_revision=self.revision,
            save_id=uuid.uuid4(),
        )
        self._after(result)
        return result

    def _after(self, result: SaveResult) -> None:
        self.revision = result.revision
        self.version = (result.version_major, result.version_minor)

    async def heartbeat(self) -> Lease:
        self.lease = await self.manager.renew(self.lease.lease_id, self.lease.token)
        return self.lease

    async def touch(self) -> Lease:
        self.lease = await self.manager.touch(self.lease.lease_id, self.lease.token)
        return self.lease

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            await self.manager.release(self.lease.lease_id, self.lease.token)
