"""The site's file sync scope (which files cross): one description and one validation,
used by `scsync policy set` (replicator/files/policy.py) and the local API's
``PUT /v1/policy`` (api/views/policy.py), so both accept and refuse the same policies."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from schema.errors import Category, SchemaError
from schema.tables import SYNCED_TABLES

FILE_TABLES: Final = tuple(t for t, col in SYNCED_TABLES.items() if col is not None)
Mode = Literal["all", "selective"]
OldData = Literal["keep", "delete", "backup"]
FIELDS: Final = ("mode", "tables", "modalities", "since_date", "last_days", "old_data")


class PolicyInvalid(SchemaError):
    """A scope policy that cannot be stored; ``field`` names the setting."""

    category = Category.REFUSED

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ScopePolicy:
    mode: Mode = "all"
    tables: tuple[str, ...] = ()  # file-bearing tables only (FILE_TABLES)
    modalities: tuple[str, ...] = ()
    since_date: dt.date | None = None
    last_days: int | None = None
    old_data: OldData = "keep"

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "tables": list(self.tables),
            "modalities": list(self.modalities),
            "since_date": self.since_date.isoformat() if self.since_date else None,
            "last_days": self.last_days,
            "old_data": self.old_data,
        }


def validate(policy: ScopePolicy) -> ScopePolicy:
    """The policy, or PolicyInvalid naming the first setting that is wrong. A table that
    bears no file is refused (a scope naming only such tables would silently take every
    blob out of scope)."""
    if policy.mode not in ("all", "selective"):
        raise PolicyInvalid(f"mode must be 'all' or 'selective', not {policy.mode!r}", "mode")
    unknown = sorted(set(policy.tables) - set(FILE_TABLES))
    if unknown:
        raise PolicyInvalid(
            f"unknown file table(s) {', '.join(unknown)}; use {', '.join(FILE_TABLES)}",
            "tables",
        )
    if policy.last_days is not None and not 0 < policy.last_days < 2**31:
        raise PolicyInvalid("last N days must be a positive number", "last_days")
    if policy.old_data not in ("keep", "delete", "backup"):
        raise PolicyInvalid(
            f"old-data option must be keep, delete or backup, not {policy.old_data!r}",
            "old_data",
        )
    return policy


def _names(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v and "\x00" not in v for v in value
    ):
        raise PolicyInvalid(f"{key} must be a list of names", key)
    return tuple(dict.fromkeys(value))


def from_json(body: Mapping[str, Any]) -> ScopePolicy:
    """A policy from its JSON form (the API's body, :meth:`ScopePolicy.describe`'s
    output), each value's type checked, then :func:`validate`."""
    extra = sorted(set(body) - set(FIELDS))
    if extra:
        raise PolicyInvalid(f"unknown field {extra[0]!r}", extra[0])
    for key in ("mode", "old_data"):
        if key in body and not isinstance(body[key], str):
            raise PolicyInvalid(f"{key} must be a string", key)
    last_days = body.get("last_days")
    if last_days is not None and (isinstance(last_days, bool) or not isinstance(last_days, int)):
        raise PolicyInvalid("last_days must be a positive integer or null", "last_days")
    since = body.get("since_date")
    since_date = None
    if since is not None:
        try:
            since_date = dt.date.fromisoformat(str(since))
        except ValueError:
            raise PolicyInvalid("since_date must be YYYY-MM-DD", "since_date") from None
    return validate(
        ScopePolicy(
            mode=body.get("mode", "all"),
            tables=_names(body, "tables"),
            modalities=_names(body, "modalities"),
            since_date=since_date,
            last_days=last_days,
            old_data=body.get("old_data", "keep"),
        )
    )
