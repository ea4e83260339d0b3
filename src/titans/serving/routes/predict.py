"""Prediction routes: one transaction per model, a cashflow history, and batches.

A single-transaction route answers on the event loop when the model has a compiled single-row
path (titans.models.fast: tens of microseconds, no pandas), and in the thread pool otherwise;
batch and cashflow handlers are plain ``def`` (thread pool), so a CPU-bound pandas predict
never blocks the event loop. Each request takes its LoadedModel once, at its start.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from titans.config import MODEL_KEYS, Settings
from titans.experiments.ab_testing import ABTestingFramework, shadow_prediction_id
from titans.models.fast import CategoryPredictor
from titans.models.inputs import typed_frame
from titans.serving.deps import ModelsDep, PredictKey, SettingsDep
from titans.serving.model_store import LoadedModel, ModelStore
from titans.serving.prediction_log import PredictionLogWriter, PredictionRecord
from titans.serving.schemas import (
    AmountPrediction,
    AmountResponse,
    AnomalyPrediction,
    AnomalyResponse,
    BatchItem,
    BatchRequest,
    BatchResponse,
    CashflowForecast,
    CashflowRequest,
    CashflowResponse,
    CategoryPrediction,
    CategoryResponse,
    ClassProbability,
    ErrorResponse,
    ForecastDay,
    Transaction,
)

log = logging.getLogger(__name__)

RowPrediction = CategoryPrediction | AmountPrediction | AnomalyPrediction

#: how many class probabilities a category prediction lists, most likely first
TOP_CLASSES = 3
#: models /predict/batch serves (a cashflow forecast takes a whole history instead)
BATCH_MODELS: tuple[str, ...] = ("category", "amount", "anomaly")

router = APIRouter(prefix="/predict", tags=["predict"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 429, 503)
}


def _new_id() -> str:
    return uuid.uuid4().hex


def _serving(store: ModelStore, key: str) -> LoadedModel:
    """The model for ``key`` at the start of this request: 404 unknown, 503 not loaded."""
    if key not in MODEL_KEYS:
        raise HTTPException(404, f"unknown model {key!r}; choose one of: {', '.join(MODEL_KEYS)}")
    loaded = store.get(key)
    if loaded is None:
        reasons = [r for r in store.status().reasons if store.settings.registered_name(key) in r]
        why = reasons[0] if reasons else f"{key} is not served by this API"
        raise HTTPException(503, f"model {key} is not loaded: {why}; see GET /ready")
    return loaded


def _predict(loaded: LoadedModel, transactions: Sequence[Transaction]) -> pd.DataFrame:
    """The model's output frame; a model error on valid-looking input becomes a 422."""
    raw = pd.DataFrame([t.as_row() for t in transactions])
    try:
        return loaded.trained.predict(typed_frame(raw))
    except Exception as exc:
        raise _unscoreable(loaded, exc) from exc


def _predict_one(loaded: LoadedModel, transaction: Transaction) -> RowPrediction:
    """One transaction's prediction: through the compiled single-row path when the model has
    one (same outputs, without pandas), else through the batch path."""
    fast = loaded.fast
    if fast is None:
        (prediction,) = _ROW_CONVERTERS[loaded.key](_predict(loaded, [transaction]))
        return prediction
    try:
        if isinstance(fast, CategoryPredictor):  # the top classes straight from the arrays
            return category_from_top(fast.top_classes(transaction.as_row(), TOP_CLASSES))
        row = fast.predict_one(transaction.as_row())
    except Exception as exc:
        raise _unscoreable(loaded, exc) from exc
    return _ONE_ROW_CONVERTERS[loaded.key](row)


def _unscoreable(loaded: LoadedModel, exc: Exception) -> HTTPException:
    log.warning("%s version %s could not score a request: %r", loaded.name, loaded.version, exc)
    lines = str(exc).strip().splitlines()
    reason = lines[0] if lines else type(exc).__name__
    return HTTPException(422, f"the {loaded.key} model could not score this input: {reason}")


def _served_by(loaded: LoadedModel, arm: str | None) -> dict[str, Any]:
    return {
        "model": loaded.key,
        "model_name": loaded.name,
        "version": loaded.version,
        "alias": loaded.alias,
        "arm": arm,
    }


@dataclass(frozen=True)
class Route:
    """Who answers one request: the served version, its A/B arm, and a shadow to also score."""

    served: LoadedModel
    arm: str | None = None
    shadow: LoadedModel | None = None

    @property
    def compiled(self) -> bool:
        """Every model this request runs has a compiled single-row path (no pandas)."""
        shadow_ok = self.shadow is None or self.shadow.fast is not None
        return self.served.fast is not None and shadow_ok


def _route(request: Request, store: ModelStore, key: str, entity_id: str | None) -> Route:
    """Production, or the version a running A/B test assigns this request to.

    The model store holds both arms' versions while a test runs. A request assigned to a
    version that is not in memory (still loading, or it failed to load) is answered by
    production and recorded as arm "A", the champion's.
    """
    production = _serving(store, key)
    ab: ABTestingFramework = request.app.state.ab_testing
    try:
        assignment = ab.assign({"model_name": production.name, "entity_id": entity_id})
    except Exception as exc:  # routing trouble must never fail a prediction
        log.warning("A/B routing failed for %s, serving production: %r", production.name, exc)
        return Route(production)
    if assignment is None:
        return Route(production)
    served = store.get_version(key, assignment.serve_version)
    if served is None:
        return Route(production, "A")
    shadow = (
        store.get_version(key, assignment.shadow_version)
        if assignment.shadow_version is not None
        else None
    )
    return Route(served, assignment.arm, shadow)


def _score(prediction: BaseModel) -> float | None:
    """The one number a monitor tracks: class probability, anomaly score or predicted amount."""
    if isinstance(prediction, CategoryPrediction):
        return prediction.probability
    if isinstance(prediction, AnomalyPrediction):
        return prediction.score
    if isinstance(prediction, AmountPrediction):
        return prediction.prediction
    return None


def _record(
    request: Request,
    loaded: LoadedModel,
    arm: str | None,
    items: Sequence[tuple[str, dict[str, Any], str | None, BaseModel]],
    latency_ms: float,
    *,
    shadow: bool = False,
) -> None:
    """Log each (prediction_id, features, entity_id, prediction) and count it in metrics.

    A shadow row is logged and counted, but it is not what the client got: it neither labels
    the request's metrics nor joins the ids that feedback may name.
    """
    writer: PredictionLogWriter = request.app.state.prediction_log
    for prediction_id, features, entity_id, prediction in items:
        writer.log(
            PredictionRecord(
                prediction_id=prediction_id,
                model_name=loaded.name,
                model_version=loaded.version,
                alias=loaded.alias,
                arm=arm,
                entity_id=entity_id,
                features=features,
                prediction=prediction.model_dump(mode="json"),
                score=_score(prediction),
                latency_ms=latency_ms,
            )
        )
    if not shadow:
        request.state.served_by = (loaded.key, loaded.version)
        request.app.state.recent_predictions.add_all(item[0] for item in items)
    classes = (
        [p.prediction for *_, p in items if isinstance(p, CategoryPrediction)]
        if loaded.key == "category"
        else None
    )
    request.app.state.api_metrics.count_predictions(
        loaded.key, loaded.version, arm, classes, len(items)
    )


def _shadow(
    request: Request,
    route: Route,
    score: Callable[[LoadedModel], Sequence[BaseModel]],
    items: Sequence[tuple[str, dict[str, Any], str | None, BaseModel]],
) -> None:
    """Score the shadow (B) version too and log its rows under the served rows' shadow ids.

    Its failure is logged and counted, never passed on: the client already has A's answer.
    """
    shadow = route.shadow
    if shadow is None:
        return
    start = time.perf_counter()
    try:
        predictions = score(shadow)
    except Exception as exc:
        log.warning("shadow %s version %s failed: %r", shadow.name, shadow.version, exc)
        request.app.state.api_metrics.errors.labels("shadow_failed").inc()
        return
    latency_ms = (time.perf_counter() - start) * 1000.0 / max(len(predictions), 1)
    rows = [
        (shadow_prediction_id(pid), features, entity_id, prediction)
        for (pid, features, entity_id, _), prediction in zip(items, predictions, strict=True)
    ]
    _record(request, shadow, "B", rows, latency_ms, shadow=True)


def _features(transaction: Transaction) -> dict[str, Any]:
    return transaction.model_dump(mode="json")


def category_predictions(out: pd.DataFrame) -> list[CategoryPrediction]:
    """Category, its probability and the top classes, one per output row."""
    proba_columns = [c for c in out.columns if c.startswith("proba_")]
    classes = np.array([c.removeprefix("proba_") for c in proba_columns], dtype=object)
    proba = out[proba_columns].to_numpy(dtype=np.float64)
    k = min(TOP_CLASSES, len(proba_columns))
    top = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    top_p = np.take_along_axis(proba, top, axis=1)
    labels = out["prediction"].astype(str).to_numpy()
    probs = out["probability"].to_numpy(dtype=np.float64)
    return [
        CategoryPrediction(
            prediction=labels[i],
            probability=float(probs[i]),
            top_classes=[
                ClassProbability(category=str(classes[j]), probability=float(p))
                for j, p in zip(top[i], top_p[i], strict=True)
            ],
        )
        for i in range(len(out))
    ]


def amount_predictions(out: pd.DataFrame) -> list[AmountPrediction]:
    """Predicted amount and its interval, one per output row."""
    values = out[["prediction", "lower", "upper"]].to_numpy(dtype=np.float64).tolist()
    return [AmountPrediction(prediction=p, lower=lo, upper=hi) for p, lo, hi in values]


def anomaly_predictions(out: pd.DataFrame) -> list[AnomalyPrediction]:
    """Anomaly score and verdict, one per output row."""
    scores = out["score"].to_numpy(dtype=np.float64).tolist()
    flags = out["is_anomaly"].to_numpy(dtype=bool).tolist()
    return [AnomalyPrediction(score=s, is_anomaly=f) for s, f in zip(scores, flags, strict=True)]


def cashflow_forecast(out: pd.DataFrame) -> CashflowForecast:
    """The daily forecast with its interval."""
    days = pd.to_datetime(out["date"]).dt.date.tolist()
    values = out[["prediction", "lower", "upper"]].to_numpy(dtype=np.float64).tolist()
    return CashflowForecast(
        forecast=[
            ForecastDay(date=d, prediction=p, lower=lo, upper=hi)
            for d, (p, lo, hi) in zip(days, values, strict=True)
        ]
    )


_ROW_CONVERTERS: dict[str, Callable[[pd.DataFrame], Sequence[RowPrediction]]] = {
    "category": category_predictions,
    "amount": amount_predictions,
    "anomaly": anomaly_predictions,
}


# The single-row converters validate one dict in pydantic-core: a few microseconds, less than
# model_construct's Python loop over fields (this is the hot path).


def category_from_top(
    top: list[tuple[str, float]], *, label: str | None = None, probability: float | None = None
) -> CategoryPrediction:
    """A category prediction from the most likely classes, most likely first."""
    return CategoryPrediction.model_validate(
        {
            "prediction": top[0][0] if label is None else label,
            "probability": top[0][1] if probability is None else float(probability),
            "top_classes": [{"category": c, "probability": p} for c, p in top],
        }
    )


def amount_prediction(row: dict[str, Any]) -> AmountPrediction:
    return AmountPrediction.model_validate(
        {"prediction": row["prediction"], "lower": row["lower"], "upper": row["upper"]}
    )


def anomaly_prediction(row: dict[str, Any]) -> AnomalyPrediction:
    return AnomalyPrediction.model_validate(
        {"score": row["score"], "is_anomaly": bool(row["is_anomaly"])}
    )


#: the compiled path's row for amount and anomaly (category answers from its top classes)
_ONE_ROW_CONVERTERS: dict[str, Callable[[dict[str, Any]], RowPrediction]] = {
    "amount": amount_prediction,
    "anomaly": anomaly_prediction,
}


def _one(
    request: Request, key: str, transaction: Transaction, route: Route, start: float
) -> dict[str, Any]:
    prediction = _predict_one(route.served, transaction)
    prediction_id = _new_id()
    latency_ms = (time.perf_counter() - start) * 1000.0
    items = [(prediction_id, _features(transaction), transaction.entity_id, prediction)]
    _record(request, route.served, route.arm, items, latency_ms)
    _shadow(request, route, lambda loaded: [_predict_one(loaded, transaction)], items)
    return {
        **_served_by(route.served, route.arm),
        "prediction_id": prediction_id,
        "prediction": prediction,
    }


async def _answer_one(
    request: Request, key: str, transaction: Transaction, response: type[BaseModel]
) -> Response:
    """On the event loop when every model involved has a compiled single-row path (tens of
    microseconds of work); in the thread pool when one must go through pandas.

    The body is validated and serialised here in pydantic-core (the route's ``response_model``
    documents it); returning a Response spares FastAPI's slower second pass over it. Ordinary
    requests rarely get here: titans.serving.fast_lane answers them before FastAPI routes.
    """
    start = time.perf_counter()
    store: ModelStore = request.app.state.model_store
    route = _route(request, store, key, transaction.entity_id)
    if route.compiled:
        body = _one(request, key, transaction, route, start)
    else:
        body = await run_in_threadpool(_one, request, key, transaction, route, start)
    return Response(response.model_validate(body).model_dump_json(), media_type="application/json")


@router.post("/category", response_model=CategoryResponse, responses=_ERRORS)
async def predict_category(request: Request, transaction: Transaction, _: PredictKey) -> Response:
    """Expense category of one transaction, with its probability and the top classes."""
    return await _answer_one(request, "category", transaction, CategoryResponse)


@router.post("/amount", response_model=AmountResponse, responses=_ERRORS)
async def predict_amount(request: Request, transaction: Transaction, _: PredictKey) -> Response:
    """Expected absolute amount of one transaction, with an 80% interval."""
    return await _answer_one(request, "amount", transaction, AmountResponse)


@router.post("/anomaly", response_model=AnomalyResponse, responses=_ERRORS)
async def predict_anomaly(request: Request, transaction: Transaction, _: PredictKey) -> Response:
    """Anomaly score of one transaction and whether it crosses the alert threshold."""
    return await _answer_one(request, "anomaly", transaction, AnomalyResponse)


@router.post("/cashflow", response_model=CashflowResponse, responses=_ERRORS)
def predict_cashflow(
    request: Request,
    body: CashflowRequest,
    store: ModelsDep,
    settings: SettingsDep,
    _: PredictKey,
) -> dict[str, Any]:
    """Daily net cash flow for the model's horizon after the latest day of ``history``."""
    start = time.perf_counter()
    _check_size("history", len(body.history), settings)
    entity_id = next((t.entity_id for t in body.history if t.entity_id), None)
    route = _route(request, store, "cashflow", entity_id)

    def score(loaded: LoadedModel) -> list[CashflowForecast]:
        return [cashflow_forecast(_predict(loaded, body.history))]

    (forecast,) = score(route.served)
    prediction_id = _new_id()
    features = {"history": [_features(t) for t in body.history]}
    latency_ms = (time.perf_counter() - start) * 1000.0
    items = [(prediction_id, features, entity_id, forecast)]
    _record(request, route.served, route.arm, items, latency_ms)
    _shadow(request, route, score, items)
    return {
        **_served_by(route.served, route.arm),
        "prediction_id": prediction_id,
        "prediction": forecast,
    }


@router.post("/batch", response_model=BatchResponse, responses=_ERRORS)
def predict_batch(
    request: Request,
    body: BatchRequest,
    store: ModelsDep,
    settings: SettingsDep,
    _: PredictKey,
) -> dict[str, Any]:
    """Predictions for up to max_batch_size transactions, in the order they were sent."""
    start = time.perf_counter()
    if body.model == "cashflow":
        raise HTTPException(
            422, "model: cashflow is not served in batches; POST the history to /predict/cashflow"
        )
    _serving(store, body.model)
    _check_size("transactions", len(body.transactions), settings)
    # one arm for the whole batch: the first transaction with an entity id decides it
    entity_id = next((t.entity_id for t in body.transactions if t.entity_id), None)
    route = _route(request, store, body.model, entity_id)
    convert = _ROW_CONVERTERS[body.model]

    def score(loaded: LoadedModel) -> Sequence[RowPrediction]:
        return convert(_predict(loaded, body.transactions))

    rows = score(route.served)
    ids = [_new_id() for _ in rows]
    # each item's latency is its share of the batch's
    latency_ms = (time.perf_counter() - start) * 1000.0 / max(len(rows), 1)
    items = [
        (pid, _features(t), t.entity_id, p)
        for pid, t, p in zip(ids, body.transactions, rows, strict=True)
    ]
    _record(request, route.served, route.arm, items, latency_ms)
    _shadow(request, route, score, items)
    return {
        **_served_by(route.served, route.arm),
        "predictions": [
            BatchItem(prediction_id=i, prediction=p) for i, p in zip(ids, rows, strict=True)
        ],
    }


@router.post("/{model}", responses=_ERRORS, include_in_schema=False)
def predict_unknown(model: str, _: PredictKey) -> None:
    """Any other model name: 404 listing the known ones."""
    raise HTTPException(404, f"unknown model {model!r}; choose one of: {', '.join(MODEL_KEYS)}")


def _check_size(field: str, count: int, settings: Settings) -> None:
    if count > settings.max_batch_size:
        raise HTTPException(
            422,
            f"{field}: {count} transactions is more than the limit of {settings.max_batch_size}; "
            "split the request",
        )
