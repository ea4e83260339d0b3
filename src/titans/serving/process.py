"""Servers as child processes on a loopback port (`titans serve`, or any HTTP server): started,
waited for, stopped by PID.

Used by the demo (and anything else that needs a real API process next to it). The child runs
in its own session, so stopping it signals its whole process group and nothing lingers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess  # nosec B404 - runs our own console script with fixed arguments
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from titans.errors import DeploymentError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind it soon: another process may take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A child process serving HTTP on loopback: started in its own session, waited for until
    ``ready_url`` answers 200, stopped by PID with its whole process group; a context manager.

    ``env`` is the child's whole environment (None: this process's).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.argv = list(argv)
        self.ready_url = ready_url
        self.log_path = log_path
        self.env = env
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def name(self) -> str:
        return Path(self.argv[0]).name

    def start(self) -> Self:
        """Start the child and wait until ``ready_url`` answers 200 (DeploymentError if not)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # nosec B603 - argv from our callers, no shell
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeploymentError(
                    f"{self.name} exited with {self.proc.returncode} before it was ready; "
                    f"see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.ready_url, timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise DeploymentError(
            f"{self.name} did not become ready within {self.startup_timeout:.0f} s; "
            f"see {self.log_path}"
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the child's process group, then wait (SIGKILL after ``timeout``)."""
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

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the child's output (for error messages)."""
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text("utf-8", errors="replace")[-chars:]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ApiProcess(ServerProcess):
    """A `titans serve` child on 127.0.0.1 (SIGTERM drains its prediction log).

    ``env`` is added to a copy of this process's environment without its ``TITANS_*`` and
    ``MLFLOW_*`` variables, so the child sees exactly the settings handed to it.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        log_path: Path,
        port: int | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.port = port or free_port()
        child_env = {
            k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))
        }
        child_env.update(env)
        titans = Path(sys.executable).with_name("titans")
        argv = [str(titans), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(
            [*argv, "--log-level", "warning"],
            ready_url=f"{self.url}/ready",
            log_path=log_path,
            env=child_env,
            startup_timeout=startup_timeout,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def name(self) -> str:
        return "titans serve"
