"""`titans train`: fit, log and register the models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from titans.cli._common import console, progress, settings
from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from titans.models.train import TrainingResult


def train(
    data: Path | None = typer.Option(None, "--data", help="Export CSV/parquet to train on."),
    generate: int | None = typer.Option(None, "--generate", help="Generate N synthetic rows."),
    models: str = typer.Option(",".join(MODEL_KEYS), "--models", help="Comma-separated models."),
    mode: str = typer.Option("ci", "--mode", help="ci: small generated set; full: 1,000,000 rows."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default from settings)."),
) -> None:
    """Train the models, log each to MLflow with its reference profile, register versions."""
    s = settings()
    if mode not in {"ci", "full"}:
        raise InputError(f"--mode {mode!r} is not known; use ci or full")
    if data is not None and generate is not None:
        raise InputError("give either --data or --generate, not both")
    keys = [k.strip() for k in models.split(",") if k.strip()]
    seed = s.seed if seed is None else seed
    frame, source = load_training_frame(data, generate, mode, seed, s)
    results = run_training(frame, keys, seed, source)
    console.print(results_table(results))


def load_training_frame(
    data: Path | None, generate: int | None, mode: str, seed: int, s: Settings
) -> tuple[pd.DataFrame, str]:
    """The frame to train on: a validated export, or generated rows."""
    from titans.data.io import load_transactions
    from titans.data.synth import generate as generate_rows

    if data is not None:
        with console.status(f"validating {data}"):
            frame = load_transactions(data, max_bad_share=s.max_bad_row_share)
        return frame, str(data)
    rows = generate if generate is not None else (s.full_rows if mode == "full" else s.ci_rows)
    with console.status(f"generating {rows:,} rows (seed {seed})"):
        frame = generate_rows(rows, seed=seed)
    return frame, f"generated:rows={rows},seed={seed}"


def run_training(
    frame: pd.DataFrame, keys: list[str], seed: int, source: str
) -> list[TrainingResult]:
    """Train with a progress bar: one tick per model."""
    from titans.models.train import train_models

    with progress() as bar:
        task = bar.add_task("training", total=len(keys))

        def on_step(key: str, step: str) -> None:
            bar.update(task, description=f"{key}: {step}")

        results = []
        for key in keys:
            results.extend(
                train_models(frame, models=[key], seed=seed, data_source=source, progress=on_step)
            )
            bar.advance(task)
        bar.update(task, description="training done")
    return results


def results_table(results: list[TrainingResult]) -> Table:
    """Each model's primary metric beside its baseline, and the registered version."""
    table = Table(title="Trained and registered")
    for column in ("model", "version", "metric", "score", "baseline", "margin", "rows", "seconds"):
        table.add_column(column, justify="right" if column not in {"model", "metric"} else "left")
    for r in results:
        ev = r.evaluation
        mark = "[green]✓[/green]" if ev.beats_baseline else "[red]✗[/red]"
        table.add_row(
            r.registered_name,
            r.version,
            f"{ev.primary_metric} ({ev.direction})",
            f"{ev.score:.4g}",
            f"{ev.baseline_score:.4g}",
            f"{ev.margin:+.4g} {mark}",
            f"{r.train_rows:,}/{r.test_rows:,}",
            f"{r.seconds:.1f}",
        )
    return table
