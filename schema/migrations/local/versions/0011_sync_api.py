"""sync API: nothing changes on a site's database (the cloud side drops the site roles
and adds the lane leases); kept so that both sides have the same revision numbers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

from typing import Any

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade(**kw: Any) -> None:
    pass


def downgrade(**kw: Any) -> None:
    pass
