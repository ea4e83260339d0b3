"""`titans retrain` (check, run, decide, schedule, status) and `titans scheduler`."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from titans.cli._common import console, err_console, settings
from titans.config import MODEL_KEYS
from titans.errors import InputError
from titans.retraining.pipeline import AutoRetrainingPipeline, RetrainOutcome

app = typer.Typer(
    help="Retraining triggers, the retraining chain and the challenger's A/B decision.",
    no_args_is_help=True,
)

_ACTOR = typer.Option(
    "retraining", "--actor", "--as", envvar="TITANS_ACTOR", help="Who acts (audited)."
)


def _print_outcome(outcome: RetrainOutcome) -> None:
    table = Table(title=f"retrain {outcome.model_name}: {outcome.status}")
    for column in ("step", "result", "seconds", "detail"):
        table.add_column(column)
    for step in outcome.steps:
        mark = "[green]ok[/green]" if step.ok else "[red]failed[/red]"
        table.add_row(step.name, mark, f"{step.seconds:.1f}", step.detail)
    console.print(table)
    if outcome.detail:
        console.print(outcome.detail)


@app.command("check")
def check(
    model: str | None = typer.Option(None, "--model", "-m", help="One model (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
) -> None:
    """Say which models should be retrained now, and why (exit 0 either way)."""
    pipeline = AutoRetrainingPipeline(settings())
    keys = [model] if model else [k for k in MODEL_KEYS if k != "cashflow"]
    checks = [pipeline.check_triggers(k) for k in keys]
    if as_json:
        console.print_json(json.dumps([c.to_dict() for c in checks], default=str))
        return
    for c in checks:
        if c.fire:
            console.print(f"[bold red]retrain {c.model_name}[/bold red]: " + "; ".join(c.reasons))
        else:
            gate = c.checks.get("new_labels", {}).get("gate") if c.checks else None
            note = c.checks.get("note") or gate or "no trigger past its threshold"
            console.print(f"[green]{c.model_name}[/green]: {note}")


@app.command("run")
def run(
    model: str = typer.Argument(..., help=f"Model key ({', '.join(MODEL_KEYS)})."),
    reason: str = typer.Option("manual", "--reason", help="Why (tagged and audited)."),
    data: Path | None = typer.Option(
        None, "--data", help="Base training data (CSV/parquet); default: production's version."
    ),
    cutoff: str | None = typer.Option(None, "--cutoff", help="Use labels up to this date."),
    ab_test: bool = typer.Option(True, "--ab-test/--no-ab-test", help="Start the A/B test."),
    actor: str = _ACTOR,
) -> None:
    """Retrain MODEL now: data → validate → train → register → gates → staging → A/B test."""
    from titans.data.io import load_transactions

    pipeline = AutoRetrainingPipeline(settings(), progress=lambda msg: console.print(f"· {msg}"))
    base = load_transactions(data) if data is not None else None
    outcome = pipeline.trigger_retraining(
        model, reason, base_data=base, cutoff_date=cutoff, actor=actor, start_ab_test=ab_test
    )
    _print_outcome(outcome)
    if not outcome.ok:
        raise typer.Exit(1)


@app.command("decide")
def decide(
    model: str = typer.Argument(..., help="Model key."),
    actor: str = _ACTOR,
) -> None:
    """Read the running retrain A/B test: promote B if it won, discard it if A did."""
    pipeline = AutoRetrainingPipeline(settings())
    result = pipeline.decide(model, actor=actor)
    console.print(f"{result.get('test') or model}: {result.get('decision')} → {result['action']}")
    if result.get("reason"):
        console.print(str(result["reason"]))


@app.command("schedule")
def schedule(
    model: str = typer.Argument(..., help="Model key."),
    cron: str = typer.Argument(..., help="Cron expression, e.g. '0 3 * * *' (UTC)."),
) -> None:
    """Save a retraining schedule for MODEL (run by `titans scheduler`)."""
    saved = AutoRetrainingPipeline(settings()).schedule_retraining(model, cron)
    console.print(f"{saved['model']}: {saved['schedule']}; next: {', '.join(saved['next'])}")


@app.command("status")
def status() -> None:
    """Production and staging versions, retrain locks, running A/B tests, schedules."""
    rows = AutoRetrainingPipeline(settings()).status()
    table = Table(title="retraining")
    for column in ("model", "production", "staging", "retrain lock", "A/B test", "schedule"):
        table.add_column(column)
    for row in rows:
        lock = row["retrain_lock"]
        table.add_row(
            row["model"],
            row["production"] or "–",
            row["staging"] or "–",
            f"{lock[0]} until {lock[1]}" if lock else "–",
            row["ab_test"] or "–",
            row["schedule"] or "–",
        )
    console.print(table)


def scheduler(
    check_every: float = typer.Option(
        3600.0, "--check-every", min=1.0, help="Seconds between trigger checks of every model."
    ),
    once: bool = typer.Option(False, "--once", help="Check once, retrain what fires, exit."),
) -> None:
    """Run the retraining schedules and the trigger checks in this process (APScheduler)."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    s = settings()
    pipeline = AutoRetrainingPipeline(s)

    def check_all() -> None:
        for key in (k for k in MODEL_KEYS if k != "cashflow"):
            try:
                found = pipeline.check_triggers(key)
                if found.fire:
                    reason = "; ".join(found.reasons)
                    console.print(f"retrain {found.model_name}: {reason}")
                    _print_outcome(pipeline.trigger_retraining(key, reason))
                decision = pipeline.decide(key)
                if decision["action"] not in ("none", "continue"):
                    console.print(f"{found.model_name}: {decision['action']}")
            except Exception as exc:  # one model's failure must not stop the scheduler
                err_console.print(f"[red]{key}: {type(exc).__name__}: {exc}[/red]")

    def scheduled(model: str) -> None:
        outcome = pipeline.trigger_retraining(model, "schedule")
        _print_outcome(outcome)

    if once:
        check_all()
        return
    runner = BackgroundScheduler(timezone="UTC")
    runner.add_job(check_all, "interval", seconds=check_every, id="check", max_instances=1)
    for name, cron in pipeline.schedules().items():
        try:
            trigger = CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise InputError(
                f"schedule of {name} {cron!r} is not a cron expression: {exc}"
            ) from exc
        runner.add_job(scheduled, trigger, args=[name], id=f"retrain:{name}", max_instances=1)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    runner.start()
    console.print(
        f"scheduler running: checks every {check_every:g} s, "
        f"{len(pipeline.schedules())} schedule(s)"
    )
    try:
        stop.wait()
    finally:
        runner.shutdown(wait=False)
    console.print("scheduler stopped")
