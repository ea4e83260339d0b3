"""The hot path: one ordinary transaction to ``POST /predict/{category,amount,anomaly}``.

FastAPI spends several hundred microseconds per request on routing, dependency solving and
validation, several times what the compiled model takes (titans.models.fast). This ASGI
middleware answers the ordinary request itself, with the very functions the FastAPI routes use
(authentication, rate limit, A/B routing, prediction, prediction log, metrics labels), and
passes everything else on to FastAPI unchanged: a body that does not validate, a missing or
wrong key, a model that is not loaded or has no compiled path, a content type other than JSON.
Those get FastAPI's answers (422, 401, 403, 503, ...) exactly as without this lane, and the
OpenAPI schema still documents the routes.

Order of checks, so that a request spends at most one rate-limit token whichever path answers
it: key and role, body, model; only then the token (429 here when the bucket is empty).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from titans.serving import deps
from titans.serving.routes import predict
from titans.serving.schemas import AmountResponse, AnomalyResponse, CategoryResponse, Transaction

#: path -> (model key, response model) of the routes this lane answers
LANE_ROUTES: dict[str, tuple[str, type[BaseModel]]] = {
    "/predict/category": ("category", CategoryResponse),
    "/predict/amount": ("amount", AmountResponse),
    "/predict/anomaly": ("anomaly", AnomalyResponse),
}
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(frozen=True)
class _RouteLabel:
    """Stands in for the matched route in the scope: request metrics read its ``path``."""

    path: str


_ROUTE_LABELS = {path: _RouteLabel(path) for path in LANE_ROUTES}


class FastLane:
    """ASGI middleware answering ordinary single-transaction predictions (see module doc)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in LANE_ROUTES:
            await self.app(scope, receive, send)
            return
        body, complete = await _read_body(receive)
        if complete and await self._answer(scope, body, send):
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _answer(self, scope: Scope, body: bytes, send: Send) -> bool:
        """True when the request was answered here; False to pass it on to FastAPI."""
        start = time.perf_counter()
        if not _is_json(scope):
            return False
        request = Request(scope)
        try:
            identity = await deps.authenticate(request)
        except HTTPException:
            return False
        if identity is not None and not identity.has_role("predict"):
            return False
        try:
            transaction = Transaction.model_validate_json(body)
        except ValidationError:
            return False
        key, response_model = LANE_ROUTES[scope["path"]]
        store = request.app.state.model_store
        try:  # a model that is not loaded: the FastAPI route gives its 503
            route = predict._route(request, store, key, transaction.entity_id)
        except HTTPException:
            return False
        if not route.compiled:
            return False  # the FastAPI route scores it in the thread pool
        scope["route"] = _ROUTE_LABELS[scope["path"]]  # what request metrics label it with
        try:
            if identity is not None:
                await deps.rate_limit(request, identity)
            answer = predict._one(request, key, transaction, route, start)
        except HTTPException as exc:
            await _send(send, exc.status_code, _error_body(exc), exc.headers)
            return True
        payload = response_model.model_validate(answer).model_dump_json().encode()
        await _send(send, 200, payload, None)
        return True


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False


def _error_body(exc: HTTPException) -> bytes:
    """The body titans.serving.app's handler gives an HTTPException."""
    return json.dumps({"detail": str(exc.detail)}).encode()


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body, and False when the client went away before sending it all."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` (already read) first, then the client's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send(send: Send, status: int, payload: bytes, headers: Mapping[str, str] | None) -> None:
    extra: list[tuple[bytes, bytes]] = [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
    ]
    message: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *extra],
    }
    await send(message)
    await send({"type": "http.response.body", "body": payload})
