"""Names shared by schema/tables.py and the per-area table modules."""

from __future__ import annotations

from typing import Final, Literal

Side = Literal["local", "cloud"]
SIDES: Final[tuple[Side, ...]] = ("local", "cloud")
