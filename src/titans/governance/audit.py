"""Tamper-evident audit trail: an append-only SHA-256 hash chain in the ops store.

Each entry stores ``entry_hash = sha256(prev_hash + canonical_json(entry))`` where the
canonical JSON holds seq, ts (ISO 8601 UTC with microseconds), actor, action, model_name,
model_version and details, with sorted keys, no whitespace and ``ensure_ascii=False``; the
first entry's ``prev_hash`` is 64 zeros. Editing, deleting, reordering or re-hashing an entry
breaks the chain at that entry, and :meth:`AuditLogger.verify` names it.

What a hash chain cannot see on its own: someone with write access who deletes the newest
entries *and* rewrites the ``audit_heads`` checkpoint, or who recomputes every hash after an
edit. Keep the head hash somewhere else (printed by ``titans demo``, shipped to a log
system) and pass it as ``verify(expected_head=...)`` to close that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from titans.config import Settings
from titans.errors import InputError
from titans.store.db import Store, StoreError
from titans.store.models import GENESIS_HASH, AuditEntryRow, AuditHead, utcnow

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLogger",
    "VerifyResult",
    "canonical_json",
    "entry_hash",
]

_HEAD_ID = 1
_VERIFY_BATCH = 1000

# Core statements built once: an append is four round trips and little else
_heads = cast(Table, AuditHead.__table__)
_entries = cast(Table, AuditEntryRow.__table__)
_LOCK_HEAD = (
    update(_heads).where(_heads.c.id == bindparam("head_id")).values(updated_at=bindparam("now"))
)
_READ_HEAD = select(_heads.c.seq, _heads.c.head_hash).where(_heads.c.id == bindparam("head_id"))
_INSERT_ENTRY = insert(_entries)
_MOVE_HEAD = (
    update(_heads)
    .where(_heads.c.id == bindparam("head_id"))
    .values(seq=bindparam("new_seq"), head_hash=bindparam("new_hash"), updated_at=bindparam("now"))
)


def _json_default(value: Any) -> Any:
    """Turn the few non-JSON types an audit detail plausibly holds into JSON values."""
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def canonical_json(value: Any) -> str:
    """The one JSON spelling of ``value`` that hashes are computed over.

    >>> canonical_json({"b": 1, "a": ["é", None]})
    '{"a":["é",null],"b":1}'
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def entry_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: datetime,
    actor: str,
    action: str,
    model_name: str | None,
    model_version: str | None,
    details: Mapping[str, Any],
) -> str:
    """SHA-256 hex digest linking one entry to the previous one.

    >>> entry_hash(GENESIS_HASH, seq=1, ts=datetime(2026, 1, 1, tzinfo=UTC), actor="ann",
    ...            action="promote", model_name="m", model_version="3", details={})[:16]
    '4acca2361cd56b78'
    """
    payload = canonical_json(
        {
            "seq": seq,
            "ts": _iso(ts),
            "actor": actor,
            "action": action,
            "model_name": model_name,
            "model_version": model_version,
            "details": details,
        }
    )
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """One entry of the audit chain, as written."""

    seq: int
    ts: datetime
    actor: str
    action: str
    model_name: str | None
    model_version: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str

    @classmethod
    def from_row(cls, row: Any) -> AuditEntry:
        ts = row.ts if row.ts.tzinfo else row.ts.replace(tzinfo=UTC)
        return cls(
            seq=row.seq,
            ts=ts.astimezone(UTC),
            actor=row.actor,
            action=row.action,
            model_name=row.model_name,
            model_version=row.model_version,
            details=dict(row.details or {}),
            prev_hash=row.prev_hash,
            entry_hash=row.entry_hash,
        )

    def recompute_hash(self) -> str:
        """The hash this entry's contents and ``prev_hash`` should have."""
        return entry_hash(
            self.prev_hash,
            seq=self.seq,
            ts=self.ts,
            actor=self.actor,
            action=self.action,
            model_name=self.model_name,
            model_version=self.model_version,
            details=self.details,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (ts as ISO 8601 UTC)."""
        out = asdict(self)
        out["ts"] = _iso(self.ts)
        return out

    def row_values(self) -> dict[str, Any]:
        """Column values of the ``audit_entries`` row."""
        return asdict(self)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of recomputing the chain; ``first_broken_seq`` names where it breaks."""

    ok: bool
    entries_checked: int
    head_hash: str
    first_broken_seq: int | None = None
    reason: str = ""
    checkpoint: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditLogger:
    """Append-only, hash-chained audit log kept in the ops store.

    Appends from any number of threads or processes are serialised by locking the single
    ``audit_heads`` row first (a row lock on Postgres, the write lock on SQLite), so the
    chain never forks and no entry is lost.

    >>> audit = AuditLogger(Store(url="sqlite://"))
    >>> e = audit.log("promote", actor="ann", model_name="titans-category", model_version=3)
    >>> (e.seq, e.model_version, e.prev_hash == GENESIS_HASH)
    (1, '3', True)
    >>> audit.verify().ok, audit.head() == e.entry_hash
    (True, True)
    """

    def __init__(self, store_or_settings: Store | Settings | None = None) -> None:
        if isinstance(store_or_settings, Store):
            self.store = store_or_settings
        else:
            self.store = Store(store_or_settings)

    # ------------------------------------------------------------ writing

    def log(
        self,
        action: str,
        actor: str,
        model_name: str | None = None,
        model_version: str | int | None = None,
        details: Mapping[str, Any] | None = None,
        *,
        session: Session | None = None,
    ) -> AuditEntry:
        """Append one entry and return it.

        With ``session`` the entry joins the caller's transaction (it exists only if the
        caller commits, atomically with the caller's own changes); otherwise it commits
        before returning.
        """
        if not isinstance(action, str) or not action.strip():
            raise InputError("audit action must be a non-empty string, e.g. 'promote'")
        if not isinstance(actor, str) or not actor.strip():
            raise InputError("audit actor must be a non-empty string naming who acted")
        try:
            # round-trip so what is stored is exactly what was hashed (tuples → lists, ...)
            clean_details: dict[str, Any] = json.loads(canonical_json(dict(details or {})))
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"audit details must be JSON-serialisable without NaN/inf ({exc}); "
                "convert the value to str, int, float, bool, list or dict"
            ) from exc
        version = None if model_version is None else str(model_version)
        if session is not None:
            return self._append(session, action, actor, model_name, version, clean_details)
        with self.store.session() as own:
            return self._append(own, action, actor, model_name, version, clean_details)

    def _append(
        self,
        session: Session,
        action: str,
        actor: str,
        model_name: str | None,
        model_version: str | None,
        details: dict[str, Any],
    ) -> AuditEntry:
        now = utcnow()
        # writing first takes the chain's lock before anything is read: the row lock on
        # Postgres, the database write lock on SQLite (no stale snapshot can be upgraded)
        locked = session.execute(_LOCK_HEAD, {"head_id": _HEAD_ID, "now": now})
        if locked.rowcount != 1:  # type: ignore[attr-defined]
            if session.scalar(select(AuditEntryRow.seq).limit(1)) is not None:
                raise StoreError(
                    "the audit head checkpoint row is missing although entries exist; run "
                    "`titans governance audit verify` and restore it before logging more"
                )
            # tables made without the migration (which creates this row): make it, then lock it
            session.add(AuditHead(id=_HEAD_ID, seq=0, head_hash=GENESIS_HASH, updated_at=now))
            session.flush()
        head = session.execute(_READ_HEAD, {"head_id": _HEAD_ID}).one()
        entry = AuditEntry(
            seq=head.seq + 1,
            ts=now,
            actor=actor,
            action=action,
            model_name=model_name,
            model_version=model_version,
            details=details,
            prev_hash=head.head_hash,
            entry_hash="",
        )
        entry = replace(entry, entry_hash=entry.recompute_hash())
        session.execute(_INSERT_ENTRY, entry.row_values())
        session.execute(
            _MOVE_HEAD,
            {"head_id": _HEAD_ID, "new_seq": entry.seq, "new_hash": entry.entry_hash, "now": now},
        )
        return entry

    # ------------------------------------------------------------ reading

    def head(self) -> str:
        """Hash of the newest entry (64 zeros for an empty chain)."""
        with self.store.session() as session:
            value = session.scalar(select(AuditHead.head_hash).where(AuditHead.id == _HEAD_ID))
        return value or GENESIS_HASH

    def entries(self, limit: int | None = None, model_name: str | None = None) -> list[AuditEntry]:
        """Entries oldest first; with ``limit``, the newest ``limit`` of them."""
        if limit is not None and limit < 0:
            raise InputError(f"limit must be >= 0, got {limit}")
        stmt = select(AuditEntryRow)
        if model_name is not None:
            stmt = stmt.where(AuditEntryRow.model_name == model_name)
        if limit is not None:
            stmt = stmt.order_by(AuditEntryRow.seq.desc()).limit(limit)
        else:
            stmt = stmt.order_by(AuditEntryRow.seq)
        with self.store.session() as session:
            rows = [AuditEntry.from_row(r) for r in session.scalars(stmt)]
        return sorted(rows, key=lambda e: e.seq)

    def get(self, seq: int) -> AuditEntry | None:
        """The entry with sequence number ``seq``, if it is stored."""
        with self.store.session() as session:
            row = session.get(AuditEntryRow, seq)
            return AuditEntry.from_row(row) if row is not None else None

    # ------------------------------------------------------------ verifying

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read-only connection that sees one consistent state of the chain."""
        self.store.ensure_schema()
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            snapshot = engine.connect().execution_options(isolation_level="REPEATABLE READ")
            with snapshot as conn, conn.begin():
                yield conn
            return
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # pysqlite starts no transaction for SELECTs: open one so every read shares
                # the snapshot taken by the first (WAL lets writers go on meanwhile)
                conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                conn.rollback()

    def verify(self, expected_head: str | None = None) -> VerifyResult:
        """Recompute the whole chain and report the first entry that does not hold.

        ``expected_head``: a head hash kept outside the database earlier; the chain must
        still contain it, which catches deleted or rewritten newest entries even when the
        ``audit_heads`` checkpoint was rewritten too.
        """
        running = GENESIS_HASH
        expected_seq = 1
        checked = 0
        found_expected = expected_head is None or expected_head == GENESIS_HASH

        def broken(seq: int | None, reason: str, checkpoint: dict[str, Any]) -> VerifyResult:
            return VerifyResult(False, checked, running, seq, reason, checkpoint)

        with self._snapshot() as conn:
            head_row = conn.execute(
                select(AuditHead.seq, AuditHead.head_hash).where(AuditHead.id == _HEAD_ID)
            ).one_or_none()
            checkpoint = {"seq": head_row.seq, "head_hash": head_row.head_hash} if head_row else {}
            last_seq = 0
            while True:
                rows = conn.execute(
                    select(AuditEntryRow)
                    .where(AuditEntryRow.seq > last_seq)
                    .order_by(AuditEntryRow.seq)
                    .limit(_VERIFY_BATCH)
                ).all()
                if not rows:
                    break
                for row in rows:
                    entry = AuditEntry.from_row(row)
                    last_seq = entry.seq
                    if entry.seq != expected_seq:
                        return broken(
                            expected_seq,
                            f"entry {expected_seq} is missing (the next stored entry is "
                            f"{entry.seq}): entries were deleted",
                            checkpoint,
                        )
                    if entry.prev_hash != running:
                        return broken(
                            entry.seq,
                            f"entry {entry.seq} does not link to entry {entry.seq - 1} "
                            "(prev_hash differs): entries were reordered, replaced or deleted",
                            checkpoint,
                        )
                    if entry.recompute_hash() != entry.entry_hash:
                        return broken(
                            entry.seq,
                            f"entry {entry.seq}'s contents do not match its stored hash: "
                            "a field or the hash was edited",
                            checkpoint,
                        )
                    running = entry.entry_hash
                    checked += 1
                    expected_seq += 1
                    if not found_expected and running == expected_head:
                        found_expected = True
        if head_row is None and checked:
            return broken(
                None,
                "the audit head checkpoint row is missing: it was deleted outside the AuditLogger",
                checkpoint,
            )
        if head_row is not None:
            if head_row.seq > checked:
                return broken(
                    checked + 1,
                    f"the head checkpoint records {head_row.seq} entries but the chain ends at "
                    f"entry {checked}: the newest entries were deleted",
                    checkpoint,
                )
            if head_row.seq < checked:
                return broken(
                    head_row.seq + 1,
                    f"entries after {head_row.seq} are not recorded in the head checkpoint: "
                    "they were inserted outside the AuditLogger",
                    checkpoint,
                )
            if head_row.head_hash != running:
                return broken(
                    checked,
                    "the head checkpoint's hash differs from the chain's last hash: the "
                    "newest entry or the checkpoint was rewritten",
                    checkpoint,
                )
        if not found_expected:
            return broken(
                None,
                f"the expected head {expected_head} is not in the chain: entries at or "
                "before it were deleted or rewritten (with the checkpoint)",
                checkpoint,
            )
        return VerifyResult(True, checked, running, None, "", checkpoint)
