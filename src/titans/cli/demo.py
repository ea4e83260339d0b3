"""`titans demo`: run the loop once and print each step."""

from __future__ import annotations

from typing import Any

import typer
from rich.panel import Panel
from rich.table import Table

from titans.cli._common import console, settings
from titans.demo import STEPS, StepResult, run_demo


def demo(
    rows: int | None = typer.Option(None, "--rows", help="Synthetic rows (default: ci_rows)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default from settings)."),
    fast: bool = typer.Option(
        False, "--fast", help="Serve and monitor the category model only: about half the time."
    ),
) -> None:
    """Run the loop once: generate → validate → train → promote → serve → monitor → alert."""
    s = settings()
    console.rule("[bold]Titans MLOps demo")
    console.print(f"home: {s.home_dir}   tracking: {s.tracking_uri}")
    results: list[StepResult] = []
    with console.status("starting") as status:
        for result in run_demo(s, rows=rows, seed=seed, on_progress=status.update, fast=fast):
            results.append(result)
            mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
            console.print(
                f"{mark} [bold]{result.name}[/bold] ({result.seconds:.1f} s): {result.detail}"
            )
            status.update(f"step {len(results) + 1}/{len(STEPS)}")
            _print_step_extras(result)
    _print_models(results)
    ok = len(results) == len(STEPS) and all(r.ok for r in results)
    console.print(_summary(results))
    if not ok:
        raise typer.Exit(1)


def _key_figures(detail: str, limit: int = 90) -> str:
    """The head of a step's (computed) detail, cut at a word."""
    if len(detail) <= limit:
        return detail
    return detail[:limit].rsplit(" ", 1)[0] + " …"


def _summary(results: list[StepResult]) -> Table:
    table = Table(title="Demo summary")
    table.add_column("step", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("key figures")
    table.add_column("seconds", justify="right")
    done = {r.name for r in results}
    for r in results:
        table.add_row(
            r.name,
            "[green]ok[/green]" if r.ok else "[red]failed[/red]",
            _key_figures(r.detail),
            f"{r.seconds:.1f}",
        )
    for name, _ in STEPS:
        if name not in done:
            table.add_row(name, "[yellow]not run[/yellow]", "", "")
    return table


def _fmt(figure: dict[str, Any] | None, spec: str = ".3f") -> str:
    if not figure or figure.get("value") is None:
        return "–"
    text = format(figure["value"], spec)
    return f"[bold red]{text}[/bold red]" if figure.get("verdict") == "breach" else text


def _print_step_extras(result: StepResult) -> None:
    """The replay's windows as a table, and the alert as the console channel shows it."""
    windows = result.data.get("windows")
    if windows:
        table = Table(title="Live traffic, a window a week (category model unless named)")
        for column in (
            "days",
            "predictions",
            "labels",
            "drift share",
            "est. accuracy",
            "real accuracy",
            "amount MAE",
            "drifted features (category)",
        ):
            table.add_column(column)
        for w in windows:
            category = w["category"]
            table.add_row(
                w["days"],
                f"{w['predictions']:,}",
                f"{w['feedback']:,}",
                _fmt(category.get("drift_share"), ".0%"),
                _fmt(category.get("estimated_accuracy")),
                _fmt(category.get("realised_accuracy")),
                _fmt(w.get("amount", {}).get("realised_mae"), ".1f"),
                ", ".join(category["drifted_features"]) or "none",
            )
        console.print(table)
    text = result.data.get("text")
    if text:
        console.print(Panel(text, title="alert (console channel)", border_style="yellow"))


def _print_models(results: list[StepResult]) -> None:
    for r in results:
        models = r.data.get("models")
        if not models:
            continue
        table = Table(title="Models vs their baselines (held-out, time split)")
        for column in ("model", "version", "metric", "score", "baseline", "margin"):
            table.add_column(column)
        for m in models:
            table.add_row(
                m["registered_name"],
                m["version"],
                m["primary_metric"],
                f"{m['metrics'][m['primary_metric']]:.4f}",
                f"{m['baseline_metrics'][m['primary_metric']]:.4f}",
                f"{m['margin']:+.4f}",
            )
        console.print(table)
