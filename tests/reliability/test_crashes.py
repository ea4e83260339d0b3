"""Crashes at the worst moment of a promotion: between "alias moved" and "audit written".

Promotion moves the alias first and writes its audit entry second. If the audit write fails,
the move is undone and the promotion raises; if the process dies in between (SIGKILL), the
alias stands without an entry, and `titans governance audit verify` must say so (exit 1)
until the move is made again through an audited path.

SIGTERM during load (drains the prediction log) is in test_load_with_swaps.py; SIGKILL of a
retrain mid-training is tests/retraining/test_pipeline.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _support.figures import Figures
from _support.serving import promote, serving_settings
from titans.cli import _register_groups
from titans.cli import app as cli_app
from titans.config import Settings
from titans.governance.audit import AuditLogger
from titans.governance.governance import ModelGovernanceManager
from titans.registry.registry_manager import ModelRegistryManager
from titans.store import StoreError

pytestmark = [pytest.mark.slow]

CATEGORY = "titans-category"


def _verify(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.setenv("TITANS_HOME", str(home))
    _register_groups()
    result = CliRunner().invoke(cli_app, ["governance", "audit", "verify"], terminal_width=300)
    return result.exit_code, " ".join(result.output.split())


def _approve(settings: Settings, version: str) -> None:
    governance = ModelGovernanceManager(settings)
    request_id = governance.request_model_approval(f"models:/{CATEGORY}/{version}", "t", "ann")
    governance.approve(request_id, "bob", "ok")


def test_a_failed_audit_write_undoes_the_alias_move(
    registry_copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    home = registry_copy("audit-fails")
    settings = serving_settings(home, [])
    manager = ModelRegistryManager(settings)
    _approve(settings, "2")
    real_log = AuditLogger.log

    def failing_log(self: AuditLogger, action: str, *args: object, **kwargs: object) -> object:
        if action == "registry.promoted":
            raise StoreError("ops store unreachable (injected by the test)")
        return real_log(self, action, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(AuditLogger, "log", failing_log)
    with pytest.raises(StoreError, match="injected"):
        manager.promote_model(CATEGORY, "2", "production", actor="ann")
    monkeypatch.setattr(AuditLogger, "log", real_log)
    assert manager.get_alias_version(CATEGORY, "production") == "1"  # the move was undone
    code, output = _verify(home, monkeypatch)
    figures.record("crash: audit write fails", "production alias after", "1 (move undone)")
    figures.record("crash: audit write fails", "`audit verify` exit code", code)
    assert code == 0, output
    assert "registry aliases agree with the audit trail" in output


def test_sigkill_between_alias_move_and_audit_is_caught_by_verify(
    registry_copy: Callable[[str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: Figures,
) -> None:
    home = registry_copy("audit-killed")
    settings = serving_settings(home, [])
    _approve(settings, "2")
    code, output = _verify(home, monkeypatch)
    assert code == 0, output  # agreeing before the crash
    script = tmp_path / "promote_and_die.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            sys.path.insert(0, {str(Path(__file__).parents[1])!r})
            from pathlib import Path
            from _support.serving import serving_settings
            from titans.governance.audit import AuditLogger
            from titans.registry.registry_manager import ModelRegistryManager

            real_log = AuditLogger.log

            def log(self, action, *args, **kwargs):
                if action == "registry.promoted":  # the alias has moved: die before the entry
                    os.kill(os.getpid(), signal.SIGKILL)
                return real_log(self, action, *args, **kwargs)

            AuditLogger.log = log
            # a short lease: after the kill it expires by itself, as a crashed holder's does
            settings = serving_settings(Path({str(home)!r}), [])
            manager = ModelRegistryManager(settings, lock_ttl_seconds=5.0)
            manager.promote_model({CATEGORY!r}, "2", "production", actor="ann")
            sys.exit(3)  # not reached: the promotion must have died at the audit write
            """
        ),
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
    proc = subprocess.run(  # bounded by its timeout
        [sys.executable, str(script)], env=env, capture_output=True, timeout=300, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode(errors="replace")[-2000:]
    manager = ModelRegistryManager(settings)
    assert manager.get_alias_version(CATEGORY, "production") == "2"  # moved, never audited
    assert not [e for e in AuditLogger(settings).entries() if e.action == "registry.promoted"
                and e.model_version == "2"]  # fmt: skip
    crashed_code, crashed = _verify(home, monkeypatch)
    assert crashed_code == 1, crashed
    assert "titans-category@production is version 2 in the registry" in crashed
    assert "set it to 1" in crashed
    # recovery: put production back through the audited path; the two agree again
    assert manager.rollback_model(CATEGORY, "1", "ann", "undo the unaudited move")
    recovered_code, recovered = _verify(home, monkeypatch)
    name = "crash: SIGKILL between alias move and audit"
    figures.record(name, "`audit verify` exit code after crash / after rollback",
                   f"{crashed_code} / {recovered_code}")  # fmt: skip
    assert recovered_code == 0, recovered
    # the next promotion of 2 is audited as usual
    promote(settings, CATEGORY, "2")
    assert _verify(home, monkeypatch)[0] == 0
