"""Fixtures for tests against real servers started on 127.0.0.1 and stopped by PID.

- ``free_port``: a callable returning a TCP port free on 127.0.0.1 right now.
- ``require_tool``: a callable ``(name) -> path`` that skips the test when a binary is missing,
  but fails it under CI=true, where .ci/run must have installed everything.
- ``mlflow_server``: URL of a real ``mlflow server`` (sqlite store, proxied artifacts in a temp
  folder), shared by the session (one per xdist worker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

# generous: the server imports MLflow twice and migrates its database, slow on a busy machine
SERVER_START_TIMEOUT_S = 120.0


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_tool(name: str) -> str:
    """Path of a binary on PATH or beside this interpreter (the venv's bin)."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (not on PATH nor in {beside.parent})"
    if _in_ci():
        pytest.fail(f"{message}; .ci/run must install it", pytrace=False)
    pytest.skip(message)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a server started with start_new_session=True: its group by its PID, then wait."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    else:  # the leader is gone; make sure no worker of its group lingers
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_until_healthy(
    proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = SERVER_START_TIMEOUT_S
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log tail if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"server exited with {proc.returncode} before answering {url}:\n"
                + log.read_text(errors="replace")[-3000:],
                pytrace=False,
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    stop_process(proc)
    pytest.fail(
        f"server did not answer {url} within {timeout:.0f} s:\n"
        + log.read_text(errors="replace")[-3000:],
        pytrace=False,
    )


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for a port that is free on 127.0.0.1 (bind to it soon: another may take it)."""
    return _free_port


@pytest.fixture
def require_tool() -> Callable[[str], str]:
    """Call it with a binary name: its path, or a skip (a failure under CI=true)."""
    return _require_tool


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a sqlite store; yields its base URL."""
    mlflow_bin = _require_tool("mlflow")
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    log = root / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
    with log.open("wb") as log_file:
        proc = subprocess.Popen(  # stopped by PID (its process group) in stop_process
            [
                mlflow_bin,
                "server",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, f"{url}/health", log)
        yield url
    finally:
        stop_process(proc)
