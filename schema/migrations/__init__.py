"""Alembic environments for the two databases (see alembic.ini and docs/schema.md)."""
