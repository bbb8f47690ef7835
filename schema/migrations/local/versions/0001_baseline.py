"""baseline: the whole local schema, written once for both sides (schema/migrations/steps.py).

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

from schema.migrations import steps

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    steps.baseline_upgrade("local")


def downgrade(**kw: Any) -> None:
    steps.baseline_downgrade("local")
