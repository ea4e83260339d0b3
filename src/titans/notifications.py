"""Notifier: record an operational event as a row in the ops store's ``alerts`` table, and log it.

This is the one place library code reports "something happened that a person should hear
about" (a promotion, a rollback, a failed retrain). Today it records and logs; the AlertManager
of titans.monitoring.alerts (Slack, email, PagerDuty, webhooks, routing by severity, cooldowns)
plugs in as a *channel*: any object with ``send(notification) -> None``, passed in ``channels``
or added with :meth:`Notifier.add_channel`. A channel that fails never fails the caller: the
failure is logged and kept on the row (``details["delivery_errors"]``).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, get_args

from titans.config import Settings
from titans.errors import InputError
from titans.store import Store
from titans.store.models import Alert, utcnow

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = get_args(Severity)
_LOG_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


@dataclass(frozen=True)
class Notification:
    """One event as channels receive it; ``alert_id`` is its row in the ``alerts`` table."""

    severity: Severity
    title: str
    details: dict[str, Any]
    fingerprint: str
    ts: datetime
    alert_id: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


class NotificationChannel(Protocol):
    """Where notifications go besides the store and the log (Slack, email, PagerDuty, ...)."""

    def send(self, notification: Notification) -> None:
        """Deliver one notification; raise on failure (the Notifier records it)."""


def fingerprint(title: str, details: Mapping[str, Any]) -> str:
    """A stable id of *what* is being reported: the title plus the model it is about.

    >>> fingerprint("promoted", {"model_name": "titans-amount"})[:12]
    '892d6a3cf92d'
    """
    subject = f"{title}|{details.get('model_name', '')}"
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


class Notifier:
    """Records each notification in the ``alerts`` table and logs it at its severity.

    ``info`` events are stored as already resolved (there is nothing to act on); ``warning``
    and ``critical`` ones are stored ``firing`` until someone acknowledges or resolves them.

    >>> notifier = Notifier(store=Store(url="sqlite://"))
    >>> n = notifier.notify("info", "model promoted", {"model_name": "titans-amount"})
    >>> n.alert_id, n.severity
    (1, 'info')
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        channels: Iterable[NotificationChannel] = (),
    ) -> None:
        self.settings = settings if settings is not None else (store.settings if store else None)
        self.store = store if store is not None else Store(self.settings)
        self.channels: list[NotificationChannel] = list(channels)

    def add_channel(self, channel: NotificationChannel) -> None:
        """Also deliver every later notification to ``channel`` (the AlertManager's hook)."""
        self.channels.append(channel)

    def notify(
        self, severity: Severity | str, title: str, details: Mapping[str, Any] | None = None
    ) -> Notification:
        """Record, log and deliver one notification; return it with its ``alert_id``."""
        if severity not in SEVERITIES:
            raise InputError(
                f"notification severity {severity!r} is unknown; use one of {', '.join(SEVERITIES)}"
            )
        if not title or not title.strip():
            raise InputError("a notification needs a non-empty title saying what happened")
        clean = _json_ready(dict(details or {}))
        now = utcnow()
        level: Severity = severity  # type: ignore[assignment]
        note = Notification(level, title.strip(), clean, fingerprint(title.strip(), clean), now)
        resolved = level == "info"
        with self.store.session() as session:
            row = Alert(
                fingerprint=note.fingerprint,
                name=note.title[:200],
                severity=level,
                status="resolved" if resolved else "firing",
                first_seen=now,
                last_sent=now,
                resolved_at=now if resolved else None,
                details=clean,
            )
            session.add(row)
            session.flush()
            alert_id = int(row.id)
        note = Notification(level, note.title, clean, note.fingerprint, now, alert_id)
        log.log(_LOG_LEVEL[level], "%s: %s %s", level, note.title, clean)
        self._deliver(note)
        return note

    def _deliver(self, note: Notification) -> None:
        errors = []
        for channel in self.channels:
            try:
                channel.send(note)
            except Exception as exc:  # a channel outage must never fail a promotion
                name = type(channel).__name__
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.warning("notification %r not delivered by %s: %s", note.title, name, exc)
        if errors and note.alert_id is not None:
            with self.store.session() as session:
                row = session.get(Alert, note.alert_id)
                if row is not None:
                    row.details = {**row.details, "delivery_errors": errors}


def _json_ready(value: Any) -> Any:
    """Details as plain JSON values (numpy scalars unwrapped, anything odd as text)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_ready(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):  # NaN/inf are not JSON
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
