"""The prediction log: served predictions go to a bounded queue; a thread writes them in batches.

The request path only calls :meth:`PredictionLogWriter.log`, a non-blocking put that returns
False (and counts a drop) when the queue is full. A background thread writes batches of up to
``batch_size`` rows into the ops store's ``predictions`` table at least every ``flush_interval``
seconds. Inserts are idempotent on ``prediction_id`` (ON CONFLICT DO NOTHING), so a batch that is
retried after a failure whose commit actually went through never leaves a duplicate.

When the store is down the writer keeps its batch and retries with exponential backoff, while
the queue keeps accepting records until it is full. :meth:`PredictionLogWriter.stop` (the app's
SIGTERM path) drains the queue within a timeout; whatever could not be written is counted as
dropped and logged as an error. Nothing is lost silently: every record accepted by ``log`` is
eventually written, or counted in ``titans_prediction_log_dropped_total``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from titans.config import Settings
from titans.errors import ConfigError
from titans.serving.metrics import ServingMetrics
from titans.store import Store, StoreError
from titans.store.models import Prediction, utcnow

log = logging.getLogger(__name__)

#: wakes the writer without being a record (stop() puts it so the writer need not poll)
_WAKE = object()


def _new_prediction_id() -> str:
    return uuid.uuid4().hex


@dataclass(kw_only=True, slots=True)
class PredictionRecord:
    """One served prediction, as written to the ``predictions`` table.

    ``features`` holds the raw input fields, ``prediction`` the output (class, probabilities,
    interval, ...); both must be JSON-serialisable plain Python values.
    """

    model_name: str
    model_version: str
    features: dict[str, Any]
    prediction: dict[str, Any]
    latency_ms: float
    prediction_id: str = field(default_factory=_new_prediction_id)
    ts: datetime = field(default_factory=utcnow)
    alias: str | None = None
    arm: str | None = None
    entity_id: str | None = None
    score: float | None = None

    def to_row(self) -> dict[str, Any]:
        """The column values of this record's row."""
        return {
            "prediction_id": self.prediction_id,
            "ts": self.ts,
            "model_name": self.model_name,
            "model_version": str(self.model_version),
            "alias": self.alias,
            "arm": self.arm,
            "entity_id": self.entity_id,
            "features": self.features,
            "prediction": self.prediction,
            "score": None if self.score is None else float(self.score),
            "latency_ms": float(self.latency_ms),
        }


@dataclass(frozen=True)
class LogStats:
    """Counts since start: waiting (queued), written, dropped, and failed batch writes."""

    queued: int
    written: int
    dropped: int
    failures: int


def _is_outage(exc: BaseException) -> bool:
    """True when the store (not the data) is the problem, so the batch is worth retrying."""
    if isinstance(exc, StoreError):
        return True
    if isinstance(exc, IntegrityError | DataError):
        return False
    # connection refused, readonly file, missing table, server gone: all DBAPIError
    return isinstance(exc, DBAPIError)


class PredictionLogWriter:
    """Writes prediction records to the ops store off the request path."""

    def __init__(
        self,
        store: Store,
        queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        metrics: ServingMetrics | None = None,
        *,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or not flush_interval > 0:
            raise ConfigError(
                f"prediction log needs queue_size >= 1, batch_size >= 1, flush_interval > 0 "
                f"(got {queue_size}, {batch_size}, {flush_interval}); fix TITANS_PREDICTION_LOG_*"
            )
        self.store = store
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.metrics = metrics if metrics is not None else ServingMetrics()
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        # one slot more than records, for the _WAKE sentinel
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size + 1)
        self._accepting = True
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()  # ends a retry back-off early: stop() only
        self._batch_ready = threading.Event()  # ends a flush interval early: full batch, stop()
        self._deadline: float | None = None
        self._pending: list[PredictionRecord] = []
        self._finished = False
        self._finish_lock = threading.Lock()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._written = 0
        self._dropped = 0
        self._failures = 0
        self._last_drop_warning = 0.0
        self.metrics.prediction_log_queue_depth.set_function(self._queue.qsize)

    @classmethod
    def from_settings(
        cls, store: Store, settings: Settings, metrics: ServingMetrics | None = None
    ) -> PredictionLogWriter:
        """A writer sized by the TITANS_PREDICTION_LOG_* settings."""
        return cls(
            store,
            queue_size=settings.prediction_log_queue_size,
            batch_size=settings.prediction_log_batch_size,
            flush_interval=settings.prediction_log_flush_seconds,
            metrics=metrics,
        )

    # ------------------------------------------------------------------ request path

    def log(self, record: PredictionRecord) -> bool:
        """Queue one record without blocking; False (and a counted drop) when it cannot be."""
        if not self._accepting:
            self._drop(1, "stopped")
            return False
        size = self._queue.qsize()
        if size >= self.queue_size:
            self._drop(1, "queue_full")
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._drop(1, "queue_full")
            return False
        if size + 1 >= self.batch_size:
            self._batch_ready.set()  # a full batch waits: flush before the interval ends
        return True

    def _drop(self, n: int, reason: str) -> None:
        with self._lock:
            self._dropped += n
            dropped = self._dropped
            warn = reason == "queue_full" and time.monotonic() - self._last_drop_warning > 10.0
            if warn:
                self._last_drop_warning = time.monotonic()
        self.metrics.prediction_log_dropped.labels(reason=reason).inc(n)
        if warn:
            log.warning(
                "prediction log queue is full (%d records): dropping predictions, %d dropped "
                "so far; the ops store is down or too slow",
                self.queue_size,
                dropped,
            )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PredictionLogWriter:
        """Start the background writer (idempotent); returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="titans-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> LogStats:
        """Stop accepting, write everything queued within ``timeout`` s, count the rest dropped."""
        self._accepting = False
        self._deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        self._batch_ready.set()
        # with a full queue the writer is busy anyway: it sees the flag without the sentinel
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(_WAKE)
        if self._thread is None:  # never started: write what was queued, here and now
            self._run()
        else:
            self._thread.join(timeout + 1.0)
            if self._thread.is_alive():  # stuck in a write the store never answered
                self._finish(in_flight=self._in_flight)
        return self.stats()

    def stats(self) -> LogStats:
        """What the writer has done so far."""
        with self._lock:
            return LogStats(
                queued=self._queue.qsize() + (0 if self._finished else len(self._pending)),
                written=self._written,
                dropped=self._dropped,
                failures=self._failures,
            )

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug must not stop the log silently: say so, count what is left
            log.exception("prediction log writer stopped unexpectedly")
        self._finish(in_flight=0)

    def _loop(self) -> None:
        backoff = self.retry_initial
        while True:
            if len(self._pending) < self.batch_size:
                self._fill()
            if self._pending:
                if self._write(self._pending):
                    self._pending = []
                    backoff = self.retry_initial
                else:
                    if self._past_deadline():
                        break
                    # jittered, so replicas retrying one recovering store spread out
                    self._sleep(backoff * (0.5 + random.random()))  # nosec B311
                    backoff = min(backoff * 2, self.retry_max)
                    continue
            if self._stopping.is_set() and (self._queue.empty() or self._past_deadline()):
                break

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _sleep(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        if self._wake.wait(seconds):
            self._wake.clear()

    def _fill(self) -> None:
        """Wait for the flush interval (or a full batch, or stop), then move queued records into
        the pending batch.

        The writer never wakes per record: a thread woken on every request would trade the
        GIL with the request path each time, which costs more than the write itself.
        """
        pending = self._pending
        if not self._stopping.is_set() and self._queue.qsize() + len(pending) < self.batch_size:
            self._batch_ready.wait(self.flush_interval)
        self._batch_ready.clear()
        while len(pending) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _WAKE:
                pending.append(item)

    def _write(self, batch: list[PredictionRecord]) -> bool:
        """Insert the batch; True when done (written or the bad rows counted as dropped)."""
        self._in_flight = len(batch)
        try:
            try:
                self._insert([r.to_row() for r in batch])
            except Exception as exc:
                if _is_outage(exc):
                    self._failed(exc, len(batch))
                    return False
                return self._write_one_by_one(batch)
            self._written_n(len(batch))
            return True
        finally:
            self._in_flight = 0

    def _write_one_by_one(self, batch: list[PredictionRecord]) -> bool:
        """Isolate the records the store refuses, so one bad record never blocks the log."""
        # error path only: a batch holding a record the store refuses
        for done, record in enumerate(batch):
            try:
                self._insert([record.to_row()])
                self._written_n(1)
            except Exception as exc:
                if _is_outage(exc):
                    del batch[:done]
                    self._failed(exc, len(batch))
                    return False
                log.error(
                    "prediction %s of %s v%s cannot be stored and is dropped: %s",
                    record.prediction_id,
                    record.model_name,
                    record.model_version,
                    str(exc).splitlines()[0],
                )
                self._drop(1, "invalid")
        return True

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        self.store.ensure_schema()
        with self.store.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                stmt: Any = pg_insert(Prediction).on_conflict_do_nothing(
                    index_elements=["prediction_id"]
                )
            else:
                stmt = sqlite_insert(Prediction).on_conflict_do_nothing(
                    index_elements=["prediction_id"]
                )
            conn.execute(stmt, rows)

    def _written_n(self, n: int) -> None:
        with self._lock:
            self._written += n
        self.metrics.prediction_log_written.inc(n)

    def _failed(self, exc: BaseException, n: int) -> None:
        with self._lock:
            self._failures += 1
            failures = self._failures
        self.metrics.prediction_log_write_failures.inc()
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        # the first failure and then every 10th, so an outage neither hides nor floods the log
        if failures == 1 or failures % 10 == 0:
            log.warning(
                "prediction log: writing %d records failed (%s); keeping them and retrying "
                "(%d failed writes so far)",
                n,
                reason,
                failures,
            )

    def _take_all(self) -> int:
        n = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return n
            if item is not _WAKE:
                n += 1

    def _finish(self, in_flight: int) -> None:
        """Count what is left as dropped, once: by the writer as it exits, or by a stop() that
        gave up on a writer stuck in a write (then the batch in that write is counted too)."""
        with self._finish_lock:
            if self._finished:
                return
            self._finished = True
            lost = len(self._pending) + self._take_all()
        if lost:
            self._count_lost(lost, in_flight)

    def _count_lost(self, n: int, in_flight: int) -> None:
        self._drop(n, "shutdown")
        log.error(
            "prediction log: %d records could not be written before shutdown and are dropped "
            "(%d of them in a write the store never confirmed); check the ops store at %r",
            n,
            in_flight,
            self.store,
        )
