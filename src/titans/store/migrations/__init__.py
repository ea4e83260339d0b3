"""Alembic migrations of the ops store, shipped inside the package."""
