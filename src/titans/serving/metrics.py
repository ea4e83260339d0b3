"""Prometheus metrics of the serving side, in one registry per app instance.

Each :class:`ServingMetrics` owns its own ``CollectorRegistry`` (never the process-global
one), so two apps — or two tests — in one process never collide; the app exposes
``metrics.registry`` on ``/metrics``.

>>> m = ServingMetrics()
>>> m.rate_limited.inc()
>>> m.registry.get_sample_value("titans_rate_limited_total")
1.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: why a logged prediction never reached the store (bounded label set)
DROP_REASONS: tuple[str, ...] = ("queue_full", "shutdown", "invalid", "stopped")


class ServingMetrics:
    """The metric objects the prediction log writer and the rate limiter update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.prediction_log_queue_depth = Gauge(
            "titans_prediction_log_queue_depth",
            "Predictions waiting in memory to be written to the ops store.",
            registry=self.registry,
        )
        self.prediction_log_dropped = Counter(
            "titans_prediction_log_dropped_total",
            "Predictions that were never written to the ops store, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for reason in DROP_REASONS:  # export zeros, so alerts on rate() work from the start
            self.prediction_log_dropped.labels(reason=reason)
        self.prediction_log_written = Counter(
            "titans_prediction_log_written_total",
            "Predictions written to the ops store.",
            registry=self.registry,
        )
        self.prediction_log_write_failures = Counter(
            "titans_prediction_log_write_failures_total",
            "Batch writes of the prediction log that failed and will be retried.",
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "titans_rate_limited_total",
            "Requests refused with 429 because their API key ran out of tokens.",
            registry=self.registry,
        )
        self.rate_limiter_fail_open = Counter(
            "titans_rate_limiter_fail_open_total",
            "Requests let through unchecked because the shared rate-limit store was unreachable.",
            registry=self.registry,
        )
