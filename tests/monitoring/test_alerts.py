"""AlertManager delivering for real to local receivers: an HTTP server on 127.0.0.1 standing in
for Slack, PagerDuty, a JSON webhook and Alertmanager, and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import doctest
import json
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner

from _support.receivers import Recorder as _Recorder
from _support.receivers import recording_server
from titans.cli import _register_groups, app
from titans.config import Settings
from titans.errors import ConfigError, InputError
from titans.monitoring.alerts import AlertManager, AlertRule
from titans.monitoring.alerts import manager as manager_module
from titans.monitoring.alerts import rules as rules_module
from titans.notifications import Notifier
from titans.store import Store
from titans.store.models import Alert

runner = CliRunner()
_register_groups()

ROUTING_KEY = "a" * 32
START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- local receivers


class _Mailbox:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[_Recorder]:
    with recording_server() as server:
        yield server


@pytest.fixture
def mailbox() -> Iterator[_Mailbox]:
    box = _Mailbox(_free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def alert_env(
    titans_home: Path, receiver: _Recorder, mailbox: _Mailbox, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """Every channel configured through the environment, pointing at the local receivers."""
    env = {
        "TITANS_SLACK_WEBHOOK_URL": f"{receiver.url}/slack",
        "TITANS_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "TITANS_PAGERDUTY_EVENTS_URL": f"{receiver.url}/pagerduty",
        "TITANS_SMTP_HOST": "127.0.0.1",
        "TITANS_SMTP_PORT": str(mailbox.port),
        "TITANS_ALERT_EMAIL_FROM": "titans@example.test",
        "TITANS_ALERT_EMAIL_TO": '["oncall@example.test"]',
        "TITANS_ALERTS__WEBHOOK_URL": f"{receiver.url}/hook",
        "TITANS_ALERTS__ALERTMANAGER_URL": f"{receiver.url}/am",
        "TITANS_ALERTS__GENERATOR_URL": "http://grafana.example.test/d/titans",
        "TITANS_ALERTS__RETRY_BACKOFF_SECONDS": "0.001",
        "TITANS_ALERTS__DELIVERY_TIMEOUT_SECONDS": "3",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    s.ensure_home()
    return s


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def manager(alert_env: Settings, clock: Clock, sleeps: list[float]) -> AlertManager:
    return AlertManager(alert_env, Store(alert_env), clock=clock, sleep=sleeps.append)


def _rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "name": "amount_mae_high",
        "metric": "amount_mae",
        "category": "performance",
        "severity": "critical",
        "comparison": ">",
        "threshold": 250.0,
        "for": 1,
        "keep_firing_for": 1,
        "cooldown": "1h",
        "description": "the amount model's MAE on feedback is above its budget",
        "action": "retrain the amount model",
    }
    fields.update(overrides)
    return AlertRule.model_validate(fields)


AMOUNT = {"model_name": "titans-amount"}


# ---------------------------------------------------------------- rules


def test_default_rules_cover_every_family_with_severity_threshold_for_and_cooldown(
    settings: Settings,
) -> None:
    rules = AlertManager(settings, Store(settings), channels={}).setup_alert_rules()
    assert {r.category for r in rules} == {
        "performance",
        "drift",
        "data_quality",
        "system",
        "business",
    }
    metrics = {r.metric for r in rules if r.category == "system"}
    assert {"latency_p95_ms", "error_rate", "registry_up", "prediction_log_dropped"} <= metrics
    registry_down = next(r for r in rules if r.name == "registry_down")
    assert registry_down.severity == "critical"
    assert registry_down.for_evaluations == 2
    assert registry_down.cooldown_seconds == 1800
    assert registry_down.breached(0.0) and not registry_down.breached(1.0)
    assert all(r.action for r in rules)


def test_a_broken_rules_file_names_the_rule_and_field(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "rules:\n  - name: x\n    metric: m\n    category: system\n    severity: loud\n"
        "    threshold: 1\n    action: do it\n"
    )
    manager = AlertManager(settings, Store(settings), channels={})
    with pytest.raises(ConfigError, match=r"rule #1 \(x\): severity"):
        manager.setup_alert_rules(bad)
    with pytest.raises(ConfigError, match="cannot be read"):
        manager.setup_alert_rules(tmp_path / "missing.yaml")
    with pytest.raises(InputError, match="no alert rule watches 'nope'"):
        manager.evaluate("nope", 1.0)


def test_rules_load_from_the_path_in_settings(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "defaults:\n  keep_firing_for: 2\nrules:\n"
        "  - name: queue_deep\n    metric: queue_depth\n    category: system\n"
        "    severity: warning\n    threshold: 100\n    for: 2\n    cooldown: 10m\n"
        "    action: add a worker\n"
    )
    settings.alerts.rules_path = path
    manager = AlertManager(settings, Store(settings), channels={})
    (rule,) = manager.rules
    assert (rule.name, rule.for_evaluations, rule.keep_firing_for) == ("queue_deep", 2, 2)
    assert rule.cooldown_seconds == 600


# ---------------------------------------------------------------- channels and payloads


def test_a_critical_alert_reaches_every_channel_in_its_documented_shape(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox
) -> None:
    (event,) = manager.evaluate(_rule(), 312.5, AMOUNT)
    assert event.state == "firing" and event.notified
    assert {d.channel for d in event.deliveries} == {
        "slack",
        "email",
        "pagerduty",
        "webhook",
        "alertmanager",
    }
    assert all(d.ok and d.attempts == 1 for d in event.deliveries)
    assert all(r.content_type == "application/json" for r in receiver.received)

    def names_everything(text: str) -> None:
        for part in ("titans-amount", "amount_mae", "312.5", "250", "retrain the amount model"):
            assert part in text, (part, text)

    (slack,) = receiver.bodies("/slack")
    assert isinstance(slack["text"], str) and isinstance(slack["blocks"], list)
    assert slack["blocks"][0]["type"] == "header"
    assert slack["blocks"][0]["text"]["type"] == "plain_text"
    assert all(b["type"] in {"header", "section", "context"} for b in slack["blocks"])
    names_everything(json.dumps(slack["blocks"]))
    assert "CRITICAL" in slack["text"]

    (page,) = receiver.bodies("/pagerduty")
    assert page["routing_key"] == ROUTING_KEY
    assert page["event_action"] == "trigger"
    assert page["dedup_key"] == event.fingerprint
    assert set(page["payload"]) >= {"summary", "source", "severity", "custom_details"}
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["source"] == "titans-amount"
    assert len(page["payload"]["summary"]) <= 1024
    names_everything(page["payload"]["summary"])

    (hook,) = receiver.bodies("/hook")
    assert hook["status"] == "firing" and hook["severity"] == "critical"
    assert hook["alert_id"] == event.alert_id and hook["fingerprint"] == event.fingerprint
    assert (hook["model_name"], hook["metric"], hook["value"], hook["threshold"]) == (
        "titans-amount",
        "amount_mae",
        312.5,
        250.0,
    )
    assert hook["labels"]["alertname"] == "amount_mae_high"
    names_everything(hook["text"])

    (am,) = receiver.bodies("/am/api/v2/alerts")
    assert isinstance(am, list) and len(am) == 1
    assert set(am[0]) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert am[0]["labels"] == {
        "alertname": "amount_mae_high",
        "severity": "critical",
        "model_name": "titans-amount",
    }
    assert all(isinstance(v, str) for v in am[0]["annotations"].values())
    assert datetime.fromisoformat(am[0]["startsAt"]) == START
    assert "endsAt" not in am[0]
    assert am[0]["generatorURL"] == "http://grafana.example.test/d/titans"

    ((rcpt, mail),) = mailbox.messages
    assert rcpt == ["oncall@example.test"]
    assert mail["From"] == "titans@example.test"
    assert "CRITICAL" in mail["Subject"] and "titans-amount" in mail["Subject"]
    names_everything(mail.get_payload(decode=True).decode())

    sent = manager.registry.get_sample_value(
        "titans_alerts_sent_total", {"channel": "slack", "severity": "critical"}
    )
    assert sent == 1.0


def test_warning_and_info_are_routed_by_severity(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox
) -> None:
    warning = manager.evaluate(_rule(severity="warning"), 300.0, AMOUNT)[0]
    assert {d.channel for d in warning.deliveries} == {"slack", "webhook", "alertmanager"}
    assert receiver.bodies("/pagerduty") == [] and mailbox.messages == []

    info = manager.send_alert("model_promoted", "v3 is in production", "info", AMOUNT)
    assert {d.channel for d in info.deliveries} == {"webhook"}
    assert info.state == "resolved"
    assert len(receiver.bodies("/slack")) == 1
    assert [h["severity"] for h in receiver.bodies("/hook")] == ["warning", "info"]


# ---------------------------------------------------------------- dedup, for, resolve


def test_a_firing_alert_notifies_once_per_cooldown_and_each_label_set_is_its_own_alert(
    manager: AlertManager, receiver: _Recorder, clock: Clock
) -> None:
    rule = _rule(severity="warning")
    first = manager.evaluate(rule, 300.0, AMOUNT)[0]
    for _ in range(10):
        clock.advance(minutes=5)
        again = manager.evaluate(rule, 320.0, AMOUNT)[0]
        assert again.state == "firing" and not again.notified
        assert again.alert_id == first.alert_id
    assert len(receiver.bodies("/slack")) == 1

    other = manager.evaluate(rule, 300.0, {"model_name": "titans-cashflow"})[0]
    assert other.notified and other.fingerprint != first.fingerprint
    assert len(receiver.bodies("/slack")) == 2

    clock.advance(minutes=11)  # 61 minutes after the first notification: a reminder
    reminder = manager.evaluate(rule, 330.0, AMOUNT)[0]
    assert reminder.notified and reminder.alert_id == first.alert_id
    assert len(receiver.bodies("/slack")) == 3
    assert len(manager.history(status="firing")) == 2


def test_a_restarted_manager_keeps_the_open_alert_and_its_cooldown(
    manager: AlertManager, alert_env: Settings, receiver: _Recorder, clock: Clock
) -> None:
    rule = _rule(severity="warning", keep_firing_for=1)
    fired = manager.evaluate(rule, 300.0, AMOUNT)[0]
    clock.advance(minutes=10)
    restarted = AlertManager(alert_env, Store(alert_env), clock=clock)
    again = restarted.evaluate(rule, 300.0, AMOUNT)[0]
    assert again.alert_id == fired.alert_id and not again.notified
    assert len(receiver.bodies("/slack")) == 1
    resolved = restarted.evaluate(rule, 100.0, AMOUNT)[0]
    assert resolved.state == "resolved" and resolved.notified  # it knows the firing was told
    assert "RESOLVED" in receiver.bodies("/slack")[-1]["text"]


def test_for_needs_n_consecutive_breaching_evaluations(
    manager: AlertManager, receiver: _Recorder
) -> None:
    rule = _rule(**{"for": 3})
    states = [manager.evaluate(rule, v, AMOUNT)[0].state for v in (300, 300, 200, 300, 300)]
    assert states == ["pending", "pending", "ok", "pending", "pending"]
    assert receiver.received == [] and manager.history() == []
    assert manager.evaluate(rule, 300.0, AMOUNT)[0].state == "firing"
    assert len(receiver.bodies("/slack")) == 1


def test_a_cleared_alert_sends_one_resolve_notification(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox, clock: Clock
) -> None:
    rule = _rule(keep_firing_for=2)
    fired = manager.evaluate(rule, 300.0, AMOUNT)[0]
    clock.advance(minutes=1)
    assert manager.evaluate(rule, 100.0, AMOUNT)[0].state == "firing"  # one good is not enough
    clock.advance(minutes=1)
    resolved = manager.evaluate(rule, 90.0, AMOUNT)[0]
    assert resolved.state == "resolved" and resolved.notified
    assert resolved.alert_id == fired.alert_id
    assert manager.evaluate(rule, 80.0, AMOUNT)[0].state == "ok"

    slack = receiver.bodies("/slack")
    assert len(slack) == 2 and "RESOLVED" in slack[1]["text"]
    pages = receiver.bodies("/pagerduty")
    assert [p["event_action"] for p in pages] == ["trigger", "resolve"]
    assert pages[1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": fired.fingerprint,
    }
    am = receiver.bodies("/am/api/v2/alerts")[1][0]
    assert datetime.fromisoformat(am["endsAt"]) == clock.now
    assert datetime.fromisoformat(am["startsAt"]) == START
    assert "RESOLVED" in mailbox.messages[1][1]["Subject"]
    (record,) = manager.history()
    assert record.status == "resolved" and record.resolved_at == clock.now
    assert [d["kind"] for d in record.details["deliveries"] if d["channel"] == "slack"] == [
        "firing",
        "resolve",
    ]


def test_a_metric_flapping_around_its_threshold_does_not_cause_alert_fatigue(
    manager: AlertManager, receiver: _Recorder, clock: Clock
) -> None:
    """100 evaluations a minute apart, each a coin flip above or below the threshold."""
    rule = next(r for r in manager.setup_alert_rules() if r.name == "data_bad_row_share_high")
    assert rule.for_evaluations == 1  # the most trigger-happy shipped rule
    coin = random.Random(20261126)
    breaching = 0
    for _ in range(100):
        above = coin.random() < 0.5
        breaching += above
        manager.evaluate(rule.metric, 0.051 if above else 0.049, AMOUNT)
        clock.advance(minutes=1)
    assert breaching >= 40  # a naive alerter would have paged ~50 times
    notifications = len(receiver.bodies("/slack"))
    assert 1 <= notifications <= 5, notifications
    pages = receiver.bodies("/pagerduty")
    escalations = [p for p in pages if "ESCALATED" in p.get("payload", {}).get("summary", "")]
    assert len(pages) - len(escalations) == notifications  # each notification paged once
    assert len(escalations) <= 2  # and at most one escalation per cooldown hour


# ---------------------------------------------------------------- escalation, ack, silence


def test_an_unacknowledged_critical_alert_is_escalated_once_past_its_deadline(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox, clock: Clock
) -> None:
    fired = manager.evaluate(_rule(), 300.0, AMOUNT)[0]
    manager.evaluate(_rule(name="slow", severity="warning"), 300.0, AMOUNT)
    before = len(receiver.bodies("/pagerduty")), len(mailbox.messages)

    assert manager.check_escalations(clock.advance(minutes=10)) == []
    (escalated,) = manager.check_escalations(clock.advance(minutes=6))  # 16 min > 15 min
    assert escalated.alert_id == fired.alert_id
    assert {d.channel for d in escalated.deliveries} == {"pagerduty", "email"}
    assert (len(receiver.bodies("/pagerduty")), len(mailbox.messages)) == (
        before[0] + 1,
        before[1] + 1,
    )
    assert "ESCALATED" in receiver.bodies("/pagerduty")[-1]["payload"]["summary"]
    assert "ESCALATED" in mailbox.messages[-1][1]["Subject"]
    assert manager.check_escalations(clock.advance(hours=1)) == []  # once only
    record = manager.history(status="firing")[-1]
    assert record.id == fired.alert_id and record.escalated_at == clock.now - timedelta(hours=1)


def test_escalation_happens_on_its_own_while_the_metric_keeps_arriving(
    manager: AlertManager, receiver: _Recorder, clock: Clock
) -> None:
    for _ in range(4):  # one observation every 5 minutes: 0, 5, 10, 15
        manager.evaluate(_rule(), 300.0, AMOUNT)
        clock.advance(minutes=5)
    summaries = [p["payload"]["summary"] for p in receiver.bodies("/pagerduty")]
    assert len(summaries) == 1 and "ESCALATED" not in summaries[0]
    manager.evaluate(_rule(), 300.0, AMOUNT)  # 20 minutes: past the 15-minute deadline
    summaries = [p["payload"]["summary"] for p in receiver.bodies("/pagerduty")]
    assert len(summaries) == 2 and "ESCALATED" in summaries[1]


def test_escalate_alert_by_hand_sends_to_the_escalation_channels(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox
) -> None:
    warning = manager.evaluate(_rule(severity="warning"), 300.0, AMOUNT)[0]
    assert receiver.bodies("/pagerduty") == []
    assert warning.alert_id is not None
    event = manager.escalate_alert(warning.alert_id)
    assert [d.channel for d in event.deliveries if d.ok] == ["pagerduty", "email"]
    assert len(mailbox.messages) == 1 and "ESCALATED" in mailbox.messages[0][1]["Subject"]
    (page,) = receiver.bodies("/pagerduty")
    assert page["payload"]["severity"] == "warning" and "ESCALATED" in page["payload"]["summary"]
    with pytest.raises(InputError, match="no alert 999"):
        manager.escalate_alert(999)


def test_acknowledging_stops_escalation_and_reminders(
    manager: AlertManager, receiver: _Recorder, clock: Clock
) -> None:
    fired = manager.evaluate(_rule(), 300.0, AMOUNT)[0]
    assert fired.alert_id is not None
    record = manager.acknowledge(fired.alert_id, "ann")
    assert (record.status, record.ack_by, record.acked_at) == ("acknowledged", "ann", START)
    clock.advance(hours=2)
    assert manager.check_escalations() == []
    still = manager.evaluate(_rule(), 400.0, AMOUNT)[0]
    assert still.state == "firing" and not still.notified
    assert len(receiver.bodies("/slack")) == 1
    clock.advance(minutes=1)
    assert manager.evaluate(_rule(), 10.0, AMOUNT)[0].state == "resolved"  # resolve still told
    assert len(receiver.bodies("/slack")) == 2
    with pytest.raises(InputError, match="resolved already"):
        manager.acknowledge(fired.alert_id, "ann")


def test_a_silence_suppresses_matching_alerts_until_it_ends(
    manager: AlertManager, receiver: _Recorder, clock: Clock
) -> None:
    silence = manager.silence(
        {"alertname": "amount_mae_high", "model_name": "titans-amount"},
        timedelta(hours=1),
        "ann",
        "retraining in progress",
    )
    muted = manager.evaluate(_rule(), 300.0, AMOUNT)[0]
    assert muted.state == "firing" and muted.suppressed_by == "silenced" and not muted.notified
    assert receiver.received == []
    assert muted.alert_id is not None
    assert manager.history()[0].details["silenced_by"] == silence.id  # still recorded

    other = manager.evaluate(_rule(), 300.0, {"model_name": "titans-cashflow"})[0]
    assert other.notified

    clock.advance(minutes=30)  # past the escalation deadline, inside the silence
    assert [e.alert_id for e in manager.check_escalations()] == [other.alert_id]

    clock.advance(hours=1)  # the silence ended: the muted alert, never told, is told now
    later = manager.evaluate(_rule(), 300.0, AMOUNT)[0]
    assert later.notified and later.alert_id == muted.alert_id
    assert manager.silences() == []
    with pytest.raises(InputError, match="not in the future"):
        manager.silence({"alertname": "x"}, clock.now - timedelta(minutes=1), "ann")


# ---------------------------------------------------------------- failed deliveries


def test_a_failed_delivery_is_retried_recorded_and_counted_never_raised(
    manager: AlertManager, receiver: _Recorder, sleeps: list[float], alert_env: Settings
) -> None:
    receiver.status["/slack"] = 500
    receiver.status["/hook"] = 400
    manager.channels["pagerduty"].url = f"http://127.0.0.1:{_free_port()}/refused"  # type: ignore[attr-defined]

    event = manager.evaluate(_rule(), 300.0, AMOUNT)[0]
    by_channel = {d.channel: d for d in event.deliveries}
    assert not by_channel["slack"].ok and by_channel["slack"].attempts == 3
    assert "HTTP 500" in (by_channel["slack"].error or "")
    assert not by_channel["webhook"].ok and by_channel["webhook"].attempts == 1  # 4xx: no retry
    assert not by_channel["pagerduty"].ok and by_channel["pagerduty"].attempts == 3
    assert "ConnectError" in (by_channel["pagerduty"].error or "")
    assert by_channel["email"].ok and by_channel["alertmanager"].ok
    assert len(receiver.bodies("/slack")) == 3
    backoff = alert_env.alerts.retry_backoff_seconds
    assert sleeps == [backoff, 2 * backoff, backoff, 2 * backoff]  # slack, then pagerduty

    (record,) = manager.history()
    errors = record.details["delivery_errors"]
    assert {e.split(":")[0] for e in errors} == {"slack", "webhook", "pagerduty"}
    for channel in ("slack", "webhook", "pagerduty"):
        failures = manager.registry.get_sample_value(
            "titans_alert_delivery_failures_total", {"channel": channel}
        )
        assert failures == 1.0


# ---------------------------------------------------------------- send_alert and the Notifier


def test_send_alert_deduplicates_by_type_and_model(
    manager: AlertManager, receiver: _Recorder, mailbox: _Mailbox, clock: Clock
) -> None:
    meta = {
        "model_name": "titans-category",
        "metric": "macro_f1",
        "value": 0.61,
        "threshold": 0.7,
        "action": "retrain the category model",
    }
    first = manager.send_alert("performance_degradation", "macro-F1 dropped", "critical", meta)
    clock.advance(minutes=5)
    second = manager.send_alert("performance_degradation", "macro-F1 dropped", "critical", meta)
    assert first.notified and not second.notified and second.suppressed_by == "cooldown"
    assert second.alert_id == first.alert_id
    assert manager.history()[0].details["occurrences"] == 2
    assert len(mailbox.messages) == 1
    body = mailbox.messages[0][1].get_payload(decode=True).decode()
    for part in ("titans-category", "macro_f1", "0.61", "0.7", "retrain the category model"):
        assert part in body

    assert first.alert_id is not None
    manager.resolve(first.alert_id)
    assert [p["event_action"] for p in receiver.bodies("/pagerduty")] == ["trigger", "resolve"]
    with pytest.raises(InputError, match="severity 'loud'"):
        manager.send_alert("x", "y", "loud")


def test_the_alert_manager_is_a_notifier_channel(
    manager: AlertManager, receiver: _Recorder, alert_env: Settings
) -> None:
    notifier = Notifier(alert_env, manager.store, channels=[manager])
    note = notifier.notify("critical", "rollback failed", {"model_name": "titans-anomaly"})
    (page,) = receiver.bodies("/pagerduty")
    assert page["dedup_key"] == note.fingerprint
    with manager.store.session() as session:
        row = session.get(Alert, note.alert_id)
        assert row is not None
        assert {d["channel"] for d in row.details["deliveries"]} >= {"pagerduty", "slack"}


def test_routes_naming_an_unknown_channel_are_refused(settings: Settings) -> None:
    settings.alerts.routes = {"critical": ["slak"]}
    with pytest.raises(ConfigError, match="unknown channel"):
        AlertManager(settings, Store(settings))


# ---------------------------------------------------------------- CLI


def test_cli_test_list_ack_and_silence(
    alert_env: Settings, receiver: _Recorder, mailbox: _Mailbox
) -> None:
    tested = runner.invoke(app, ["alerts", "test", "--severity", "critical"])
    assert tested.exit_code == 0, tested.output
    for channel in ("slack", "email", "pagerduty", "webhook", "alertmanager"):
        assert channel in tested.output
    assert "failed" not in tested.output
    assert len(receiver.bodies("/slack")) == 1 and len(mailbox.messages) == 1

    listed = runner.invoke(app, ["alerts", "list"])
    assert listed.exit_code == 0, listed.output
    assert "titans_test_alert" in listed.output and "firing" in listed.output
    alert_id = AlertManager(alert_env).history()[0].id

    acked = runner.invoke(app, ["alerts", "ack", str(alert_id), "--actor", "ann"])
    assert acked.exit_code == 0, acked.output
    assert f"alert {alert_id} (titans_test_alert) acknowledged by ann" in acked.output
    still_open = runner.invoke(app, ["alerts", "list"])
    assert "acknowledged" in still_open.output and "ack ann" in still_open.output
    resolved_only = runner.invoke(app, ["alerts", "list", "--status", "resolved"])
    assert "no resolved alerts" in resolved_only.output

    missing = runner.invoke(app, ["alerts", "ack", "999", "--actor", "ann"])
    assert isinstance(missing.exception, InputError)
    assert "no alert 999" in str(missing.exception)

    silenced = runner.invoke(
        app,
        ["alerts", "silence", "alertname=registry_down", "--for", "2h", "--reason", "upgrade"],
    )
    assert silenced.exit_code == 0, silenced.output
    assert "silence 1 until" in silenced.output and "registry_down" in silenced.output
    (active,) = AlertManager(alert_env).silences()
    assert active.matchers == {"alertname": "registry_down"} and active.reason == "upgrade"

    receiver.status["/slack"] = 500
    failing = runner.invoke(app, ["alerts", "test", "--channel", "slack"])
    assert failing.exit_code == 1
    assert "failed" in failing.output and "HTTP 500" in failing.output


def test_cli_test_without_channels_says_what_to_set(titans_home: Path) -> None:
    result = runner.invoke(app, ["alerts", "test"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)
    assert "TITANS_SLACK_WEBHOOK_URL" in str(result.exception)


def test_module_examples() -> None:
    for module in (rules_module, manager_module):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
