"""`titans db` and `titans governance audit` as a user runs them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from titans.cli import _register_groups, app
from titans.config import Settings
from titans.governance import AuditLogger
from titans.store import head_revision

runner = CliRunner()
_register_groups()


def test_titans_db_upgrade_creates_the_tables_in_titans_home(titans_home: Path) -> None:
    env = {**os.environ, "TITANS_HOME": str(titans_home)}
    titans = Path(sys.executable).with_name("titans")
    ran = subprocess.run(
        [str(titans), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert f"revision {head_revision()}" in ran.stdout

    db = titans_home / "titans.db"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    assert {"audit_entries", "approval_requests", "predictions", "alerts", "ab_tests"} <= tables
    assert version == head_revision()

    again = runner.invoke(app, ["db", "upgrade"])
    assert again.exit_code == 0, again.output
    assert "already at revision" in again.output


def test_titans_db_current_fails_until_upgraded(titans_home: Path) -> None:
    before = runner.invoke(app, ["db", "current"])
    assert before.exit_code == 1
    assert "titans db upgrade" in before.output
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    after = runner.invoke(app, ["db", "current"])
    assert after.exit_code == 0
    assert "(head)" in after.output


def test_audit_verify_and_show(settings: Settings, titans_home: Path) -> None:
    audit = AuditLogger(settings)
    for version in ("1", "2", "3"):
        audit.log("promote", "ann", "titans-category", version, {"to": "production"})
    head = audit.head()

    ok = runner.invoke(app, ["governance", "audit", "verify"])
    assert ok.exit_code == 0, ok.output
    assert "audit chain ok" in ok.output and "3 entries" in ok.output
    assert head in ok.output.replace("\n", "")

    shown = runner.invoke(app, ["governance", "audit", "show", "--limit", "2"])
    assert shown.exit_code == 0, shown.output
    assert "promote" in shown.output
    assert "│ 2 " in shown.output and "│ 3 " in shown.output and "│ 1 " not in shown.output

    with sqlite3.connect(titans_home / "titans.db") as conn:
        conn.execute("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 2")
    broken = runner.invoke(app, ["governance", "audit", "verify"])
    assert broken.exit_code == 1
    assert "BROKEN at entry 2" in broken.output
    assert "mallory" in broken.output  # the broken entry is shown as stored


def test_audit_verify_against_an_external_head(settings: Settings, titans_home: Path) -> None:
    audit = AuditLogger(settings)
    audit.log("promote", "ann")
    kept = audit.log("promote", "ann").entry_hash
    with sqlite3.connect(titans_home / "titans.db") as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 2")
        conn.execute(
            "UPDATE audit_heads SET seq = 1, head_hash = (SELECT entry_hash FROM audit_entries)"
        )
    assert runner.invoke(app, ["governance", "audit", "verify"]).exit_code == 0
    result = runner.invoke(app, ["governance", "audit", "verify", "--expected-head", kept])
    assert result.exit_code == 1
    assert "expected head" in result.output


def test_audit_show_on_an_empty_trail(titans_home: Path) -> None:
    result = runner.invoke(app, ["governance", "audit", "show"])
    assert result.exit_code == 0
    assert "empty" in result.output
