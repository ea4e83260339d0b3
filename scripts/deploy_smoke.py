"""CI's deployment smoke test: a real `titans serve`, then `titans deploy production` against it.

Run after `titans demo` (or any run that left a production version of the category model in
TITANS_HOME): it starts the API on a free loopback port with a fresh admin key, deploys the
version production already names (the command then only rolls out and waits until the API
reports it on /models), checks the exit code, and stops the server by its PID.

Usage: python scripts/deploy_smoke.py [--model category] [--timeout 120]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess  # nosec B404 - fixed argv of this project's own CLI
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from titans.config import Settings
from titans.registry.registry_manager import ModelRegistryManager
from titans.serving.auth import hash_key


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"titans serve exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=2) as response:  # nosec B310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"titans serve did not become ready at {url} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="category")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    settings = Settings()
    name = settings.registered_name(args.model)
    version = ModelRegistryManager(settings).get_alias_version(name, "production")
    if version is None:
        raise SystemExit(f"{name} has no production version; run `titans demo` first")
    raw = secrets.token_urlsafe(32)
    key = {"name": "ci-deploy", "key_sha256": hash_key(raw), "roles": ["admin", "predict"]}
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    titans = str(Path(sys.executable).with_name("titans"))
    env = {**os.environ, "TITANS_API_KEYS": json.dumps([key])}
    server = subprocess.Popen(  # stopped by PID below  # nosec B603
        [titans, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        start_new_session=True,
    )
    try:
        _wait_ready(url, server, args.timeout)
        command = [titans, "deploy", "production", args.model, str(version), "--api-url", url]
        command += ["--api-key", raw, "--timeout", str(args.timeout), "--as", "ci"]
        command += ["--reason", "CI deployment smoke test"]
        deploy = subprocess.run(command, env=env, check=False)  # nosec B603
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    return deploy.returncode


if __name__ == "__main__":
    raise SystemExit(main())
