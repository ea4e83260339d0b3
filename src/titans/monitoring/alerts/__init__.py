"""Alerting: rules from YAML, routing by severity to Slack, email, PagerDuty, webhooks and
Alertmanager, deduplication, cooldowns, silences, acknowledgements and escalation."""

from __future__ import annotations

from titans.monitoring.alerts.channels import (
    AlertmanagerChannel,
    DeliveryError,
    EmailChannel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
)
from titans.monitoring.alerts.manager import (
    AlertEvent,
    AlertManager,
    AlertNotFoundError,
    AlertRecord,
    Delivery,
    SilenceRecord,
    build_channels,
)
from titans.monitoring.alerts.rules import AlertRule, load_rules, rule_fingerprint

__all__ = [
    "AlertEvent",
    "AlertManager",
    "AlertNotFoundError",
    "AlertRecord",
    "AlertRule",
    "AlertmanagerChannel",
    "Delivery",
    "DeliveryError",
    "EmailChannel",
    "PagerDutyChannel",
    "SilenceRecord",
    "SlackChannel",
    "WebhookChannel",
    "build_channels",
    "load_rules",
    "rule_fingerprint",
]
