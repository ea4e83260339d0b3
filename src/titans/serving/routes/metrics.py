"""``GET /metrics`` (Prometheus text) and the API's own request and prediction metrics.

Every label set is bounded: routes are route templates (``/predict/{model}``, or
``unmatched``), models and versions are those loaded, the predicted class is one of the
expense categories (or ``other``) and only for the category model, error types are a fixed map
of status codes plus ``shadow_failed`` (a shadow version that could not score a request).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titans.data.columns import EXPENSE_CATEGORIES
from titans.serving.deps import AnyKey, ModelsDep

router = APIRouter(tags=["health"])

#: error type label per status code (anything else is ``http_<code>``)
ERROR_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}
_KNOWN_CLASSES = frozenset(EXPENSE_CATEGORIES)


class ApiMetrics:
    """Request latency, predictions, errors and what is serving, in the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_duration = Histogram(
            "titans_request_duration_seconds",
            "Time to answer one HTTP request, by route template, model, version and status.",
            ["route", "model", "version", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
        self.predictions = Counter(
            "titans_predictions_total",
            "Predictions served, by model, version, A/B arm and predicted class (category only).",
            ["model", "version", "arm", "predicted_class"],
            registry=registry,
        )
        self.errors = Counter(
            "titans_errors_total",
            "Requests answered with an error status, by error type.",
            ["type"],
            registry=registry,
        )
        self.model_info = Gauge(
            "titans_model_info",
            "1 for each model version serving now (name, version, alias).",
            ["model", "name", "version", "alias"],
            registry=registry,
        )

    def count_predictions(
        self, model: str, version: str, arm: str | None, classes: list[str] | None, n: int
    ) -> None:
        """Count ``n`` predictions; ``classes`` holds each predicted category (category only)."""
        arm_label = arm or "none"
        if classes is None:
            self.predictions.labels(model, version, arm_label, "").inc(n)
            return
        for label in classes:
            bounded = label if label in _KNOWN_CLASSES else "other"
            self.predictions.labels(model, version, arm_label, bounded).inc()

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        state = scope.get("state") or {}
        served = state.get("served_by", ("", ""))
        self.request_duration.labels(template, served[0], served[1], str(status)).observe(seconds)
        if status >= 400:
            self.errors.labels(ERROR_TYPES.get(status, f"http_{status}")).inc()


class RequestMetrics:
    """ASGI middleware timing every HTTP request into :class:`ApiMetrics`."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:
            status = 500
            raise
        finally:
            self.metrics.observe(scope, status, time.perf_counter() - start)


@router.get("/metrics", response_class=Response)
def metrics(request: Request, models: ModelsDep, _: AnyKey) -> Response:
    """Prometheus metrics of this process, in the text exposition format."""
    api_metrics: ApiMetrics = request.app.state.api_metrics
    api_metrics.model_info.clear()
    for loaded in models.loaded():
        api_metrics.model_info.labels(loaded.key, loaded.name, loaded.version, loaded.alias).set(1)
    payload: Any = generate_latest(api_metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)
