"""Real servers a test starts on loopback (prometheus, alertmanager, exporters) and the tools
they need: titans.serving.process.ServerProcess starts them in their own session, waits for them
over HTTP and stops them by PID with their whole process group."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from titans.serving.process import ServerProcess


def require_tool(name: str, install: str, *also: Path) -> str:
    """Path of the executable ``name`` (PATH first, then ``also``); skip, or fail under CI."""
    for candidate in (shutil.which(name), *map(str, also)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is missing; CI must install it: {install}")
    pytest.skip(f"{name} is not installed ({install})")


#: a child process serving HTTP on loopback (prometheus, alertmanager, exporters, ...)
Server = ServerProcess
