"""The site's WAL straight to the cloud, its LSN kept there (cloud; migrations/steps.py)."""

from schema.migrations import steps

revision = "0003"
down_revision = "0002"
upgrade, downgrade = steps.wal_direct("cloud")
