"""files: reserved revision (filled in by the files work; empty until then).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    pass


def downgrade(**kw: Any) -> None:
    pass
