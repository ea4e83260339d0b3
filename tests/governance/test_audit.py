"""The hash-chained audit trail: links, tamper detection through raw SQL, concurrency."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select, text, update

from titans.errors import InputError
from titans.governance import AuditLogger
from titans.governance.audit import GENESIS_HASH, entry_hash
from titans.store import Store
from titans.store.models import AuditEntryRow, AuditHead


def _fill(audit: AuditLogger, n: int = 5) -> list[str]:
    hashes = []
    for i in range(1, n + 1):
        e = audit.log(
            "promote" if i % 2 else "approve",
            actor=f"user{i}",
            model_name="titans-category",
            model_version=i,
            details={"from": "staging", "to": "production", "note": "über ✓", "i": i},
        )
        hashes.append(e.entry_hash)
    return hashes


def _sql(store: Store, statement: str, **params: Any) -> None:
    """Tamper the way an intruder with database access would: raw SQL, no AuditLogger."""
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


# ---------------------------------------------------------------- writing


def test_entries_link_into_a_chain_that_verifies(store: Store) -> None:
    audit = AuditLogger(store)
    assert audit.head() == GENESIS_HASH
    assert audit.verify().ok and audit.verify().entries_checked == 0

    hashes = _fill(audit, 5)
    entries = audit.entries()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for prev, cur in itertools.pairwise(entries):
        assert cur.prev_hash == prev.entry_hash
    assert [e.entry_hash for e in entries] == hashes
    assert audit.head() == hashes[-1]

    result = audit.verify(expected_head=hashes[2])  # an older head kept elsewhere: still there
    assert result.ok, result.reason
    assert (result.entries_checked, result.head_hash) == (5, hashes[-1])


def test_entry_hash_is_sha256_of_prev_hash_and_canonical_json(store: Store) -> None:
    audit = AuditLogger(store)
    first = audit.log("register", "ann", "titans-amount", "7", {"b": [1, 2], "a": "é"})
    stored = audit.entries()[0]
    assert stored.ts == first.ts and stored.ts.tzinfo == UTC  # microseconds survive the DB
    # recomputed independently of the library, from the rule in the issue
    canonical = (
        '{"action":"register","actor":"ann","details":{"a":"é","b":[1,2]},'
        f'"model_name":"titans-amount","model_version":"7","seq":1,'
        f'"ts":"{stored.ts.isoformat(timespec="microseconds")}"}}'
    )
    expected = hashlib.sha256((GENESIS_HASH + canonical).encode("utf-8")).hexdigest()
    assert stored.entry_hash == expected == first.entry_hash


def test_details_are_stored_exactly_as_hashed(store: Store) -> None:
    audit = AuditLogger(store)
    audit.log(
        "validate",
        "ci",
        details={
            "tuple": (1, 2),
            "np": np.int64(3),
            "f": np.float64(0.1),
            "when": datetime(2026, 1, 1, tzinfo=UTC),
        },
    )
    (entry,) = audit.entries()
    assert entry.details == {
        "tuple": [1, 2],
        "np": 3,
        "f": 0.1,
        "when": "2026-01-01T00:00:00.000000+00:00",
    }
    assert audit.verify().ok


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"action": "", "actor": "ann"}, "action"),
        ({"action": "promote", "actor": "  "}, "actor"),
        ({"action": "promote", "actor": "ann", "details": {"x": float("nan")}}, "NaN"),
        ({"action": "promote", "actor": "ann", "details": {"x": object()}}, "JSON"),
    ],
)
def test_bad_entries_are_refused_with_a_clear_message(
    store: Store, kwargs: dict[str, Any], message: str
) -> None:
    audit = AuditLogger(store)
    with pytest.raises(InputError, match=message):
        audit.log(**kwargs)
    assert audit.entries() == []


def test_entry_joins_the_callers_transaction(store: Store) -> None:
    audit = AuditLogger(store)
    audit.log("register", "ann")
    with pytest.raises(RuntimeError), store.session() as session:
        audit.log("approve", "bob", session=session)
        raise RuntimeError("the approval itself failed")
    assert [e.action for e in audit.entries()] == ["register"]  # rolled back together
    e = audit.log("approve", "bob")
    assert e.seq == 2  # no gap left by the rolled-back entry
    assert audit.verify().ok


def test_entries_filters_by_model_and_limit_keeps_the_newest(store: Store) -> None:
    audit = AuditLogger(store)
    audit.log("register", "ann", "titans-category", "1")
    audit.log("register", "ann", "titans-amount", "1")
    audit.log("promote", "ann", "titans-category", "1")
    audit.log("rollback", "ann", "titans-category", "1")
    assert [e.seq for e in audit.entries(limit=2)] == [3, 4]
    assert [e.seq for e in audit.entries(model_name="titans-category")] == [1, 3, 4]
    assert [e.seq for e in audit.entries(limit=1, model_name="titans-amount")] == [2]


# ---------------------------------------------------------------- tampering


def _swap_rows(store: Store, a: int, b: int) -> None:
    """Exchange every stored field of two entries (their seq stays)."""
    cols = [
        "ts",
        "actor",
        "action",
        "model_name",
        "model_version",
        "details",
        "prev_hash",
        "entry_hash",
    ]
    with store.engine.begin() as conn:
        rows = {
            r.seq: r._mapping
            for r in conn.execute(select(AuditEntryRow).where(AuditEntryRow.seq.in_([a, b])))
        }
        seq = AuditEntryRow.seq
        # free the unique hash first, as an intruder would have to
        conn.execute(update(AuditEntryRow).where(seq == a).values(entry_hash="x" * 64))
        conn.execute(update(AuditEntryRow).where(seq == b).values({c: rows[a][c] for c in cols}))
        conn.execute(update(AuditEntryRow).where(seq == a).values({c: rows[b][c] for c in cols}))


@pytest.mark.parametrize(
    ("tamper", "broken_seq", "words"),
    [
        ("edit_actor", 3, "contents do not match"),
        ("edit_version", 2, "contents do not match"),
        ("edit_details", 4, "contents do not match"),
        ("edit_ts", 1, "contents do not match"),
        ("edit_hash", 3, "contents do not match"),
        ("delete_middle", 3, "entry 3 is missing"),
        ("delete_first", 1, "entry 1 is missing"),
        ("delete_last", 5, "newest entries were deleted"),
        ("swap", 2, "does not link"),
        ("forge_appended", 6, "outside the AuditLogger"),
        ("delete_checkpoint", None, "checkpoint row is missing"),
    ],
)
def test_tampering_through_sql_is_detected(
    store: Store, tamper: str, broken_seq: int | None, words: str
) -> None:
    audit = AuditLogger(store)
    hashes = _fill(audit, 5)
    assert audit.verify().ok

    if tamper == "edit_actor":
        _sql(store, "UPDATE audit_entries SET actor = 'mallory' WHERE seq = 3")
    elif tamper == "edit_version":
        _sql(store, "UPDATE audit_entries SET model_version = '99' WHERE seq = 2")
    elif tamper == "edit_details":
        with store.engine.begin() as conn:
            conn.execute(
                update(AuditEntryRow)
                .where(AuditEntryRow.seq == 4)
                .values(details={"from": "staging", "to": "archived", "note": "über ✓", "i": 4})
            )
    elif tamper == "edit_ts":
        with store.engine.begin() as conn:
            conn.execute(
                update(AuditEntryRow)
                .where(AuditEntryRow.seq == 1)
                .values(ts=datetime(2020, 1, 1, tzinfo=UTC))
            )
    elif tamper == "edit_hash":
        _sql(store, "UPDATE audit_entries SET entry_hash = :h WHERE seq = 3", h="f" * 64)
    elif tamper == "delete_middle":
        _sql(store, "DELETE FROM audit_entries WHERE seq = 3")
    elif tamper == "delete_first":
        _sql(store, "DELETE FROM audit_entries WHERE seq = 1")
    elif tamper == "delete_last":
        _sql(store, "DELETE FROM audit_entries WHERE seq = 5")
    elif tamper == "swap":
        _swap_rows(store, 2, 3)
    elif tamper == "forge_appended":
        # a well-formed entry with a correct hash, but not written through the logger
        ts = datetime.now(UTC)
        forged = entry_hash(
            hashes[-1],
            seq=6,
            ts=ts,
            actor="mallory",
            action="promote",
            model_name="titans-category",
            model_version="666",
            details={},
        )
        with store.engine.begin() as conn:
            conn.execute(
                insert(AuditEntryRow).values(
                    seq=6,
                    ts=ts,
                    actor="mallory",
                    action="promote",
                    model_name="titans-category",
                    model_version="666",
                    details={},
                    prev_hash=hashes[-1],
                    entry_hash=forged,
                )
            )
    elif tamper == "delete_checkpoint":
        _sql(store, "DELETE FROM audit_heads")

    result = audit.verify()
    assert not result.ok
    assert result.first_broken_seq == broken_seq
    assert words in result.reason


def test_rewriting_the_tail_and_checkpoint_needs_an_external_head(store: Store) -> None:
    """The documented limit: delete the newest entry AND rewrite the checkpoint, and only a
    head hash kept outside the database shows it."""
    audit = AuditLogger(store)
    hashes = _fill(audit, 5)
    kept_elsewhere = audit.head()
    _sql(store, "DELETE FROM audit_entries WHERE seq = 5")
    _sql(store, "UPDATE audit_heads SET seq = 4, head_hash = :h", h=hashes[3])

    assert audit.verify().ok  # internally consistent again
    result = audit.verify(expected_head=kept_elsewhere)
    assert not result.ok
    assert "expected head" in result.reason
    # new entries after the rewrite do not bring the removed head back
    audit.log("promote", "mallory")
    assert not audit.verify(expected_head=kept_elsewhere).ok


def test_verify_of_a_growing_chain_is_never_a_false_alarm(store: Store) -> None:
    audit = AuditLogger(store)
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(60):
                audit.log("heartbeat", "writer", details={"i": i})
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    results = []
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        results.append(audit.verify())
    thread.join(timeout=60)
    assert results and all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert audit.verify().entries_checked == 60


# ---------------------------------------------------------------- concurrency


def test_concurrent_threads_never_fork_or_lose_the_chain(store: Store) -> None:
    audit = AuditLogger(store)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(25):
                audit.log("promote", actor=f"thread{t}", details={"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors
    entries = audit.entries()
    assert [e.seq for e in entries] == list(range(1, 201))
    assert Counter(e.actor for e in entries) == {f"thread{t}": 25 for t in range(8)}
    for t in range(8):  # each writer's own entries keep its order
        mine = [e.details["i"] for e in entries if e.actor == f"thread{t}"]
        assert mine == list(range(25))
    result = audit.verify()
    assert result.ok, result.reason
    assert result.entries_checked == 200


_WRITER = """
import sys, time
from pathlib import Path
from titans.config import Settings
from titans.governance import AuditLogger
from titans.store import Store

url, name, n, sync = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = Store(Settings(TITANS_DATABASE_URL=url))
audit = AuditLogger(store)
store.ensure_schema()
(sync / name).touch()  # ready; start together so the writers really contend
deadline = time.monotonic() + 60
while not (sync / "go").exists() and time.monotonic() < deadline:
    time.sleep(0.01)
for i in range(n):
    audit.log("retrain", actor=name, details={"i": i})
"""


def test_concurrent_processes_never_fork_or_lose_the_chain(store: Store, tmp_path: Path) -> None:
    audit = AuditLogger(store)
    names = ["proc0", "proc1", "proc2"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, store.url, name, "30", str(tmp_path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / n).exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    entries = audit.entries()
    assert [e.seq for e in entries] == list(range(1, 91))
    assert Counter(e.actor for e in entries) == dict.fromkeys(names, 30)
    result = audit.verify()
    assert result.ok, result.reason
    with store.session() as session:
        head = session.get(AuditHead, 1)
        assert head is not None and head.seq == 90 and head.head_hash == result.head_hash


def test_canonical_details_match_what_json_loads_back(store: Store) -> None:
    """What the database returns for details hashes the same as what was written."""
    audit = AuditLogger(store)
    details = {"nested": {"z": [1.5, -0.0, 1e300], "a": None}, "big": 2**60, "s": "\u00e9\u4e2d"}
    audit.log("compare", "ann", details=details)
    assert audit.entries()[0].details == json.loads(json.dumps(details))
    assert audit.verify().ok
