"""Replay generated transactions through a running API as live traffic, feedback arriving late,
and a local webhook receiver that records the alerts the platform sends.

The demo uses both: days of a generated frame are sent day by day to ``/predict/batch``; the
actual outcomes of day ``d`` are posted to ``/feedback`` only once day ``d + delay`` has been
replayed, as labels arrive in real life; every request that fails is counted, never retried
silently.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx
import numpy as np
import pandas as pd

from titans.store.models import utcnow

#: what the models are sent: (model, rows) — category and amount predict expenses
EXPENSE_MODELS = ("category", "amount")
#: fields of the webhook channel's JSON document (titans.monitoring.alerts.channels)
WEBHOOK_FIELDS = ("version", "status", "severity", "title", "text", "fingerprint", "labels")


@dataclass(frozen=True)
class ReceivedAlert:
    """One JSON document POSTed to the local receiver; ``valid`` when it has the webhook shape."""

    path: str
    body: Any
    valid: bool


class LocalReceiver:
    """An HTTP server on 127.0.0.1 (free port) recording the JSON alerts POSTed to it."""

    def __init__(self) -> None:
        self.received: list[ReceivedAlert] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0") or 0)
                raw = self.rfile.read(min(length, 1_000_000))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                valid = isinstance(body, dict) and all(k in body for k in WEBHOOK_FIELDS)
                with receiver._lock:
                    receiver.received.append(ReceivedAlert(self.path, body, valid))
                self.send_response(200 if valid else 400)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if valid else b'{"error": "not a titans alert"}')

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def alerts(self) -> list[ReceivedAlert]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> LocalReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@dataclass
class ReplayWindow:
    """Days [first_day, last_day] replayed between wall-clock times ``start`` and ``end``."""

    first_day: int
    last_day: int
    first_date: date
    last_date: date
    start: datetime
    end: datetime
    predictions: dict[str, int] = field(default_factory=dict)
    feedback: int = 0
    failed: int = 0

    @property
    def label(self) -> str:
        return f"days {self.first_day}–{self.last_day}"

    def extend(self, later: ReplayWindow) -> None:
        """Take in the window replayed right after this one (its days, requests, time)."""
        self.last_day, self.last_date, self.end = later.last_day, later.last_date, later.end
        for model, count in later.predictions.items():
            self.predictions[model] = self.predictions.get(model, 0) + count
        self.feedback += later.feedback
        self.failed += later.failed


def _body(frame: pd.DataFrame, *, with_category: bool) -> list[dict[str, Any]]:
    """Transactions in the API's JSON shape (vectorised column conversion, then records).

    The category is an input of the amount and anomaly models, and the label of the category
    model: that one is never sent it.
    """
    out = pd.DataFrame(
        {
            "date": pd.to_datetime(frame["date"]).dt.strftime("%Y-%m-%d"),
            "type": frame["type"].astype(str),
            "description": frame["description"].fillna("").astype(str),
            "amount": pd.to_numeric(frame["amount"]).astype(float),
            "payment_method": frame["payment_method"].astype(object),
            "reference": frame["reference"].astype(object),
            "status": frame["status"].astype(object),
        }
    )
    if with_category:
        out["category"] = frame["category"].astype(object)
    out = out.astype(object).where(out.notna(), None)
    return list(out.to_dict("records"))  # type: ignore[arg-type]


class TrafficReplayer:
    """Sends a frame's days to the API; posts each day's outcomes ``feedback_delay_days`` later."""

    def __init__(
        self,
        url: str,
        api_key: str,
        frame: pd.DataFrame,
        *,
        start_date: date,
        feedback_delay_days: int = 3,
        batch_size: int = 1_000,
        workers: int = 4,
        timeout: float = 30.0,
    ) -> None:
        offset = pd.to_datetime(frame["date"]) - pd.Timestamp(start_date)
        self.frame = frame.assign(_day=offset.dt.days.to_numpy())
        self.start_date = start_date
        self.feedback_delay_days = feedback_delay_days
        self.batch_size = batch_size
        self.client = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feedback")
        self._pending: deque[tuple[int, list[tuple[str, dict[str, Any]]]]] = deque()
        self.failures: list[str] = []
        self.sent = 0
        self.feedback_sent = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    def _post(self, path: str, body: Any) -> httpx.Response | None:
        try:
            response = self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            self.failures.append(f"{path}: {type(exc).__name__}: {exc}")
            return None
        if response.status_code != 200:
            self.failures.append(f"{path}: {response.status_code} {response.text[:200]}")
            return None
        return response

    def _predict(self, model: str, rows: pd.DataFrame, batch_size: int, tag: str) -> list[str]:
        """Batches of ``batch_size``; each batch carries an entity id of its own, so an A/B
        test running on the model assigns every batch (one customer's requests) its arm."""
        ids: list[str] = []
        for k, begin in enumerate(range(0, len(rows), batch_size)):
            chunk = rows.iloc[begin : begin + batch_size]
            body = _body(chunk, with_category=model != "category")
            body[0]["entity_id"] = f"{tag}-{k}"
            response = self._post("/predict/batch", {"model": model, "transactions": body})
            if response is None:
                ids.extend([""] * len(chunk))
                continue
            ids.extend(item["prediction_id"] for item in response.json()["predictions"])
        self.sent += len(rows)
        return ids

    def _outcomes(self, model: str, rows: pd.DataFrame, ids: Sequence[str]) -> Iterable[Any]:
        if model == "category":
            actual: Iterable[dict[str, Any]] = ({"category": c} for c in rows["category"])
        else:  # amount: its outcome is the absolute amount
            amounts = np.abs(pd.to_numeric(rows["amount"]).to_numpy(dtype=float))
            actual = ({"amount": float(a)} for a in amounts)
        return [(pid, outcome) for pid, outcome in zip(ids, actual, strict=True) if pid]

    def _send_feedback(self, day: int) -> int:
        sent = 0
        while self._pending and self._pending[0][0] <= day - self.feedback_delay_days:
            _, items = self._pending.popleft()
            results = list(
                self._pool.map(
                    lambda item: self._post(
                        "/feedback", {"prediction_id": item[0], "actual": item[1]}
                    ),
                    items,
                )
            )
            sent += sum(1 for r in results if r is not None)
        self.feedback_sent += sent
        return sent

    def replay(
        self,
        first_day: int,
        last_day: int,
        models: Sequence[str],
        batch_sizes: Mapping[str, int] | None = None,
    ) -> ReplayWindow:
        """Replay days [first_day, last_day]; post the feedback that has come due by then.

        ``batch_sizes`` overrides the batch size per model (small batches: many entities).
        """
        sizes = dict(batch_sizes or {})
        failed_before = len(self.failures)
        window = ReplayWindow(
            first_day,
            last_day,
            self.start_date + timedelta(days=first_day),
            self.start_date + timedelta(days=last_day),
            utcnow(),
            utcnow(),
        )
        for day in range(first_day, last_day + 1):
            rows = self.frame[self.frame["_day"] == day]
            expenses = rows[rows["type"] == "Expense"]
            labelled: list[tuple[str, dict[str, Any]]] = []
            for model in models:
                chosen = expenses if model in EXPENSE_MODELS else rows
                if chosen.empty:
                    continue
                ids = self._predict(
                    model, chosen, sizes.get(model, self.batch_size), f"day{day}-{model}"
                )
                window.predictions[model] = window.predictions.get(model, 0) + len(chosen)
                if model in ("category", "amount"):
                    labelled.extend(self._outcomes(model, chosen, ids))  # type: ignore[arg-type]
            self._pending.append((day, labelled))
            window.feedback += self._send_feedback(day)
        window.end = utcnow()
        window.failed = len(self.failures) - failed_before
        return window

    def __enter__(self) -> TrafficReplayer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
