"""Request dependencies as ``Annotated`` aliases: stores, settings, and API keys with roles.

``PredictKey`` authenticates the ``Authorization: Bearer <key>`` header against the app's
KeyRing, requires role ``predict`` and spends one token of the key's rate limit; ``AdminKey``
requires role ``admin``; ``AnyKey`` accepts any valid key. A path listed in
``Settings.open_routes`` skips the check (``/health``, ``/ready``, ``/metrics`` by default).

Every dependency is ``async``: none of them blocks (the shared Redis rate limit goes to the
thread pool), and a sync dependency would cost a thread-pool round trip per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from titans.config import Settings
from titans.serving.auth import Identity, KeyRing
from titans.serving.model_store import ModelStore
from titans.serving.prediction_log import PredictionLogWriter
from titans.serving.ratelimit import RateLimiter
from titans.store import Store

_CHALLENGE = {"WWW-Authenticate": "Bearer"}

NO_KEYS_MESSAGE = (
    "no API keys are configured, so every protected route refuses requests; create one with "
    "`titans keys create NAME --role predict` and put the printed entry in TITANS_API_KEYS"
)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_models(request: Request) -> ModelStore:
    models: ModelStore = request.app.state.model_store
    return models


async def get_ops_store(request: Request) -> Store:
    store: Store = request.app.state.ops_store
    return store


async def get_prediction_log(request: Request) -> PredictionLogWriter:
    writer: PredictionLogWriter = request.app.state.prediction_log
    return writer


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelsDep = Annotated[ModelStore, Depends(get_models)]
StoreDep = Annotated[Store, Depends(get_ops_store)]
PredictionLogDep = Annotated[PredictionLogWriter, Depends(get_prediction_log)]


async def authenticate(request: Request) -> Identity | None:
    """The caller's identity; None on an open route; 401 without a valid key."""
    settings: Settings = request.app.state.settings
    if request.scope["path"] in settings.open_routes:  # request.url would build a URL object
        return None
    ring: KeyRing = request.app.state.key_ring
    if len(ring) == 0:
        raise HTTPException(401, NO_KEYS_MESSAGE, headers=_CHALLENGE)
    identity = ring.authenticate(request.headers.get("authorization"))
    if identity is None:
        raise HTTPException(
            401,
            "missing or invalid API key; send the header 'Authorization: Bearer <key>'",
            headers=_CHALLENGE,
        )
    request.state.api_key_name = identity.name
    return identity


def _require(identity: Identity | None, role: str) -> Identity | None:
    if identity is not None and not identity.has_role(role):
        raise HTTPException(
            403, f"API key {identity.name!r} lacks the role {role!r}; use a key that has it"
        )
    return identity


async def rate_limit(request: Request, identity: Identity) -> None:
    """Spend one token of the key's bucket; 429 with Retry-After when it is empty.

    An in-process bucket is checked on the event loop; a shared one (Redis: network I/O) in
    the thread pool.
    """
    limiter: RateLimiter = request.app.state.rate_limiter
    if getattr(limiter, "blocking", True):
        decision = await run_in_threadpool(limiter.check, identity.name)
    else:
        decision = limiter.check(identity.name)
    if not decision.allowed:
        raise HTTPException(
            429,
            f"rate limit of API key {identity.name!r} exceeded; retry after "
            f"{decision.retry_after_header} s",
            headers={"Retry-After": decision.retry_after_header},
        )


async def require_predict(request: Request) -> Identity | None:
    """A key with role ``predict``, within its rate limit.

    One flat dependency (authentication inside, not a sub-dependency): the prediction routes
    are the hot path, and FastAPI spends tens of microseconds solving each dependency.
    """
    checked = _require(await authenticate(request), "predict")
    if checked is not None:
        await rate_limit(request, checked)
    return checked


async def require_admin(request: Request) -> Identity | None:
    """A key with role ``admin``."""
    return _require(await authenticate(request), "admin")


async def require_alerts(request: Request) -> Identity | None:
    """A key with role ``alerts`` (Alertmanager's token for the webhook receiver)."""
    return _require(await authenticate(request), "alerts")


AnyKey = Annotated[Identity | None, Depends(authenticate)]
PredictKey = Annotated[Identity | None, Depends(require_predict)]
AdminKey = Annotated[Identity | None, Depends(require_admin)]
AlertsKey = Annotated[Identity | None, Depends(require_alerts)]
