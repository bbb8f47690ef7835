"""lockd: reserved revision (filled in by the lockd work; empty until then).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    pass


def downgrade(**kw: Any) -> None:
    pass
