"""The ops store: SQLAlchemy models, sessions, migrations and locks (SQLite or Postgres)."""

from __future__ import annotations

from titans.store.db import (
    HeldLock,
    LockTimeout,
    Store,
    StoreError,
    acquire_lock,
    current_revision,
    head_revision,
    make_engine,
    session_factory,
    upgrade,
)

__all__ = [
    "HeldLock",
    "LockTimeout",
    "Store",
    "StoreError",
    "acquire_lock",
    "current_revision",
    "head_revision",
    "make_engine",
    "session_factory",
    "upgrade",
]
