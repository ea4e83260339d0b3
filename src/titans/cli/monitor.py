"""`titans monitor`: run the model monitor over a window, export it on a schedule, report."""

from __future__ import annotations

import json
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from titans.cli._common import console, err_console, settings
from titans.errors import InputError
from titans.monitoring.model_monitor import (
    MODEL_KEYS,
    ModelMonitor,
    WindowReport,
    parse_window,
)

app = typer.Typer(
    help="Drift, prediction quality, concept drift and performance of the served models.",
    no_args_is_help=True,
)

_MODELS = typer.Option(
    None,
    "--model",
    "-m",
    help=f"Model key or registered name ({', '.join(MODEL_KEYS)}); repeatable. Default: all four.",
)
_WINDOW = typer.Option(None, "--window", "-w", help="Window length, e.g. 1h, 30m, 1d (default 1h).")
_STYLE = {"breach": "bold red", "ok": "green", "insufficient": "yellow", "unavailable": "dim"}


def _end(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(
            f"--end {value!r} is not an ISO time; use e.g. 2026-11-26T12:00:00Z"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _attach_alerts(monitor: ModelMonitor) -> None:
    from titans.monitoring.alerts import AlertManager

    # the alert counters join the monitor's registry: `monitor serve` exports them with the rest
    monitor.alert_manager = AlertManager(monitor.settings, monitor.store, registry=monitor.registry)


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}"


def _print_report(report: WindowReport) -> None:
    title = (
        f"{report.model_name} v{report.model_version or '?'}: {report.predictions:,} predictions "
        f"{report.start:%Y-%m-%d %H:%M:%S} → {report.end:%H:%M:%S} UTC"
    )
    table = Table(title=title)
    for column in ("kind", "metric", "value", "threshold", "verdict", "detail"):
        table.add_column(column, no_wrap=column in ("kind", "verdict"))
    for result in report.results:
        for m in result.metrics:
            if m.metric.startswith("drift:") and m.verdict != "breach":
                continue
            style = _STYLE.get(m.verdict, "")
            table.add_row(
                result.kind,
                m.metric,
                _fmt(m.value),
                _fmt(m.threshold),
                f"[{style}]{m.verdict}[/{style}]" if style else m.verdict,
                m.detail,
            )
    console.print(table)
    drifted = report.drifted_features
    console.print(
        f"drifted features: [bold red]{', '.join(drifted)}[/bold red]"
        if drifted
        else "drifted features: none"
    )
    for event in report.alerts:
        if event["state"] in ("firing", "resolved") and event["notified"]:
            channels = ", ".join(event["delivered_to"]) or "no channel"
            console.print(
                f"alert [bold]{event['rule']}[/bold] {event['state']}: "
                f"{event['metric']}={event['value']:.4g} → {channels}"
            )


def _models(monitor: ModelMonitor, models: list[str] | None) -> list[str]:
    keys = models or [k for k in MODEL_KEYS if k != "cashflow"]
    return [monitor.resolve(m)[0] for m in keys]


@app.command("run")
def run(
    models: list[str] | None = _MODELS,
    window: str | None = _WINDOW,
    end: str | None = typer.Option(None, "--end", help="Window end, ISO time (default: now)."),
    alerts: bool = typer.Option(True, "--alerts/--no-alerts", help="Feed the alert rules."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Compute one window from the prediction log: store, export and (by default) alert."""
    monitor = ModelMonitor(settings())
    if alerts:
        _attach_alerts(monitor)
    length = parse_window(window or monitor.settings.monitor.window)
    reports = [monitor.run_window(name, length, end=_end(end)) for name in _models(monitor, models)]
    if as_json:
        console.print_json(json.dumps([r.to_dict() for r in reports], default=str))
        return
    for report in reports:
        _print_report(report)


@app.command("report")
def report_cmd(
    model: str = typer.Option("category", "--model", "-m", help="Model key or registered name."),
    window: str | None = _WINDOW,
    end: str | None = typer.Option(None, "--end", help="Window end, ISO time (default: now)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="HTML file (default: <home>/reports/monitoring-<model>.html)."
    ),
) -> None:
    """Write the self-contained HTML monitoring report of one model and window."""
    from titans.monitoring.report import write_report

    s = settings()
    monitor = ModelMonitor(s)
    name, key = monitor.resolve(model)
    data = monitor.build_report(name, window, end=_end(end))
    path = write_report(data, out or s.home_dir / "reports" / f"monitoring-{key}.html")
    drifted = (data.get("drift") or {}).get("drifted_features") or []
    console.print(
        f"report of {name} ({data['predictions']:,} predictions, "
        f"drifted: {', '.join(drifted) or 'none'}) → {path}"
    )


@app.command("serve")
def serve(
    port: int = typer.Option(9102, "--port", "-p", min=1, max=65535, help="Metrics port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind."),
    models: list[str] | None = _MODELS,
    window: str | None = _WINDOW,
    interval: float | None = typer.Option(
        None, "--interval", min=0.1, help="Seconds between passes (default: settings)."
    ),
    passes: int = typer.Option(0, "--passes", min=0, help="Stop after N passes (0: run on)."),
    alerts: bool = typer.Option(True, "--alerts/--no-alerts", help="Feed the alert rules."),
) -> None:
    """Run the monitor on a schedule and serve its metrics at http://HOST:PORT/metrics."""
    from prometheus_client import start_http_server

    monitor = ModelMonitor(settings())
    if alerts:
        _attach_alerts(monitor)
    names = _models(monitor, models)
    length = parse_window(window or monitor.settings.monitor.window)
    every = interval or monitor.settings.monitor.interval_seconds
    server, thread = start_http_server(port, addr=host, registry=monitor.registry)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(
        f"monitor exporting http://{host}:{port}/metrics: {', '.join(names)}, "
        f"window {length}, every {every:g} s"
    )
    done = 0
    try:
        while not stop.is_set():
            for name in names:
                try:
                    report = monitor.run_window(name, length)
                except Exception as exc:  # one failing model must not stop the exporter
                    err_console.print(f"[red]{name}: {type(exc).__name__}: {exc}[/red]")
                    continue
                drifted = ", ".join(report.drifted_features) or "none"
                console.print(
                    f"{datetime.now(UTC):%H:%M:%S} {name}: {report.predictions:,} predictions, "
                    f"drifted: {drifted}"
                )
            done += 1
            if passes and done >= passes:
                break
            stop.wait(every)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    console.print(f"monitor stopped after {done} pass(es)")


@app.command("quality")
def quality(
    window: str | None = _WINDOW,
    model: str | None = typer.Option(
        None, "--model", "-m", help="Only this model's inputs (default: every model's)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the HTML report here."),
) -> None:
    """Input quality of the transactions the API received in the window (score and faults)."""
    from titans.monitoring.data_quality import DataQualityMonitor

    s = settings()
    length = parse_window(window or s.monitor.window)
    name = ModelMonitor(s).resolve(model)[0] if model else None
    report = DataQualityMonitor(s).generate_quality_report(length, model_name=name, html_path=out)
    checked = report["input_quality"]
    table = Table(title=f"input quality, {report['predictions']:,} predictions in {length}")
    table.add_column("check")
    table.add_column("score", justify="right")
    for check, score in checked["breakdown"].items():
        table.add_row(check, f"{score:.4f}")
    table.add_row("[bold]quality score[/bold]", f"[bold]{checked['quality_score']:.4f}[/bold]")
    console.print(table)
    for fault in checked["faults"]:
        console.print(f"[yellow]{fault['check']}[/yellow] {fault['column']}: {fault['count']} rows")
    if out is not None:
        console.print(f"report → {report['html_path']}")
