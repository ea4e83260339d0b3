"""Alembic environment of the ops store.

Configured programmatically by ``titans.store.db`` (no alembic.ini): the caller passes an open
connection in ``config.attributes["connection"]``; a ``sqlalchemy.url`` main option is the
fallback for running the ``alembic`` command by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from titans.store.db import make_engine
from titans.store.models import Base

target_metadata = Base.metadata


def _under_alembic() -> bool:
    """False when imported outside an alembic command (e.g. by a doctest collector)."""
    try:
        context.config  # noqa: B018 - raises unless alembic set up the context
    except AttributeError:
        return False
    return True


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: later revisions rebuild tables in batch mode
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the caller's connection, or open one from ``sqlalchemy.url``."""
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection or sqlalchemy.url given to the titans migrations")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if _under_alembic():
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
