"""`titans serve` as a child process on a loopback port: started, waited for, stopped by PID.

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
from pathlib import Path
from types import TracebackType

import httpx

from titans.errors import DeploymentError


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind it soon: another process may take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ApiProcess:
    """A `titans serve` child on 127.0.0.1; a context manager that stops it on exit.

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
        self.env = env
        self.log_path = log_path
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> ApiProcess:
        """Start the child and wait until ``/ready`` answers 200 (DeploymentError if not)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
        env.update(self.env)
        titans = Path(sys.executable).with_name("titans")
        argv = [str(titans), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # nosec B603 - fixed argv, no shell
                [*argv, "--log-level", "warning"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeploymentError(
                    f"titans serve exited with {self.proc.returncode} before it was ready; "
                    f"see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ready", timeout=2.0).status_code == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise DeploymentError(
            f"titans serve did not become ready within {self.startup_timeout:.0f} s; "
            f"see {self.log_path}"
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the child's process group (it drains its prediction log), then wait."""
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

    def __enter__(self) -> ApiProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
