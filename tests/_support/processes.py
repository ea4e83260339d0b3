"""Real servers a test starts on loopback (prometheus, alertmanager, exporters): started in their
own session, waited for over HTTP, stopped by PID with their whole process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx
import pytest


def require_tool(name: str, install: str, *also: Path) -> str:
    """Path of the executable ``name`` (PATH first, then ``also``); skip, or fail under CI."""
    for candidate in (shutil.which(name), *map(str, also)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{name} is missing; CI must install it: {install}")
    pytest.skip(f"{name} is not installed ({install})")


class Server:
    """One child process serving HTTP on loopback; a context manager that stops it on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        timeout: float = 90.0,
    ) -> None:
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = env
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited early: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"{self.argv[0]} not ready in {self.timeout:.0f} s: {self.log()}")

    def log(self, tail: int = 3000) -> str:
        text = self.log_path.read_text("utf-8", errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def stop(self, timeout: float = 15.0) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return proc.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
