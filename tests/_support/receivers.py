"""Local HTTP receivers standing in for SaaS endpoints (Slack, PagerDuty, webhooks) in tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[Received] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def bodies(self, path: str) -> list[Any]:
        with self.lock:
            return [r.body for r in self.received if r.path == path]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        kind = self.headers.get("Content-Type", "")
        with self.server.lock:
            self.server.received.append(
                Received(self.path, kind, json.loads(raw), dict(self.headers.items()))
            )
        code = self.server.status.get(self.path, 202 if self.path == "/pagerduty" else 200)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}' if code < 300 else b'{"error": "boom"}')

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def recording_server() -> Iterator[Recorder]:
    """A Recorder on 127.0.0.1 (free port), served from a thread and stopped on exit."""
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
