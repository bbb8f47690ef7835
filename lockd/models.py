"""Values lockd hands out: leases, save outcomes, events. All built from the JSON the
lease functions return, so the library and the HTTP API say the same thing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


def _ts(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, int | str) else None


@dataclass(frozen=True)
class Lease:
    """A live lease as its holder sees it (``lease_id`` + ``token`` prove ownership)."""

    lease_id: uuid.UUID
    token: int
    table: str
    row_id: int
    site_id: int
    holder: str
    version_major: int
    version_minor: int
    revision: int
    saves: int
    saved_revision: int | None
    ttl_ms: int
    expires_in_ms: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    expires_at: datetime | None = None
    last_activity_at: datetime | None = None
    idle_warned_at: datetime | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Lease:
        return cls(
            lease_id=uuid.UUID(str(d["lease_id"])),
            token=int(d["token"]),
            table=str(d["table"]),
            row_id=int(d["row_id"]),
            site_id=int(d["site_id"]),
            holder=str(d["holder"]),
            version_major=int(d["version_major"]),
            version_minor=int(d["version_minor"]),
            revision=int(d["revision"]),
            saves=int(d.get("saves") or 0),
            saved_revision=_int_or_none(d.get("saved_revision")),
            ttl_ms=int(d["ttl_ms"]),
            expires_in_ms=int(d["expires_in_ms"]),
            acquired_at=_ts(d.get("acquired_at")),
            renewed_at=_ts(d.get("renewed_at")),
            expires_at=_ts(d.get("expires_at")),
            last_activity_at=_ts(d.get("last_activity_at")),
            idle_warned_at=_ts(d.get("idle_warned_at")),
        )

    @property
    def session_revision(self) -> int:
        """The revision the next save must find: the last save's, else acquisition's."""
        return self.saved_revision if self.saved_revision is not None else self.revision

    def to_json(self) -> dict[str, Any]:
        return {
            "lease_id": str(self.lease_id),
            "token": self.token,
            "table": self.table,
            "row_id": self.row_id,
            "site_id": self.site_id,
            "holder": self.holder,
            "version_major": self.version_major,
            "version_minor": self.version_minor,
            "revision": self.revision,
            "saves": self.saves,
            "saved_revision": self.saved_revision,
            "ttl_ms": self.ttl_ms,
            "expires_in_ms": self.expires_in_ms,
            "acquired_at": _iso(self.acquired_at),
            "renewed_at": _iso(self.renewed_at),
            "expires_at": _iso(self.expires_at),
            "last_activity_at": _iso(self.last_activity_at),
            "idle_warned_at": _iso(self.idle_warned_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class LeaseState:
    """Public view of a record's lease (no lease id): ``free``, ``held`` or ``expired``."""

    status: Literal["free", "held", "expired"]
    table: str
    row_id: int
    holder: str | None = None
    token: int | None = None
    expires_in_ms: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LeaseState:
        status = d["status"]
        if status not in ("free", "held", "expired"):
            raise ValueError(f"unknown lease status {status!r}")
        return cls(
            status=status,
            table=str(d["table"]),
            row_id=int(d["row_id"]),
            holder=d.get("holder"),
            token=_int_or_none(d.get("token")),
            expires_in_ms=_int_or_none(d.get("expires_in_ms")),
            raw=dict(d),
        )

    @property
    def editing_by(self) -> Literal["local", "cloud"] | None:
        """What clients show: "Editing by local" / "Editing by cloud" (None when free)."""
        if self.status != "held" or self.holder is None:
            return None
        return "cloud" if self.holder.startswith("cloud:") else "local"


@dataclass(frozen=True)
class SaveResult:
    status: Literal["saved", "unchanged", "replayed"]
    changed: bool
    version_major: int
    version_minor: int
    revision: int
    token: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SaveResult:
        return cls(
            status=d["status"],
            changed=bool(d["changed"]),
            version_major=int(d["version_major"]),
            version_minor=int(d["version_minor"]),
            revision=int(d["revision"]),
            token=int(d["token"]),
        )

    @property
    def version(self) -> str:
        return f"{self.version_major}.{self.version_minor}"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "changed": self.changed,
            "version_major": self.version_major,
            "version_minor": self.version_minor,
            "revision": self.revision,
            "token": self.token,
        }


@dataclass(frozen=True)
class SaveGrant:
    """Answer to ``begin_save`` for a save made on a site's local DB."""

    lease_id: uuid.UUID
    token: int
    bump: Literal["major", "minor"]
    saves: int
    remaining_ms: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SaveGrant:
        bump = d["bump"]
        if bump not in ("major", "minor"):
            raise ValueError(f"unknown bump {bump!r}")
        return cls(
            lease_id=uuid.UUID(str(d["lease_id"])),
            token=int(d["token"]),
            bump=bump,
            saves=int(d["saves"]),
            remaining_ms=int(d["remaining_ms"]),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "lease_id": str(self.lease_id),
            "token": self.token,
            "bump": self.bump,
            "saves": self.saves,
            "remaining_ms": self.remaining_ms,
        }


@dataclass(frozen=True)
class LeaseEvent:
    """One lease event as published on ``scsync_lease`` (and kept in the event log)."""

    seq: int
    event: str
    table: str
    row_id: int
    site_id: int
    holder: str
    token: int
    lease_id: str
    detail: dict[str, Any]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LeaseEvent:
        known = {"seq", "event", "table", "row_id", "site_id", "holder", "token", "lease_id"}
        return cls(
            seq=int(d["seq"]),
            event=str(d["event"]),
            table=str(d["table"]),
            row_id=int(d["row_id"]),
            site_id=int(d["site_id"]),
            holder=str(d["holder"]),
            token=int(d["token"]),
            lease_id=str(d["lease_id"]),
            detail={k: v for k, v in d.items() if k not in known},
        )
