"""The outbox read's busy records in one hashed set (local; migrations/steps.py)."""

from schema.migrations import steps

revision = "0002"
down_revision = "0001"
upgrade, downgrade = steps.read_busy_records()
