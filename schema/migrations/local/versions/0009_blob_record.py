"""blob_record: nothing on the local side (blobs are recorded in the cloud database);
the revision exists so that both sides count their schema steps alike.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import Any

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    """Nothing on this side: blobs are recorded in the cloud database."""


def downgrade(**kw: Any) -> None:
    """Nothing on this side."""
