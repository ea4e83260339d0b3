"""Throwaway ops stores for tests: a SQLite file, or a fresh schema on a Postgres server.

Test suites parametrize a ``store`` fixture over :func:`backends` and open each with
:func:`temporary_store`; Postgres joins when ``TITANS_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from titans.config import Settings
from titans.store.db import Store

POSTGRES_ENV = "TITANS_TEST_POSTGRES_URL"


def backends() -> list[str]:
    """``["sqlite"]``, plus ``"postgresql"`` when TITANS_TEST_POSTGRES_URL is set."""
    return ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


@contextmanager
def postgres_schema_url(base_url: str) -> Iterator[str]:
    """A URL whose connections see only a new, empty schema; the schema is dropped after."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def temporary_store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated Store on ``backend`` ("sqlite" or "postgresql") that vanishes afterwards."""
    home = tmp_path / "titans-home"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.db'}"
        store = Store(Settings(home=home, TITANS_DATABASE_URL=url))
        try:
            store.upgrade()
            yield store
        finally:
            store.dispose()
        return
    base_url = os.environ.get(POSTGRES_ENV)
    if not base_url:
        raise RuntimeError(f"set {POSTGRES_ENV} to run the Postgres variant")
    with postgres_schema_url(base_url) as url:
        store = Store(Settings(home=home, TITANS_DATABASE_URL=url))
        try:
            store.upgrade()
            yield store
        finally:
            store.dispose()
