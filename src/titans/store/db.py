"""Engine, sessions, migrations and a cross-process lock for the ops store.

The same code runs on embedded SQLite (WAL) and on Postgres; only the URL changes
(``Settings.database_url``, i.e. ``TITANS_DATABASE_URL`` or ``<TITANS_HOME>/titans.db``).
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from titans.config import Settings
from titans.errors import TitansError
from titans.store.models import Lock, utcnow

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

#: how long a SQLite writer waits for another writer before "database is locked"
SQLITE_BUSY_TIMEOUT_S = 15.0

#: key of the Postgres advisory lock that serialises concurrent `upgrade` calls
_PG_MIGRATION_LOCK_KEY = 0x7417A45


class StoreError(TitansError):
    """The ops store is unreachable, not migrated, or refused an operation."""


class LockTimeout(StoreError):
    """A named lock stayed held by someone else for longer than the caller would wait."""


def redact(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: say so without echoing secrets
        return "<unparsable database URL>"


def _is_memory_sqlite(url: str) -> bool:
    database = make_url(url).database
    return database in (None, "", ":memory:") or (database or "").startswith("file::memory:")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with foreign keys on, or Postgres with pre-ping.

    A SQLite file's parent directory is created. Extra keyword arguments go to
    ``sqlalchemy.create_engine``.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(
            f"database URL {url!r} is not valid ({exc}); set TITANS_DATABASE_URL to e.g. "
            "sqlite:////path/titans.db or postgresql+psycopg://user@host/db"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        memory = _is_memory_sqlite(url)
        if not memory and parsed.database:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}
        connect_args.update(kwargs.pop("connect_args", {}))
        if memory:  # one shared connection, or every session would see its own empty database
            kwargs.setdefault("poolclass", StaticPool)
        engine = create_engine(url, connect_args=connect_args, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
                if not memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA foreign_keys=ON")
            finally:
                cursor.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    try:
        return create_engine(url, **kwargs)
    except ModuleNotFoundError as exc:
        raise StoreError(
            f"no driver for {redact(url)} ({exc.name} is not installed); install it, e.g. "
            "pip install 'psycopg[binary]'"
        ) from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def _url_of(target: str | Settings | Store | None) -> str:
    if isinstance(target, Store):
        return target.url
    if isinstance(target, Settings):
        return target.database_url
    if target is None:
        return Settings().database_url
    return target


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    """The newest migration shipped with this package."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:
        raise StoreError(f"no migrations found under {MIGRATIONS_DIR}; reinstall titans")
    return head


def _current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _upgrade_engine(engine: Engine) -> str:
    from alembic import command

    with engine.begin() as conn:
        # serialise replicas migrating at once: the second waits, then finds nothing to do
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK_KEY})")
        elif conn.dialect.name == "sqlite" and not _is_memory_sqlite(str(engine.url)):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        command.upgrade(_alembic_config(conn), "head")
    return head_revision()


def _wrap_unreachable(exc: DBAPIError, url: str) -> StoreError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
    return StoreError(
        f"ops store at {redact(url)} failed: {reason}; check TITANS_DATABASE_URL and that the "
        "database is running"
    )


def upgrade(url_or_settings: str | Settings | Store | None = None) -> str:
    """Apply every pending migration (idempotent); return the revision now current."""
    if isinstance(url_or_settings, Store):
        return url_or_settings.upgrade()
    url = _url_of(url_or_settings)
    engine = make_engine(url)
    try:
        return _upgrade_engine(engine)
    except OperationalError as exc:
        raise _wrap_unreachable(exc, url) from exc
    finally:
        engine.dispose()


def current_revision(url_or_settings: str | Settings | Store | None = None) -> str | None:
    """The migration revision the database is at (None when never migrated)."""
    if isinstance(url_or_settings, Store):
        return url_or_settings.current_revision()
    url = _url_of(url_or_settings)
    engine = make_engine(url)
    try:
        return _current_revision(engine)
    except OperationalError as exc:
        raise _wrap_unreachable(exc, url) from exc
    finally:
        engine.dispose()


class Store:
    """The ops store: one engine and its sessions.

    With ``auto_migrate`` (default ``Settings.database_auto_migrate``) the schema is brought to
    head on first use of :meth:`session`, so the embedded SQLite store needs no setup step;
    production turns it off and runs ``titans db upgrade`` once per release.

    >>> store = Store(url="sqlite://")
    >>> from titans.store.models import Lock
    >>> with store.session() as s:
    ...     s.query(Lock).count()
    0
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        url: str | None = None,
        auto_migrate: bool | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.url = url or self.settings.database_url
        self.auto_migrate = (
            auto_migrate if auto_migrate is not None else self.settings.database_auto_migrate
        )
        self.engine = make_engine(self.url)
        self._sessions = session_factory(self.engine)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Store({redact(self.url)})"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def upgrade(self) -> str:
        """Apply pending migrations to this store; return the current revision."""
        try:
            revision = _upgrade_engine(self.engine)
        except OperationalError as exc:
            raise _wrap_unreachable(exc, self.url) from exc
        self._schema_ready = True
        return revision

    def current_revision(self) -> str | None:
        """The migration revision of this store (None when never migrated)."""
        try:
            return _current_revision(self.engine)
        except OperationalError as exc:
            raise _wrap_unreachable(exc, self.url) from exc

    def ensure_schema(self) -> None:
        """Make sure the tables exist: migrate when allowed, else refuse with what to run."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            current = self.current_revision()
            if current != head_revision():
                if not self.auto_migrate:
                    raise StoreError(
                        f"ops store at {redact(self.url)} is at revision {current or 'none'}, "
                        f"not {head_revision()}; run `titans db upgrade`"
                    )
                self.upgrade()
            self._schema_ready = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        self.ensure_schema()
        session = self._sessions()
        try:
            yield session
            session.commit()
        except OperationalError as exc:
            session.rollback()
            raise _wrap_unreachable(exc, self.url) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


# ---------------------------------------------------------------- locks


@dataclass
class HeldLock:
    """A lock this caller holds until the ``acquire_lock`` block ends."""

    name: str
    holder: str
    token: str
    expires_at: datetime
    _engine: Engine = field(repr=False)

    def extend(self, ttl_seconds: float) -> None:
        """Push the expiry to now + ``ttl_seconds``; raise StoreError if the lease was lost."""
        new_expiry = utcnow() + timedelta(seconds=ttl_seconds)
        with self._engine.begin() as conn:
            done = conn.execute(
                update(Lock)
                .where(Lock.name == self.name, Lock.token == self.token)
                .values(expires_at=new_expiry)
            ).rowcount
        if done != 1:
            raise StoreError(
                f"lock {self.name!r} expired and was taken by another holder; "
                "raise ttl_seconds for work this long"
            )
        self.expires_at = new_expiry


def _engine_of(target: Session | Store | Engine) -> Engine:
    if isinstance(target, Store):
        target.ensure_schema()
        return target.engine
    if isinstance(target, Session):
        bind = target.get_bind()
        return bind if isinstance(bind, Engine) else bind.engine
    return target


def _try_insert(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert the lock row unless the name is taken; True when inserted."""
    # ON CONFLICT DO NOTHING: a taken lock is not an error (no log noise on the server).
    # RETURNING tells whether the row went in: psycopg reports rowcount -1 for inserts.
    if conn.dialect.name == "sqlite":
        lite = sqlite_insert(Lock).values(**values).on_conflict_do_nothing(index_elements=["name"])
        return conn.execute(lite.returning(Lock.token)).first() is not None
    if conn.dialect.name == "postgresql":
        pg = pg_insert(Lock).values(**values).on_conflict_do_nothing(index_elements=["name"])
        return conn.execute(pg.returning(Lock.token)).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(insert(Lock).values(**values))
    except IntegrityError:
        return False
    return True


@contextmanager
def acquire_lock(
    session_or_store: Session | Store | Engine,
    name: str,
    holder: str,
    ttl_seconds: float = 60.0,
    timeout_seconds: float = 30.0,
) -> Iterator[HeldLock]:
    """Hold the named lock for the duration of the block, across threads and processes.

    The lock is a row in ``locks``: inserting it takes the lock (a primary-key conflict means
    someone holds it), and a lease past ``expires_at`` — its holder crashed — is taken over
    with one conditional UPDATE, so exactly one waiter wins. Waiters retry with jittered
    backoff and raise :class:`LockTimeout` after ``timeout_seconds``. Each statement commits
    on its own connection, so a caller's open transaction neither hides nor holds the lock.
    Expiry uses the clocks of the machines involved: keep ``ttl_seconds`` well above their skew.

    Take the lock *before* writing in your own session: on SQLite a session with uncommitted
    writes holds the database's single write lock, and the lock row could not be written
    until that session ends.
    """
    engine = _engine_of(session_or_store)
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_seconds
    delay = 0.005
    while True:
        now = utcnow()
        expires_at = now + timedelta(seconds=ttl_seconds)
        values = {
            "name": name,
            "holder": holder,
            "token": token,
            "acquired_at": now,
            "expires_at": expires_at,
        }
        try:
            with engine.begin() as conn:
                acquired = _try_insert(conn, values)
                if not acquired:
                    acquired = (
                        conn.execute(
                            update(Lock)
                            .where(Lock.name == name, Lock.expires_at < now)
                            .values(
                                holder=holder, token=token, acquired_at=now, expires_at=expires_at
                            )
                        ).rowcount
                        == 1
                    )
        except OperationalError as exc:
            raise _wrap_unreachable(exc, str(engine.url)) from exc
        if acquired:
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LockTimeout(
                f"lock {name!r} is held by another process for more than {timeout_seconds:g} s; "
                "retry later, or clear it if its holder is gone (it expires by itself)"
            )
        time.sleep(min(remaining, delay * (0.5 + random.random())))  # nosec B311 - jitter
        delay = min(delay * 2, 0.25)

    held = HeldLock(name=name, holder=holder, token=token, expires_at=expires_at, _engine=engine)
    try:
        yield held
    finally:
        try:
            with engine.begin() as conn:
                released = conn.execute(
                    delete(Lock).where(Lock.name == name, Lock.token == token)
                ).rowcount
        except OperationalError:
            # the store went away: the lease ends by itself at expires_at
            log.warning("could not release lock %r; it expires at %s", name, expires_at)
            released = 1
        if released != 1:
            log.warning(
                "lock %r expired while %s held it and another holder took it; the work under "
                "it may have overlapped (raise ttl_seconds)",
                name,
                holder,
            )
