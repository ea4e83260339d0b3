"""The tools real-server tests need (prometheus, alertmanager, checkov, ...): found, or the test
skips on a workstation and fails under CI. The servers themselves run as
titans.serving.process.ServerProcess."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_tool(name: str, install: str, *also: Path) -> str:
    """Path of the executable ``name`` (PATH first, then ``also``); skip, or fail under CI."""
    for candidate in (shutil.which(name), *map(str, also)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is missing; CI must install it: {install}")
    pytest.skip(f"{name} is not installed ({install})")
