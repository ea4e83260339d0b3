"""A real `mlflow server` over a given sqlite registry, which a test can kill and restart on the
same port (the registry-outage tests); stopped by PID, bound to 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType

from integration.conftest import _require_tool, stop_process, wait_until_healthy
from titans.serving.process import free_port


class MlflowServer:
    """`mlflow server --backend-store-uri sqlite:///<db>` on 127.0.0.1; a context manager."""

    def __init__(self, db: Path, artifacts: Path, log: Path, port: int | None = None) -> None:
        self.db, self.artifacts, self.log = db, artifacts, log
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MlflowServer:
        """Start (or restart) the server on its port and wait for /health."""
        argv = [
            _require_tool("mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.db}",
            "--artifacts-destination",
            str(self.artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING")}
        with self.log.open("ab") as log_file:
            self.proc = subprocess.Popen(  # stopped by PID (its process group)
                argv,
                cwd=self.db.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1
        wait_until_healthy(self.proc, f"{self.url}/health", self.log)
        return self

    def kill(self) -> None:
        """SIGKILL the server's process group: an outage, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc is not None:
            stop_process(self.proc)
