"""Alembic revisions of the ops store."""
