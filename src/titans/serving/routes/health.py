"""Liveness, readiness and what is serving: /health, /ready, /models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from titans.serving.deps import AnyKey, ModelsDep
from titans.serving.schemas import HealthResponse, ModelsResponse, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse)
def health(_: AnyKey) -> dict[str, str]:
    """The process is alive (says nothing about the models)."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}})
def ready(store: ModelsDep, _: AnyKey) -> JSONResponse:
    """200 when every configured model is loaded (status degraded if something failed since),
    503 when one is missing; the reasons say what and why."""
    status = store.status()
    body = ReadyResponse(
        status="ok" if status.status == "ok" else "degraded",
        registry_up=status.registry_up,
        reasons=list(status.reasons),
        missing=list(status.missing),
    )
    return JSONResponse(body.model_dump(), status_code=200 if status.ready else 503)


@router.get("/models", response_model=ModelsResponse)
def models(store: ModelsDep, _: AnyKey) -> dict[str, Any]:
    """The production versions serving right now (name, version, alias, loaded at, flavour),
    and the challenger versions held for running A/B tests."""
    return {
        "models": [m.describe() for m in store.loaded()],
        "challengers": [m.describe() for m in store.challengers()],
    }
