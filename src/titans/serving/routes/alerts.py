"""``POST /alerts/alertmanager``: the Titans webhook receiver of Prometheus' Alertmanager."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from sqlalchemy.exc import SQLAlchemyError

from titans.monitoring.alerts.intake import record_alertmanager_alerts
from titans.serving.deps import AlertsKey, StoreDep
from titans.serving.schemas import AlertIntakeResponse, AlertmanagerWebhook, ErrorResponse
from titans.store import StoreError

router = APIRouter(tags=["alerts"])


@router.post(
    "/alerts/alertmanager",
    response_model=AlertIntakeResponse,
    responses={c: {"model": ErrorResponse} for c in (401, 403, 422, 503)},
)
def alertmanager_webhook(
    body: AlertmanagerWebhook, store: StoreDep, _: AlertsKey
) -> dict[str, int]:
    """Record Alertmanager's alerts in the ops store (firing opens or updates, resolved closes)."""
    alerts = [a.model_dump() for a in body.alerts]
    try:
        return record_alertmanager_alerts(store, alerts, receiver=body.receiver)
    except (StoreError, SQLAlchemyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HTTPException(
            503,
            f"the ops store is unavailable ({reason}); Alertmanager will retry",
            headers={"Retry-After": "5"},
        ) from exc
