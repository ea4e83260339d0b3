"""Alerts that Prometheus' Alertmanager sends to the Titans webhook, kept in the ops store.

Alertmanager (deploy/alertmanager/alertmanager.yml, receiver ``titans-webhook``) POSTs its
webhook JSON (version 4) to ``/alerts/alertmanager``. Each alert lands in the same ``alerts``
table the platform's own AlertManager writes, keyed by Alertmanager's fingerprint: a repeat of a
firing alert updates its row, a resolve closes it, and ``titans alerts list`` shows both kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from titans.store import Store
from titans.store.models import Alert, utcnow

#: prefix of the fingerprints of alerts that came from Alertmanager (theirs are 16 hex digits)
FINGERPRINT_PREFIX = "am:"


def record_alertmanager_alerts(
    store: Store, alerts: Sequence[dict[str, Any]], *, receiver: str = ""
) -> dict[str, int]:
    """Upsert each Alertmanager alert by fingerprint; counts of what was done.

    ``alerts`` are the webhook's ``alerts`` entries (``status``, ``labels``, ``annotations``,
    ``startsAt``, ``endsAt``, ``generatorURL``, ``fingerprint``), already validated.
    """
    counts = {"received": len(alerts), "opened": 0, "updated": 0, "resolved": 0}
    now = utcnow()
    with store.session() as session:
        for alert in alerts:
            fingerprint = FINGERPRINT_PREFIX + str(alert["fingerprint"])
            labels = {str(k): str(v) for k, v in alert.get("labels", {}).items()}
            details = {
                "source": "alertmanager",
                "receiver": receiver,
                "labels": labels,
                "annotations": dict(alert.get("annotations", {})),
                "starts_at": _iso(alert.get("startsAt")),
                "generator_url": alert.get("generatorURL", ""),
            }
            row = session.scalars(
                select(Alert)
                .where(Alert.fingerprint == fingerprint, Alert.status != "resolved")
                .order_by(Alert.id.desc())
                .limit(1)
            ).first()
            resolved = alert["status"] == "resolved"
            if row is None:
                if resolved:  # a resolve for an alert never seen: keep it, closed
                    counts["resolved"] += 1
                else:
                    counts["opened"] += 1
                session.add(
                    Alert(
                        fingerprint=fingerprint,
                        name=labels.get("alertname", "unnamed"),
                        severity=labels.get("severity", "warning"),
                        status="resolved" if resolved else "firing",
                        first_seen=now,
                        last_sent=now,
                        resolved_at=now if resolved else None,
                        details=details,
                    )
                )
                continue
            row.last_sent = now
            row.details = {**row.details, **details}
            if resolved:
                row.status = "resolved"
                row.resolved_at = now
                counts["resolved"] += 1
            else:
                counts["updated"] += 1
    return counts


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return None if value is None else str(value)
