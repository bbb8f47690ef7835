"""replicator: reserved revision (filled in by the replicator work; empty until then).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    pass


def downgrade(**kw: Any) -> None:
    pass
