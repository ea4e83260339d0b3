"""``POST /feedback``: the actual outcome of an earlier prediction, stored for monitoring and A/B.

The prediction row is written by the prediction log's background writer, so feedback sent right
after a prediction may arrive before its row. The route keeps the ids this process answered
recently (bounded); for such an id it waits, bounded by twice the log's flush interval plus
two seconds, for the row to land. An id this process never answered (and not in the store) is a
404 at once, so unknown ids cost no waiting.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from titans.serving.deps import PredictKey, SettingsDep, StoreDep
from titans.serving.schemas import ErrorResponse, FeedbackRequest, FeedbackResponse
from titans.store import Store, StoreError
from titans.store.models import Feedback, Prediction, utcnow

router = APIRouter(tags=["feedback"])

#: how often the route looks for a prediction row still in the writer's queue
_POLL_SECONDS = 0.05


class RecentPredictions:
    """The last ``capacity`` prediction ids this process answered (thread-safe, bounded)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add_all(self, ids: Iterable[str]) -> None:
        with self._lock:
            for prediction_id in ids:
                self._ids[prediction_id] = None
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)

    def __contains__(self, prediction_id: object) -> bool:
        with self._lock:
            return prediction_id in self._ids


def _prediction_exists(store: Store, prediction_id: str) -> bool:
    with store.session() as session:
        found = session.scalar(
            select(Prediction.prediction_id).where(Prediction.prediction_id == prediction_id)
        )
    return found is not None


def _unavailable(exc: Exception) -> HTTPException:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return HTTPException(
        503, f"the ops store is unavailable ({reason}); retry later", headers={"Retry-After": "5"}
    )


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 422, 429, 503)},
)
def feedback(
    request: Request, body: FeedbackRequest, store: StoreDep, settings: SettingsDep, _: PredictKey
) -> dict[str, str]:
    """Store the actual outcome of a prediction: 404 unknown id, 409 outcome already given."""
    recent: RecentPredictions = request.app.state.recent_predictions
    prediction_id = body.prediction_id
    wait = 2 * settings.prediction_log_flush_seconds + 2.0 if prediction_id in recent else 0.0
    deadline = time.monotonic() + wait
    try:
        while not _prediction_exists(store, prediction_id):
            if time.monotonic() >= deadline:
                if wait:
                    raise HTTPException(
                        503,
                        f"prediction {prediction_id} is not in the prediction log yet; "
                        "retry in a few seconds",
                        headers={"Retry-After": "2"},
                    )
                raise HTTPException(
                    404,
                    f"no prediction with id {prediction_id}; send the prediction_id a "
                    "/predict response carried",
                )
            time.sleep(_POLL_SECONDS)
        with store.session() as session:
            if session.get(Feedback, prediction_id) is not None:
                raise HTTPException(409, _duplicate(prediction_id))
            session.add(Feedback(prediction_id=prediction_id, ts=utcnow(), actual=body.actual))
    except IntegrityError as exc:  # a concurrent request stored it first
        raise HTTPException(409, _duplicate(prediction_id)) from exc
    except (StoreError, SQLAlchemyError) as exc:
        raise _unavailable(exc) from exc
    return {"prediction_id": prediction_id, "status": "stored"}


def _duplicate(prediction_id: str) -> str:
    return f"feedback for prediction {prediction_id} was already stored; it is accepted once"
