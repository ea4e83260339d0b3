"""AlertManager: rules to alerts, alerts to people, without waking them twice for one problem.

An alert is identified by its fingerprint (rule + labels, or alert type + model for
:meth:`AlertManager.send_alert`). Per fingerprint the manager applies ``for`` (consecutive
breaching evaluations before firing), ``keep_firing_for`` (consecutive good ones before
resolving), a cooldown between notifications, silences and acknowledgements; it routes each
notification to channels by severity, retries with exponential backoff, records every delivery
(and every failure) on the alert's row in the ops store and counts them in its own Prometheus
registry. A failed delivery never raises into the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import func, select

from titans.config import Settings
from titans.errors import ConfigError, InputError
from titans.monitoring.alerts.channels import (
    AlertmanagerChannel,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from titans.monitoring.alerts.rules import AlertRule, load_rules, rule_fingerprint
from titans.notifications import (
    SEVERITIES,
    Notification,
    NotificationChannel,
    Severity,
    _json_ready,
    fingerprint,
)
from titans.store import Store
from titans.store.models import Alert, AlertSilence, utcnow

log = logging.getLogger(__name__)

CHANNEL_NAMES: tuple[str, ...] = ("slack", "email", "pagerduty", "webhook", "alertmanager")
State = Literal["ok", "pending", "firing", "resolved"]
_ACTIVE = ("firing", "acknowledged")


class AlertNotFoundError(InputError):
    """No alert has the id a user gave."""


@dataclass(frozen=True)
class Delivery:
    """One notification handed to one channel: delivered or not, after how many attempts."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class AlertEvent:
    """What one evaluation (or send) did to one alert."""

    name: str
    fingerprint: str
    #: ok: no breach; pending: breaching but not yet for `for` evaluations; firing; resolved
    state: State
    alert_id: int | None = None
    #: True when this call sent a notification (firing, reminder or resolve)
    notified: bool = False
    #: why a due notification was not sent: cooldown, silenced, acknowledged
    suppressed_by: str | None = None
    deliveries: tuple[Delivery, ...] = ()
    value: float | None = None
    threshold: float | None = None

    @property
    def failed_deliveries(self) -> tuple[Delivery, ...]:
        """The deliveries that did not get through."""
        return tuple(d for d in self.deliveries if not d.ok)


@dataclass(frozen=True)
class AlertRecord:
    """One alert as stored in the ops store."""

    id: int
    fingerprint: str
    name: str
    severity: str
    status: str
    first_seen: datetime
    last_sent: datetime | None
    escalated_at: datetime | None
    resolved_at: datetime | None
    ack_by: str | None
    acked_at: datetime | None
    details: dict[str, Any]

    @classmethod
    def from_row(cls, row: Alert) -> AlertRecord:
        return cls(
            id=row.id,
            fingerprint=row.fingerprint,
            name=row.name,
            severity=row.severity,
            status=row.status,
            first_seen=row.first_seen,
            last_sent=row.last_sent,
            escalated_at=row.escalated_at,
            resolved_at=row.resolved_at,
            ack_by=row.ack_by,
            acked_at=row.acked_at,
            details=dict(row.details or {}),
        )


@dataclass(frozen=True)
class SilenceRecord:
    """A silence: alerts whose labels contain every matcher pair are not notified until it ends."""

    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    reason: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when every matcher pair is among ``labels``."""
        return all(labels.get(k) == v for k, v in self.matchers.items())

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at


@dataclass
class _Track:
    """Evaluation state of one fingerprint (streaks in memory; the alert in the store)."""

    breaches: int = 0
    goods: int = 0
    alert_id: int | None = None
    #: whether the open alert's firing was notified (a resolve is sent only then)
    notified: bool = False
    last_notified: datetime | None = None


def build_channels(settings: Settings) -> dict[str, NotificationChannel]:
    """The channels the settings configure (a channel without URL or host is left out)."""
    alerts = settings.alerts
    timeout = alerts.delivery_timeout_seconds
    channels: dict[str, NotificationChannel] = {}
    if settings.slack_webhook_url is not None:
        channels["slack"] = SlackChannel(
            settings.slack_webhook_url.get_secret_value(), timeout=timeout
        )
    if settings.smtp_host:
        channels["email"] = EmailChannel(
            settings.smtp_host,
            settings.smtp_port,
            settings.alert_email_from,
            settings.alert_email_to,
            timeout=timeout,
        )
    if settings.pagerduty_routing_key is not None:
        channels["pagerduty"] = PagerDutyChannel(
            settings.pagerduty_routing_key.get_secret_value(),
            settings.pagerduty_events_url,
            timeout=timeout,
        )
    if alerts.webhook_url is not None:
        channels["webhook"] = WebhookChannel(alerts.webhook_url.get_secret_value(), timeout=timeout)
    if alerts.alertmanager_url:
        channels["alertmanager"] = AlertmanagerChannel(
            alerts.alertmanager_url, generator_url=alerts.generator_url, timeout=timeout
        )
    return channels


class AlertManager:
    """Evaluates alert rules, sends, deduplicates, escalates and records alerts.

    ``clock`` and ``sleep`` are injectable so tests (and replays) control time; channels
    default to those the settings configure.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        *,
        channels: Mapping[str, NotificationChannel] | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.settings = (
            settings if settings is not None else (store.settings if store else Settings())
        )
        self.store = store if store is not None else Store(self.settings)
        self.channels: dict[str, NotificationChannel] = (
            dict(channels) if channels is not None else build_channels(self.settings)
        )
        self._check_routes()
        self._clock = clock
        self._sleep = sleep
        self._rules: list[AlertRule] | None = None
        self._tracks: dict[str, _Track] = {}
        self._lock = threading.RLock()
        # an exporter passes its own registry, so these counters are scraped with its metrics
        self.registry = registry if registry is not None else CollectorRegistry()
        self.sent_total = Counter(
            "titans_alerts_sent",
            "Alert notifications delivered, by channel and severity.",
            ["channel", "severity"],
            registry=self.registry,
        )
        self.delivery_failures_total = Counter(
            "titans_alert_delivery_failures",
            "Alert notifications a channel failed to deliver after every retry.",
            ["channel"],
            registry=self.registry,
        )
        self.suppressed_total = Counter(
            "titans_alerts_suppressed",
            "Alert notifications held back (cooldown, silenced, acknowledged).",
            ["reason"],
            registry=self.registry,
        )

    def _check_routes(self) -> None:
        known = set(CHANNEL_NAMES) | set(self.channels)
        named = {n for names in self.settings.alerts.routes.values() for n in names}
        named |= set(self.settings.alerts.escalation_channels)
        unknown = sorted(named - known)
        if unknown:
            raise ConfigError(
                f"alert routes name unknown channel(s) {', '.join(unknown)}; use "
                f"{', '.join(sorted(known))} in TITANS_ALERTS__ROUTES / ESCALATION_CHANNELS"
            )

    # ------------------------------------------------------------------ rules

    def setup_alert_rules(self, path: str | Path | None = None) -> list[AlertRule]:
        """Load the rules from ``path``, the settings' rules_path or the shipped defaults."""
        source = path if path is not None else self.settings.alerts.rules_path
        with self._lock:
            self._rules = load_rules(source)
            return list(self._rules)

    @property
    def rules(self) -> list[AlertRule]:
        """The rules in force (loaded on first use)."""
        if self._rules is None:
            return self.setup_alert_rules()
        return list(self._rules)

    def evaluate(
        self,
        metric_name_or_rule: str | AlertRule,
        value: float,
        labels: Mapping[str, Any] | None = None,
        *,
        now: datetime | None = None,
        annotations: Mapping[str, Any] | None = None,
    ) -> list[AlertEvent]:
        """Feed one observation of a metric to every rule on it (or to one rule); one event each.

        ``annotations`` (e.g. the drifted features) travel with an alert this call opens, in
        its details and notifications, without being part of its identity (the fingerprint is
        the rule and ``labels``), so a changing annotation never splits one alert into many.

        >>> from titans.store import Store
        >>> manager = AlertManager(Settings(), Store(url="sqlite://"), channels={})
        >>> [e.state for e in manager.evaluate("error_rate", 0.5, {"model_name": "m"})]
        ['pending']
        >>> [e.state for e in manager.evaluate("error_rate", 0.5, {"model_name": "m"})]
        ['firing']
        """
        if isinstance(metric_name_or_rule, AlertRule):
            rules = [metric_name_or_rule]
        else:
            rules = [r for r in self.rules if metric_name_or_rule in (r.name, r.metric)]
            if not rules:
                metrics = sorted({r.metric for r in self.rules})
                raise InputError(
                    f"no alert rule watches {metric_name_or_rule!r}; known metrics: "
                    f"{', '.join(metrics)} (add a rule to the rules YAML)"
                )
        clean = {str(k): str(v) for k, v in (labels or {}).items()}
        when = now or self._clock()
        with self._lock:
            extra = dict(annotations or {})
            events = [self._evaluate_rule(rule, float(value), clean, when, extra) for rule in rules]
            self.check_escalations(when)
            return events

    def _evaluate_rule(
        self,
        rule: AlertRule,
        value: float,
        labels: dict[str, str],
        now: datetime,
        annotations: dict[str, Any] | None = None,
    ) -> AlertEvent:
        all_labels = {**rule.labels, **labels}
        fp = rule_fingerprint(rule.name, all_labels)
        track = self._track(fp)
        base: dict[str, Any] = {
            "name": rule.name,
            "fingerprint": fp,
            "value": value,
            "threshold": rule.threshold,
        }
        if rule.breached(value):
            track.breaches += 1
            track.goods = 0
            if track.alert_id is None:
                if track.breaches < rule.for_evaluations:
                    return AlertEvent(state="pending", **base)
                alert_id = self._open_rule_alert(rule, value, all_labels, fp, now, annotations)
                track.alert_id, track.notified = alert_id, False
                return self._notify_if_due(rule, track, alert_id, "firing", now, base)
            row = self._touch(track.alert_id, value, now)
            if row is None or row.status == "resolved":  # closed elsewhere: start over
                track.alert_id = None
                track.breaches = 0
                return self._evaluate_rule(rule, value, labels, now, annotations)
            if row.status == "acknowledged":
                return AlertEvent(state="firing", alert_id=track.alert_id, **base)
            return self._notify_if_due(rule, track, track.alert_id, "reminder", now, base)
        track.goods += 1
        track.breaches = 0
        if track.alert_id is None:
            return AlertEvent(state="ok", **base)
        if track.goods < rule.keep_firing_for:
            self._touch(track.alert_id, value, now)
            return AlertEvent(state="firing", alert_id=track.alert_id, **base)
        alert_id, notified = track.alert_id, track.notified
        track.alert_id, track.notified = None, False
        record = self._close(alert_id, value, now)
        if record is None or not notified:
            return AlertEvent(state="resolved", alert_id=alert_id, **base)
        deliveries = self._dispatch(self._note(record, "resolved", now), "resolve", now)
        return AlertEvent(
            state="resolved",
            alert_id=alert_id,
            notified=True,
            deliveries=deliveries,
            **base,
        )

    def _track(self, fp: str) -> _Track:
        track = self._tracks.get(fp)
        if track is not None:
            return track
        track = _Track()
        with self.store.session() as session:
            latest = session.scalars(
                select(Alert).where(Alert.fingerprint == fp).order_by(Alert.id.desc()).limit(1)
            ).first()
            if latest is not None and latest.status in _ACTIVE:
                track.alert_id = latest.id
                track.notified = bool(latest.details.get("notified"))
            track.last_notified = session.scalar(
                select(func.max(Alert.last_sent)).where(Alert.fingerprint == fp)
            )
        self._tracks[fp] = track
        return track

    def _open_rule_alert(
        self,
        rule: AlertRule,
        value: float,
        labels: dict[str, str],
        fp: str,
        now: datetime,
        annotations: dict[str, Any] | None = None,
    ) -> int:
        model = labels.get("model_name") or labels.get("model")
        title = f"{rule.name} - {model}" if model else rule.name
        details = {
            "rule": rule.name,
            "category": rule.category,
            "metric": rule.metric,
            "value": value,
            "threshold": rule.threshold,
            "comparison": rule.comparison,
            "model_name": model,
            "message": rule.description,
            "action": rule.action,
            "labels": {"alertname": rule.name, "severity": rule.severity, **labels},
            "started_at": now.isoformat(),
            **({"annotations": annotations} if annotations else {}),
        }
        return self._insert(fp, title, rule.severity, details, now)

    def _insert(
        self, fp: str, title: str, severity: str, details: dict[str, Any], now: datetime
    ) -> int:
        resolved = severity == "info"
        with self.store.session() as session:
            row = Alert(
                fingerprint=fp,
                name=title[:200],
                severity=severity,
                status="resolved" if resolved else "firing",
                first_seen=now,
                resolved_at=now if resolved else None,
                details=_json_ready({**details, "notified": False, "deliveries": []}),
            )
            session.add(row)
            session.flush()
            return int(row.id)

    def _touch(self, alert_id: int, value: float | None, now: datetime) -> AlertRecord | None:
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is None:
                return None
            if value is not None and row.status != "resolved":
                row.details = _json_ready(
                    {**row.details, "value": value, "last_evaluated_at": now.isoformat()}
                )
            return AlertRecord.from_row(row)

    def _close(self, alert_id: int, value: float | None, now: datetime) -> AlertRecord | None:
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is None:
                return None
            if row.status != "resolved":
                row.status = "resolved"
                row.resolved_at = now
                if value is not None:
                    row.details = _json_ready({**row.details, "value": value})
            return AlertRecord.from_row(row)

    def _cooldown(self, rule: AlertRule | None) -> timedelta:
        seconds = rule.cooldown_seconds if rule is not None else None
        if seconds is None:
            seconds = float(self.settings.alert_cooldown_seconds)
        return timedelta(seconds=seconds)

    def _notify_if_due(
        self,
        rule: AlertRule | None,
        track: _Track,
        alert_id: int,
        kind: str,
        now: datetime,
        base: dict[str, Any],
        *,
        channels: Iterable[str] | None = None,
    ) -> AlertEvent:
        if track.last_notified is not None and now - track.last_notified < self._cooldown(rule):
            if kind == "firing":  # a new alert held back: say so; a quiet reminder is normal
                self.suppressed_total.labels("cooldown").inc()
                self._annotate(alert_id, {"suppressed_by": "cooldown"})
                return AlertEvent(
                    state="firing", alert_id=alert_id, suppressed_by="cooldown", **base
                )
            return AlertEvent(state="firing", alert_id=alert_id, **base)
        record = self._record(alert_id)
        silence = self._silenced_by(record.details.get("labels") or {}, now)
        if silence is not None:
            self.suppressed_total.labels("silenced").inc()
            self._annotate(alert_id, {"silenced_by": silence.id})
            return AlertEvent(state="firing", alert_id=alert_id, suppressed_by="silenced", **base)
        deliveries = self._dispatch(self._note(record, "firing", now), kind, now, channels=channels)
        track.notified = True
        track.last_notified = now
        return AlertEvent(
            state="firing", alert_id=alert_id, notified=True, deliveries=deliveries, **base
        )

    # ------------------------------------------------------------------ direct alerts

    def send_alert(
        self,
        alert_type: str,
        message: str,
        severity: Severity | str = "warning",
        metadata: Mapping[str, Any] | None = None,
        *,
        dedupe: bool = True,
        channels: Iterable[str] | None = None,
        now: datetime | None = None,
    ) -> AlertEvent:
        """Record and route one alert now; an open alert of the same type and model is
        notified again only after the cooldown (unless ``dedupe=False``). ``channels``
        overrides routing by severity. Never raises for a failed delivery: see the returned
        event's ``deliveries``."""
        if severity not in SEVERITIES:
            raise InputError(
                f"alert severity {severity!r} is unknown; use one of {', '.join(SEVERITIES)}"
            )
        if not alert_type or not alert_type.strip():
            raise InputError("an alert needs a non-empty alert_type naming what happened")
        when = now or self._clock()
        clean: dict[str, Any] = _json_ready(dict(metadata or {}))
        name = alert_type.strip()
        fp = fingerprint(name, clean)
        labels = {
            "alertname": name,
            "severity": str(severity),
            **{k: v for k, v in clean.items() if isinstance(v, str) and len(v) <= 200},
        }
        base: dict[str, Any] = {
            "name": name,
            "fingerprint": fp,
            "value": _as_float(clean.get("value")),
            "threshold": _as_float(clean.get("threshold")),
        }
        # info events (a promotion, a finished retrain) are events, not conditions: each is told
        dedupe = dedupe and severity != "info"
        with self._lock:
            track = self._track(fp) if dedupe else _Track()
            if dedupe and track.alert_id is not None and severity != "info":
                row = self._touch(track.alert_id, base["value"], when)
                if row is not None and row.status in _ACTIVE:
                    self._annotate(
                        row.id, {"occurrences": int(row.details.get("occurrences", 1)) + 1}
                    )
                    if row.status == "acknowledged":
                        self.suppressed_total.labels("acknowledged").inc()
                        return AlertEvent(
                            state="firing", alert_id=row.id, suppressed_by="acknowledged", **base
                        )
                    return self._notify_if_due(
                        None, track, row.id, "firing", when, base, channels=channels
                    )
            details = {
                **clean,
                "message": message,
                "labels": labels,
                "started_at": when.isoformat(),
                "occurrences": 1,
            }
            alert_id = self._insert(fp, name, str(severity), details, when)
            if severity != "info":
                track.alert_id, track.notified = alert_id, False
            event = self._notify_if_due(
                None, track, alert_id, "firing", when, base, channels=channels
            )
            return replace(event, state="resolved") if severity == "info" else event

    def resolve(self, alert_id: int, *, now: datetime | None = None) -> AlertRecord:
        """Mark an alert resolved (e.g. one raised by send_alert) and send the resolve notice."""
        when = now or self._clock()
        with self._lock:
            before = self._record(alert_id)
            if before.status == "resolved":
                return before
            record = self._close(alert_id, None, when) or before
            for track in self._tracks.values():
                if track.alert_id == alert_id:
                    track.alert_id, track.notified = None, False
            if before.details.get("notified"):
                self._dispatch(self._note(record, "resolved", when), "resolve", when)
            return self._record(alert_id)

    # ------------------------------------------------------------------ people

    def acknowledge(self, alert_id: int, by: str, *, now: datetime | None = None) -> AlertRecord:
        """Someone is on it: no more reminders, no escalation."""
        if not by or not by.strip():
            raise InputError("acknowledging needs a name (who is on it); pass --actor")
        when = now or self._clock()
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is None:
                raise AlertNotFoundError(
                    f"no alert {alert_id}; list them with `titans alerts list`"
                )
            if row.status == "resolved":
                raise InputError(f"alert {alert_id} is resolved already; nothing to acknowledge")
            if row.status == "firing":
                row.status = "acknowledged"
                row.ack_by = by.strip()[:200]
                row.acked_at = when
            return AlertRecord.from_row(row)

    def escalate_alert(self, alert_id: int, *, now: datetime | None = None) -> AlertEvent:
        """Send an open alert to the escalation channels now and mark it escalated."""
        when = now or self._clock()
        with self._lock:
            record = self._record(alert_id)
            if record.status == "resolved":
                raise InputError(f"alert {alert_id} is resolved; there is nothing to escalate")
            note = self._note(record, "firing", when, escalated=True)
            deliveries = self._dispatch(
                note, "escalation", when, channels=self.settings.alerts.escalation_channels
            )
            with self.store.session() as session:
                row = session.get(Alert, alert_id)
                if row is not None:
                    row.escalated_at = when
            return AlertEvent(
                name=record.name,
                fingerprint=record.fingerprint,
                state="firing",
                alert_id=alert_id,
                notified=bool(deliveries),
                deliveries=deliveries,
                value=_as_float(record.details.get("value")),
                threshold=_as_float(record.details.get("threshold")),
            )

    def check_escalations(self, now: datetime | None = None) -> list[AlertEvent]:
        """Escalate every critical alert still firing and unacknowledged past its deadline.

        :meth:`evaluate` calls this after each observation, so escalation happens as long as
        metrics flow; a scheduler may call it too. One fingerprint is escalated at most once
        per cooldown, so a flapping critical alert does not page the escalation channel again
        with every new episode.
        """
        when = now or self._clock()
        deadline = when - timedelta(seconds=self.settings.alerts.escalation_after_seconds)
        with self.store.session() as session:
            due = list(
                session.scalars(
                    select(Alert)
                    .where(
                        Alert.status == "firing",
                        Alert.severity == "critical",
                        Alert.escalated_at.is_(None),
                        Alert.first_seen < deadline,
                    )
                    .order_by(Alert.id)
                )
            )
            candidates = []
            for row in due:
                last = session.scalar(
                    select(func.max(Alert.escalated_at)).where(Alert.fingerprint == row.fingerprint)
                )
                rule = self._rule_named(str(row.details.get("rule") or ""))
                if last is not None and when - last < self._cooldown(rule):
                    continue
                candidates.append((row.id, dict(row.details.get("labels") or {})))
        events = []
        for alert_id, labels in candidates:
            if self._silenced_by(labels, when) is not None:
                continue
            events.append(self.escalate_alert(alert_id, now=when))
        return events

    def _rule_named(self, name: str) -> AlertRule | None:
        return next((r for r in self._rules or () if r.name == name), None)

    def silence(
        self,
        matcher: Mapping[str, str],
        until: datetime | timedelta,
        by: str,
        reason: str = "",
        *,
        now: datetime | None = None,
    ) -> SilenceRecord:
        """Hold back notifications of alerts whose labels match until ``until``.

        Matched alerts are still recorded; labels are ``alertname`` (the rule or alert type),
        ``severity`` and the labels given when evaluating (e.g. ``model_name``).
        """
        when = now or self._clock()
        if not matcher:
            raise InputError(
                "a silence needs at least one label matcher, e.g. alertname=registry_down"
            )
        if not by or not by.strip():
            raise InputError("a silence needs a name (who silenced it); pass --actor")
        ends = when + until if isinstance(until, timedelta) else until
        if ends.tzinfo is None:
            raise InputError(f"silence end {ends} has no timezone; give it in UTC")
        if ends <= when:
            raise InputError(
                f"silence end {ends.isoformat()} is not in the future; pick a later time"
            )
        with self.store.session() as session:
            row = AlertSilence(
                matchers={str(k): str(v) for k, v in matcher.items()},
                starts_at=when,
                ends_at=ends,
                created_by=by.strip()[:200],
                reason=reason,
            )
            session.add(row)
            session.flush()
            return _silence_record(row)

    def silences(self, *, active_at: datetime | None = None) -> list[SilenceRecord]:
        """Silences in force at ``active_at`` (default now), newest first."""
        when = active_at or self._clock()
        with self.store.session() as session:
            rows = session.scalars(
                select(AlertSilence)
                .where(AlertSilence.starts_at <= when, AlertSilence.ends_at > when)
                .order_by(AlertSilence.id.desc())
            )
            return [_silence_record(r) for r in rows]

    def history(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
    ) -> list[AlertRecord]:
        """Alerts newest first; ``status`` one of firing, acknowledged, resolved, open."""
        query = select(Alert).order_by(Alert.id.desc()).limit(max(1, limit))
        if status == "open":
            query = query.where(Alert.status.in_(_ACTIVE))
        elif status is not None:
            if status not in ("firing", "acknowledged", "resolved"):
                raise InputError(
                    f"alert status {status!r} is unknown; "
                    "use open, firing, acknowledged or resolved"
                )
            query = query.where(Alert.status == status)
        if since is not None:
            query = query.where(Alert.first_seen >= since)
        with self.store.session() as session:
            return [AlertRecord.from_row(r) for r in session.scalars(query)]

    # ------------------------------------------------------------------ Notifier hook

    def send(self, notification: Notification) -> None:
        """Route a Notifier's notification by severity (the NotificationChannel protocol)."""
        when = self._clock()
        labels = {"alertname": notification.title, "severity": notification.severity}
        if self._silenced_by(labels, when) is not None:
            self.suppressed_total.labels("silenced").inc()
            return
        self._dispatch(notification, "firing", when)

    # ------------------------------------------------------------------ delivery

    def _dispatch(
        self,
        note: Notification,
        kind: str,
        now: datetime,
        *,
        channels: Iterable[str] | None = None,
    ) -> tuple[Delivery, ...]:
        routes = self.settings.alerts.routes
        names = list(channels) if channels is not None else routes.get(note.severity, [])
        deliveries = tuple(
            self._deliver(name, self.channels[name], note)
            for name in names
            if name in self.channels
        )
        if not deliveries:
            log.info(
                "alert %r (%s) has no configured channel for %s", note.title, note.severity, kind
            )
        if note.alert_id is not None:
            self._record_deliveries(note.alert_id, kind, deliveries, now)
        return deliveries

    def _deliver(self, name: str, channel: NotificationChannel, note: Notification) -> Delivery:
        attempts = self.settings.alerts.delivery_attempts
        backoff = self.settings.alerts.retry_backoff_seconds
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                channel.send(note)
            except Exception as exc:  # any channel failure is recorded, never raised
                error = str(exc) or type(exc).__name__
                if attempt < attempts and getattr(exc, "retryable", True):
                    self._sleep(backoff * 2 ** (attempt - 1))
                    continue
                self.delivery_failures_total.labels(name).inc()
                log.warning(
                    "alert %r not delivered to %s after %d attempt(s): %s",
                    note.title,
                    name,
                    attempt,
                    error,
                )
                return Delivery(name, False, attempt, error)
            self.sent_total.labels(name, note.severity).inc()
            return Delivery(name, True, attempt)
        raise AssertionError("unreachable: the loop returns")  # pragma: no cover

    def _record_deliveries(
        self, alert_id: int, kind: str, deliveries: tuple[Delivery, ...], now: datetime
    ) -> None:
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is None:
                return
            details = dict(row.details or {})
            log_entries = list(details.get("deliveries") or [])
            log_entries.extend(
                {
                    "ts": now.isoformat(),
                    "kind": kind,
                    "channel": d.channel,
                    "ok": d.ok,
                    "attempts": d.attempts,
                    "error": d.error,
                }
                for d in deliveries
            )
            details["deliveries"] = log_entries[-200:]  # bounded: a long-lived alert stays small
            failed = [f"{d.channel}: {d.error}" for d in deliveries if not d.ok]
            if failed:
                details["delivery_errors"] = (list(details.get("delivery_errors") or []) + failed)[
                    -50:
                ]
            if kind in ("firing", "reminder"):
                details["notified"] = True
                details.pop("suppressed_by", None)
            row.details = details
            if kind != "resolve":
                row.last_sent = now

    # ------------------------------------------------------------------ helpers

    def _record(self, alert_id: int) -> AlertRecord:
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is None:
                raise AlertNotFoundError(
                    f"no alert {alert_id}; list them with `titans alerts list`"
                )
            return AlertRecord.from_row(row)

    def _annotate(self, alert_id: int, extra: Mapping[str, Any]) -> None:
        with self.store.session() as session:
            row = session.get(Alert, alert_id)
            if row is not None:
                row.details = _json_ready({**row.details, **extra})

    def _silenced_by(self, labels: Mapping[str, Any], now: datetime) -> SilenceRecord | None:
        text = {str(k): str(v) for k, v in labels.items()}
        for silence in self.silences(active_at=now):
            if silence.matches(text):
                return silence
        return None

    def _note(
        self, record: AlertRecord, status: str, now: datetime, *, escalated: bool = False
    ) -> Notification:
        details = {
            k: v
            for k, v in record.details.items()
            if k
            not in ("deliveries", "delivery_errors", "notified", "suppressed_by", "silenced_by")
        }
        tags = {str(k): str(v) for k, v in (record.details.get("labels") or {}).items()}
        tags["status"] = status
        if escalated:
            tags["escalated"] = "true"
        return Notification(
            severity=cast(Severity, record.severity),
            title=record.name,
            details=details,
            fingerprint=record.fingerprint,
            ts=now,
            alert_id=record.id,
            tags=tags,
        )


def _silence_record(row: AlertSilence) -> SilenceRecord:
    return SilenceRecord(
        id=row.id,
        matchers={str(k): str(v) for k, v in row.matchers.items()},
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        reason=row.reason,
    )


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
