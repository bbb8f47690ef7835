"""lease_event_lean: nothing on the local side (leases live in the cloud database); the
revision exists so that both sides count their schema steps alike.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    """Nothing on this side: leases live in the cloud database."""


def downgrade(**kw: Any) -> None:
    """Nothing on this side."""
