"""baseline (cloud): the whole schema, written once for both sides (migrations/steps.py)."""

from schema.migrations import steps

revision = "0001"
down_revision = None
upgrade, downgrade = steps.baseline("cloud")
