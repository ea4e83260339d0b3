"""`titans alerts`: list, acknowledge, silence and test alerts."""

from __future__ import annotations

import json
from datetime import timedelta

import typer
from rich.table import Table

from titans.cli._common import console, settings
from titans.cli.registry import _actor_default
from titans.errors import ConfigError, InputError
from titans.monitoring.alerts import AlertManager
from titans.monitoring.alerts.manager import CHANNEL_NAMES, AlertRecord
from titans.monitoring.alerts.rules import parse_duration

app = typer.Typer(
    help="Alert history, acknowledgements, silences, and a test alert through every channel.",
    no_args_is_help=True,
)

_ACTOR = typer.Option(
    None, "--actor", "--as", envvar="TITANS_ACTOR", help="Who acts (default: the login name)."
)
_CHANNEL_HELP = f"Only these channels ({', '.join(CHANNEL_NAMES)}); repeatable."
_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _value(record: AlertRecord) -> str:
    value = record.details.get("value")
    threshold = record.details.get("threshold")
    if value is None:
        return ""
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    if threshold is not None:
        text += f" {record.details.get('comparison', 'vs')} {threshold:g}"
    return text


@app.command("list")
def list_cmd(
    status: str = typer.Option(
        "open",
        "--status",
        help="open (firing or acknowledged), firing, acknowledged, resolved, all.",
    ),
    limit: int = typer.Option(50, "--limit", min=1, help="Most alerts to show, newest first."),
) -> None:
    """Show alerts from the ops store, newest first."""
    manager = AlertManager(settings())
    records = manager.history(status=None if status == "all" else status, limit=limit)
    if not records:
        console.print(f"no {'' if status == 'all' else status + ' '}alerts")
        return
    table = Table(title=f"alerts ({status})")
    table.add_column("id", justify="right", style="bold", no_wrap=True)
    table.add_column("since (UTC)", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("alert")
    table.add_column("value")
    table.add_column("ack / escalated", style="dim")
    for r in records:
        who = f"ack {r.ack_by}" if r.ack_by else ""
        if r.escalated_at is not None:
            who = (who + ", " if who else "") + "escalated"
        table.add_row(
            str(r.id),
            r.first_seen.strftime("%Y-%m-%d %H:%M:%S"),
            f"[{_STYLE.get(r.severity, '')}]{r.severity}[/]",
            r.status,
            r.name,
            _value(r),
            who,
        )
    console.print(table)


@app.command("ack")
def ack_cmd(
    alert_id: int = typer.Argument(..., help="The alert's id (see `titans alerts list`)."),
    actor: str | None = _ACTOR,
) -> None:
    """Acknowledge an alert: no more reminders and no escalation."""
    record = AlertManager(settings()).acknowledge(alert_id, actor or _actor_default())
    console.print(
        f"alert {record.id} ({record.name}) acknowledged by {record.ack_by}", highlight=False
    )


@app.command("silence")
def silence_cmd(
    matchers: list[str] = typer.Argument(
        ...,
        help="Label matchers NAME=VALUE, e.g. alertname=registry_down model_name=titans-amount.",
    ),
    duration: str = typer.Option("1h", "--for", help="How long, e.g. 30m, 2h, 1d."),
    reason: str = typer.Option("", "--reason", help="Why (kept with the silence)."),
    actor: str | None = _ACTOR,
) -> None:
    """Silence alerts whose labels match: they are still recorded, not notified."""
    matcher: dict[str, str] = {}
    for item in matchers:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InputError(f"matcher {item!r} is not NAME=VALUE, e.g. alertname=registry_down")
        matcher[name.strip()] = value.strip()
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise InputError(f"--for {duration!r}: {exc}") from exc
    silence = AlertManager(settings()).silence(
        matcher, timedelta(seconds=seconds), actor or _actor_default(), reason
    )
    console.print(
        f"silence {silence.id} until {silence.ends_at:%Y-%m-%d %H:%M:%S} UTC for "
        f"{json.dumps(silence.matchers, sort_keys=True)}",
        highlight=False,
    )


@app.command("test")
def test_cmd(
    severity: str = typer.Option(
        "warning", "--severity", help="info, warning or critical: which route to exercise."
    ),
    channel: list[str] | None = typer.Option(None, "--channel", help=_CHANNEL_HELP),
) -> None:
    """Send a test alert through the configured channels and report each delivery."""
    s = settings()
    manager = AlertManager(s)
    if channel:
        unknown = sorted(set(channel) - set(CHANNEL_NAMES))
        if unknown:
            raise InputError(
                f"unknown channel(s) {', '.join(unknown)}; use {', '.join(CHANNEL_NAMES)}"
            )
        manager.channels = {k: v for k, v in manager.channels.items() if k in channel}
    if not manager.channels:
        raise ConfigError(
            "no alert channel is configured; set TITANS_SLACK_WEBHOOK_URL, TITANS_SMTP_HOST, "
            "TITANS_PAGERDUTY_ROUTING_KEY, TITANS_ALERTS__WEBHOOK_URL or "
            "TITANS_ALERTS__ALERTMANAGER_URL"
        )
    event = manager.send_alert(
        "titans_test_alert",
        "Test alert from `titans alerts test`: if you read this, the channel works.",
        severity,
        {
            "model_name": "titans-test",
            "metric": "test_metric",
            "value": 1.0,
            "threshold": 0.0,
            "action": "nothing; this was a test",
        },
        dedupe=False,
        channels=channel or None,
    )
    if not event.deliveries:
        raise ConfigError(
            f"no configured channel is routed for severity {severity!r}; configured: "
            f"{', '.join(sorted(manager.channels))} (see TITANS_ALERTS__ROUTES)"
        )
    table = Table(title=f"test alert {event.alert_id} ({severity})")
    table.add_column("channel")
    table.add_column("result")
    table.add_column("attempts", justify="right")
    for d in event.deliveries:
        table.add_row(
            d.channel, "[green]delivered[/]" if d.ok else "[red]failed[/]", str(d.attempts)
        )
    console.print(table)
    for d in event.failed_deliveries:
        console.print(
            f"[red]{d.channel} failed[/] after {d.attempts} attempt(s): {d.error}",
            highlight=False,
            soft_wrap=True,
        )
    if event.failed_deliveries:
        raise typer.Exit(1)
