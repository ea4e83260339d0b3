"""Alert channels: Slack, email (SMTP), PagerDuty Events v2, a JSON webhook, Alertmanager.

Each channel is a small class with ``send(notification)`` (the NotificationChannel protocol of
``titans.notifications``) that delivers once and raises :class:`DeliveryError` on failure;
retries, backoff and the bookkeeping of failures belong to the AlertManager. Every message
names the model, the metric, its value, the threshold and what to do.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import httpx

from titans.errors import TitansError
from titans.notifications import Notification

#: PagerDuty Events v2 severities by titans severity
_PAGERDUTY_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
_SLACK_EMOJI = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}


class DeliveryError(TitansError):
    """A channel could not deliver an alert; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def status_of(note: Notification) -> str:
    """``firing`` or ``resolved``."""
    return note.tags.get("status", "firing")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "n/a" if value is None else str(value)


@dataclass(frozen=True)
class AlertText:
    """What every channel says about one notification, in plain words."""

    headline: str
    model: str
    metric: str
    value: str
    threshold: str
    action: str
    message: str
    #: context the alert carries beyond its identity, e.g. ``drifted features: amount, ...``
    context: str = ""

    def facts(self) -> str:
        """One line with the model, the metric, its value and the threshold."""
        return (
            f"model: {self.model} | metric: {self.metric} = {self.value} "
            f"(threshold {self.threshold})"
        )

    def body(self) -> str:
        """The full plain-text message."""
        lines = [
            self.headline,
            self.message,
            self.facts(),
            self.context,
            f"what to do: {self.action}",
        ]
        return "\n".join(line for line in lines if line)


def describe(note: Notification) -> AlertText:
    """The words of one notification (details: model_name, metric, value, threshold, action)."""
    d = note.details
    status = status_of(note)
    escalated = note.tags.get("escalated") == "true"
    prefix = "ESCALATED " if escalated else ""
    state = "RESOLVED" if status == "resolved" else note.severity.upper()
    ref = f" (alert #{note.alert_id})" if note.alert_id is not None else ""
    comparison = d.get("comparison")
    threshold = _fmt(d.get("threshold"))
    if comparison and d.get("threshold") is not None:
        threshold = f"{comparison} {threshold}"
    if status == "resolved":
        action = "nothing: the metric is back within its threshold"
    else:
        action = str(d.get("action") or "look at the model's dashboard and decide")
        if note.alert_id is not None:
            action += f"; acknowledge with `titans alerts ack {note.alert_id}`"
    return AlertText(
        headline=f"[{prefix}{state}] {note.title}{ref}",
        model=str(d.get("model_name") or "platform-wide"),
        metric=str(d.get("metric") or "n/a"),
        value=_fmt(d.get("value")),
        threshold=threshold,
        action=action,
        message=str(d.get("message") or ""),
        context=_annotations(d.get("annotations")),
    )


def _annotations(annotations: Any) -> str:
    """``key: value`` pairs of an alert's annotations on one line (lists joined by commas)."""
    if not isinstance(annotations, dict) or not annotations:
        return ""
    parts = []
    for key, value in annotations.items():
        text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        parts.append(f"{str(key).replace('_', ' ')}: {text}")
    return " | ".join(parts)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class HttpChannel:
    """A channel that POSTs one JSON document per alert."""

    name = "http"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url
        self.timeout = timeout

    def __repr__(self) -> str:  # the URL may hold a token: never show it
        return f"{type(self).__name__}()"

    def payload(self, note: Notification) -> Any:
        """The JSON body for one notification."""
        raise NotImplementedError

    def target(self) -> str:
        """Where the payload is POSTed."""
        return self.url

    def send(self, notification: Notification) -> None:
        """POST the payload; raise DeliveryError unless the receiver answers 2xx."""
        try:
            response = httpx.post(
                self.target(), json=self.payload(notification), timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            retryable = response.status_code >= 500 or response.status_code == 429
            raise DeliveryError(
                f"{self.name}: receiver answered HTTP {response.status_code}: "
                f"{response.text[:200]}",
                retryable=retryable,
            )


class SlackChannel(HttpChannel):
    """A Slack incoming webhook: ``{"text": ..., "blocks": [...]}``."""

    name = "slack"

    def payload(self, note: Notification) -> dict[str, Any]:
        words = describe(note)
        emoji = (
            ":white_check_mark:" if status_of(note) == "resolved" else _SLACK_EMOJI[note.severity]
        )
        fields = [
            {"type": "mrkdwn", "text": f"*Model*\n{words.model}"},
            {"type": "mrkdwn", "text": f"*Metric*\n{words.metric}"},
            {"type": "mrkdwn", "text": f"*Value*\n{words.value}"},
            {"type": "mrkdwn", "text": f"*Threshold*\n{words.threshold}"},
        ]
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": words.headline[:150], "emoji": True},
            },
            {"type": "section", "fields": fields},
        ]
        if words.message:
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": words.message[:3000]}}
            )
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*What to do:* {words.action}"[:3000]},
            }
        )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"fingerprint `{note.fingerprint[:12]}` · {_iso(note.ts)}",
                    }
                ],
            }
        )
        return {"text": f"{emoji} {words.headline}: {words.facts()}", "blocks": blocks}


class PagerDutyChannel(HttpChannel):
    """PagerDuty Events API v2: trigger, then resolve; ``dedup_key`` is the fingerprint."""

    name = "pagerduty"

    def __init__(self, routing_key: str, url: str, *, timeout: float = 5.0) -> None:
        super().__init__(url, timeout=timeout)
        self.routing_key = routing_key

    def payload(self, note: Notification) -> dict[str, Any]:
        if status_of(note) == "resolved":
            return {
                "routing_key": self.routing_key,
                "event_action": "resolve",
                "dedup_key": note.fingerprint,
            }
        words = describe(note)
        summary = f"{words.headline}: {words.facts()}; what to do: {words.action}"
        return {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": note.fingerprint,
            "payload": {
                "summary": summary[:1024],
                "source": words.model if words.model != "platform-wide" else "titans",
                "severity": _PAGERDUTY_SEVERITY[note.severity],
                "timestamp": _iso(note.ts),
                "component": words.metric,
                "group": str(note.details.get("category") or "titans"),
                "class": str(note.details.get("rule") or note.title),
                "custom_details": {
                    **note.details,
                    "alert_id": note.alert_id,
                    "what_to_do": words.action,
                },
            },
        }


class WebhookChannel(HttpChannel):
    """A generic JSON webhook: every field of the alert, flat and documented here."""

    name = "webhook"

    def payload(self, note: Notification) -> dict[str, Any]:
        words = describe(note)
        return {
            "version": "1",
            "status": status_of(note),
            "escalated": note.tags.get("escalated") == "true",
            "severity": note.severity,
            "title": note.title,
            "text": words.body(),
            "alert_id": note.alert_id,
            "fingerprint": note.fingerprint,
            "ts": _iso(note.ts),
            "model_name": words.model,
            "metric": words.metric,
            "value": note.details.get("value"),
            "threshold": note.details.get("threshold"),
            "what_to_do": words.action,
            "labels": {k: v for k, v in note.tags.items() if k not in ("status", "escalated")},
            "details": note.details,
        }


class AlertmanagerChannel(HttpChannel):
    """Prometheus Alertmanager: ``POST <url>/api/v2/alerts`` with a list of one alert."""

    name = "alertmanager"

    def __init__(self, url: str, *, generator_url: str | None = None, timeout: float = 5.0) -> None:
        super().__init__(url, timeout=timeout)
        self.generator_url = generator_url

    def target(self) -> str:
        return self.url.rstrip("/") + "/api/v2/alerts"

    def payload(self, note: Notification) -> list[dict[str, Any]]:
        words = describe(note)
        labels = {k: str(v) for k, v in note.tags.items() if k not in ("status", "escalated")}
        labels.setdefault("alertname", str(note.details.get("rule") or note.title))
        labels["severity"] = note.severity
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": {
                "summary": f"{words.headline}: {words.facts()}",
                "description": words.message or words.facts(),
                "what_to_do": words.action,
                "value": words.value,
                "threshold": words.threshold,
            },
            "startsAt": _iso(_started(note)),
        }
        if status_of(note) == "resolved":
            alert["endsAt"] = _iso(note.ts)
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return [alert]


def _started(note: Notification) -> datetime:
    raw = note.details.get("started_at")
    if isinstance(raw, str):
        try:
            return datetime.fromisoformat(raw)
        except ValueError:
            return note.ts
    return note.ts


class EmailChannel:
    """Email over SMTP (plain text), one message to every address in ``to``."""

    name = "email"

    def __init__(
        self, host: str, port: int, sender: str, to: list[str], *, timeout: float = 5.0
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.to = list(to)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"EmailChannel({self.host}:{self.port} -> {', '.join(self.to)})"

    def message(self, note: Notification) -> EmailMessage:
        """The email for one notification."""
        words = describe(note)
        msg = EmailMessage()
        msg["Subject"] = f"{words.headline} - {words.model}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["X-Titans-Fingerprint"] = note.fingerprint
        msg.set_content(words.body() + "\n")
        return msg

    def send(self, notification: Notification) -> None:
        """Hand the email to the SMTP server; raise DeliveryError when it refuses or is down."""
        if not self.to:
            raise DeliveryError("email: no recipients; set TITANS_ALERT_EMAIL_TO", retryable=False)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.send_message(self.message(notification))
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"email: recipients refused: {exc}", retryable=False) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}") from exc
