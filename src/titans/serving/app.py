"""The prediction API: ``create_app(settings)`` builds a FastAPI app around a ModelStore."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

import titans
from titans.config import MODEL_KEYS, Settings
from titans.experiments.ab_testing import ABTestingFramework
from titans.serving.auth import KeyRing
from titans.serving.fast_lane import FastLane, replay_body
from titans.serving.metrics import ServingMetrics
from titans.serving.model_store import ModelStore
from titans.serving.prediction_log import PredictionLogWriter
from titans.serving.ratelimit import make_rate_limiter
from titans.serving.routes import (
    admin,
    alerts,
    approvals,
    feedback,
    health,
    metrics,
    predict,
    ui,
)
from titans.serving.routes.feedback import RecentPredictions
from titans.serving.routes.metrics import ApiMetrics, RequestMetrics
from titans.store import Store

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    model_store: ModelStore | None = None,
    poll: bool = True,
) -> FastAPI:
    """The API, with every configured model loaded from the registry before it returns.

    ``model_store`` replaces the store built from ``settings`` (its metrics registry is then
    the app's); ``poll`` starts the registry poller while the app runs (its lifespan). The
    lifespan also starts the prediction log writer and, on shutdown, drains it within
    ``prediction_log_drain_timeout_seconds``.
    """
    settings = settings if settings is not None else Settings()
    key_ring = KeyRing(settings.api_keys)
    if not len(key_ring):
        log.warning("no API keys configured: protected routes answer 401 (titans keys create)")
    # the ops store is reached lazily: when it is down the API serves and the writer retries
    ops_store = Store(settings)
    ab_testing = ABTestingFramework(settings, ops_store)
    if model_store is None:
        model_store = ModelStore(settings, MODEL_KEYS, registry=CollectorRegistry())
    if model_store.wanted_versions is None:
        # hold the versions running A/B tests route to, beside production
        model_store.wanted_versions = ab_testing.versions_in_tests
    model_store.refresh()
    registry = model_store.registry
    serving_metrics = ServingMetrics(registry)
    api_metrics = ApiMetrics(registry)
    prediction_log = PredictionLogWriter.from_settings(ops_store, settings, serving_metrics)
    rate_limiter = make_rate_limiter(settings, serving_metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        prediction_log.start()
        if poll:
            model_store.start_polling()
        try:
            yield
        finally:
            model_store.stop()
            stats = prediction_log.stop(settings.prediction_log_drain_timeout_seconds)
            log.info("prediction log drained: %s", stats)
            close = getattr(rate_limiter, "close", None)
            if close is not None:
                close()

    app = FastAPI(
        title="Titans prediction API",
        version=titans.__version__,
        description="Predictions of the Titans models the registry says are in production.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.model_store = model_store
    app.state.metrics_registry = registry
    app.state.serving_metrics = serving_metrics
    app.state.api_metrics = api_metrics
    app.state.key_ring = key_ring
    app.state.ops_store = ops_store
    app.state.prediction_log = prediction_log
    app.state.ab_testing = ab_testing
    app.state.rate_limiter = rate_limiter
    app.state.recent_predictions = RecentPredictions(settings.prediction_log_queue_size)
    # innermost: the hot single-transaction path (titans.serving.fast_lane)
    app.add_middleware(FastLane)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=api_metrics)  # outermost: sees every status
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(health.router)
    app.include_router(predict.router)
    app.include_router(feedback.router)
    app.include_router(metrics.router)
    app.include_router(admin.router)
    app.include_router(approvals.router)
    app.include_router(ui.router)
    app.include_router(alerts.router)
    return app


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else "body"


def validation_messages(errors: list[dict[str, Any]]) -> list[str]:
    """One line per error: ``field: problem`` (the field dotted, list positions as numbers)."""
    return [f"{_field(e.get('loc', ()))}: {e.get('msg', 'is invalid')}" for e in errors]


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    lines = validation_messages(list(exc.errors()))
    return JSONResponse({"detail": "; ".join(lines), "errors": lines}, status_code=422)


#: what FastAPI says when a JSON body cannot be decoded at all (not UTF-8, ...)
_UNPARSEABLE_BODY = "There was an error parsing the body"


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):  # registered for this type only
        raise exc
    if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
        # the client's body, like any other invalid input: 422 naming the problem
        line = "body: is not valid JSON; send one UTF-8 JSON object"
        return JSONResponse({"detail": line, "errors": [line]}, status_code=422)
    return JSONResponse(
        {"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": f"internal error ({type(exc).__name__}); the server log has the details"},
        status_code=500,
    )


class BodySizeLimit:
    """413 for a body over ``max_bytes``: by Content-Length, or by counting a streamed body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, "Content-Length is not a number")
                return
            if too_big:
                await _send_json(send, 413, self._message())
                return
        # Read the body here (it is bounded by max_bytes) and replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, self._message())
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    def _message(self) -> str:
        return (
            f"request body is larger than the limit of {self.max_bytes:,} bytes; "
            "send fewer transactions per request"
        )


async def _send_json(send: Send, status: int, detail: str) -> None:
    import json

    payload = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
