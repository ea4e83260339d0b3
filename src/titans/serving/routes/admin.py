"""Admin routes (role ``admin``): reload models, promote, roll back, create and stop A/B tests.

Each action goes through the same ModelRegistryManager / ABTestingFramework calls as the CLI,
which audit it; the actor is the API key's name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError
from titans.experiments.ab_testing import ABTestingFramework
from titans.registry.registry_manager import ModelRegistryManager, PromotionRefusal
from titans.serving.auth import Identity
from titans.serving.deps import AdminKey, ModelsDep, SettingsDep, StoreDep
from titans.serving.schemas import (
    ABTestInfo,
    ABTestRequest,
    ErrorResponse,
    PromoteRequest,
    RefusalResponse,
    RegistryActionResponse,
    ReloadResponse,
    RollbackRequest,
    StopRequest,
)
from titans.store.models import ABTest

router = APIRouter(prefix="/admin", tags=["admin"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse} for c in (401, 403, 404, 422)
}


def actor_of(identity: Identity | None) -> str:
    """The audited actor: the API key's name (``api`` when the route is configured open)."""
    return identity.name if identity is not None else "api"


def registered(settings: Settings, model: str) -> str:
    """The registered name of a model key (``category``) or of a registered name itself."""
    return settings.registered_name(model) if model in MODEL_KEYS else model


def _refused(refusal: PromotionRefusal | None) -> JSONResponse:
    if refusal is None:  # promote/rollback return False only after recording a refusal
        return JSONResponse({"detail": "refused", "gate": "unknown", "reason": ""}, 409)
    if refusal.gate == "exists":
        return JSONResponse({"detail": str(refusal)}, status_code=404)
    body = RefusalResponse(detail=str(refusal), gate=refusal.gate, reason=refusal.reason)
    return JSONResponse(body.model_dump(), status_code=409)


@router.post("/reload", response_model=ReloadResponse, responses=_ERRORS)
def reload(models: ModelsDep, _: AdminKey) -> dict[str, Any]:
    """Reload every model from the registry now, retrying versions that failed before."""
    return {"reload": models.reload()}


@router.post(
    "/promote",
    response_model=RegistryActionResponse,
    responses={**_ERRORS, 409: {"model": RefusalResponse}},
)
def promote(
    body: PromoteRequest,
    models: ModelsDep,
    settings: SettingsDep,
    store: StoreDep,
    identity: AdminKey,
) -> Any:
    """Promote a version through every gate; 409 with the refusing gate, 404 unknown version."""
    name = registered(settings, body.model)
    manager = ModelRegistryManager(settings, store)
    moved = manager.promote_model(name, body.version, body.stage, actor=actor_of(identity))
    return _moved_or_refused(moved, manager, models, name, body.version, body.stage)


@router.post(
    "/rollback",
    response_model=RegistryActionResponse,
    responses={**_ERRORS, 409: {"model": RefusalResponse}},
)
def rollback(
    body: RollbackRequest,
    models: ModelsDep,
    settings: SettingsDep,
    store: StoreDep,
    identity: AdminKey,
) -> Any:
    """Point production back at a validated version; 409 with the refusing gate."""
    name = registered(settings, body.model)
    manager = ModelRegistryManager(settings, store)
    moved = manager.rollback_model(name, body.version, actor_of(identity), body.reason)
    return _moved_or_refused(moved, manager, models, name, body.version, "production")


def _moved_or_refused(
    moved: bool,
    manager: ModelRegistryManager,
    models: Any,
    name: str,
    version: str,
    stage: str,
) -> Any:
    """409 with the refusing gate, or where the alias now points after a store refresh."""
    if not moved:
        return _refused(manager.last_refusal)
    return {
        "model": name,
        "version": version,
        "stage": stage,
        "alias_version": manager.get_alias_version(name, stage),
        "reload": models.refresh(),
    }


def _framework(request: Request) -> ABTestingFramework:
    framework: ABTestingFramework = request.app.state.ab_testing
    return framework


def _info(test: ABTest) -> dict[str, Any]:
    return {
        "name": test.name,
        "model": test.model_name,
        "version_a": test.model_a_version,
        "version_b": test.model_b_version,
        "traffic_split": test.traffic_split,
        "mode": test.mode,
        "status": test.status,
    }


@router.post(
    "/ab-tests",
    response_model=ABTestInfo,
    status_code=201,
    responses={**_ERRORS, 409: {"model": ErrorResponse}},
)
def create_ab_test(
    request: Request,
    body: ABTestRequest,
    settings: SettingsDep,
    models: ModelsDep,
    identity: AdminKey,
) -> dict[str, Any]:
    """Start a test; 409 when one is already running for the model or the name is taken."""
    framework = _framework(request)
    name = registered(settings, body.model)
    for test in framework.list_tests():
        if test.name == body.name:
            raise HTTPException(409, f"an A/B test named {body.name!r} already exists")
        if test.model_name == name and test.status == "running":
            raise HTTPException(
                409, f"A/B test {test.name!r} is already running for {name}; stop it first"
            )
    try:
        test = framework.setup_ab_test(
            body.name,
            (name, body.version_a),
            (name, body.version_b),
            body.traffic_split,
            body.mode,
            actor=actor_of(identity),
        )
    except InputError as exc:  # a concurrent creator won, or the framework refused the input
        raise HTTPException(409, str(exc)) from exc
    _apply_routes(framework, models)
    return _info(test)


def _apply_routes(framework: ABTestingFramework, models: Any) -> None:
    """Route by the new set of tests now and load (or release) the arms' versions."""
    framework.refresh_routes()
    models.refresh()


@router.post(
    "/ab-tests/{name}/stop",
    response_model=ABTestInfo,
    responses={**_ERRORS, 409: {"model": ErrorResponse}},
)
def stop_ab_test(
    request: Request, name: str, body: StopRequest, models: ModelsDep, identity: AdminKey
) -> dict[str, Any]:
    """Stop a running test (traffic returns to A); 404 unknown test, 409 not running."""
    framework = _framework(request)
    try:
        test = framework.get_test(name)
    except InputError as exc:
        raise HTTPException(404, str(exc)) from exc
    if test.status != "running":
        raise HTTPException(409, f"A/B test {name!r} is {test.status}, not running")
    try:
        stopped = framework.stop_test(name, body.reason, actor=actor_of(identity))
    except InputError as exc:  # stopped concurrently
        raise HTTPException(409, str(exc)) from exc
    _apply_routes(framework, models)
    return _info(stopped)
