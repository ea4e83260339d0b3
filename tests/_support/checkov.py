"""checkov as the infrastructure tests run it: its own venv (.tools/checkov, it replaces the
project's hcl2 module), no downloads, one framework, the JSON report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from _support.processes import require_tool

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "make tools (checkov in its own venv at .tools/checkov)"


def checkov_report(directory: Path, framework: str) -> dict[str, Any]:
    """checkov's report on ``directory`` for one framework (terraform, kubernetes, ...)."""
    checkov = require_tool("checkov", INSTALL, ROOT / ".tools" / "checkov" / "bin" / "checkov")
    argv = [checkov, "-d", str(directory), "--skip-download", "--framework", framework]
    result = subprocess.run(
        [*argv, "--compact", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    # one framework gives one object; several give a list
    if isinstance(report, list):
        assert len(report) == 1, [r.get("check_type") for r in report]
        report = report[0]
    assert isinstance(report, dict)
    return report
