"""`titans experiments`: list MLflow experiments, compare their runs, find the best run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from titans.cli import _common
from titans.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from titans.experiments.experiment_manager import ExperimentManager

app = typer.Typer(
    help="List MLflow experiments, compare their runs and find the best run by a metric.",
    no_args_is_help=True,
)


def _manager() -> ExperimentManager:
    # imported here so `titans --help` does not load MLflow
    from titans.experiments.experiment_manager import ExperimentManager

    return ExperimentManager(_common.settings())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    if hasattr(value, "strftime"):
        return "" if value != value else value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@app.command("list")
def list_experiments() -> None:
    """List the experiments in the tracking store, most recently updated first."""
    manager = _manager()
    frame = manager.list_experiments()
    table = Table(title=f"Experiments at {manager.tracking_uri}")
    table.add_column("id", justify="right")
    table.add_column("name", style="bold")
    table.add_column("description")
    table.add_column("last update (UTC)")
    for row in frame.itertuples(index=False):
        table.add_row(row.experiment_id, row.name, row.description, _cell(row.last_update_time))
    _common.console.print(table)
    if frame.empty:
        _common.console.print("no experiments yet: `titans train` creates one per model")


@app.command("compare")
def compare(
    experiments: list[str] = typer.Argument(..., help="Experiment names or ids."),
    sort: str | None = typer.Option(
        None, "--sort", help="Sort by this metric, best first (its direction is inferred)."
    ),
    limit: int = typer.Option(20, "--limit", min=1, help="Show at most this many runs."),
    show_params: bool = typer.Option(False, "--params", help="Also show parameter columns."),
    csv: Path | None = typer.Option(None, "--csv", help="Also write every run to this CSV."),
) -> None:
    """Compare the runs of one or more experiments side by side: metrics as columns."""
    from titans.experiments.experiment_manager import metric_direction

    frame = _manager().compare_experiments(experiments)
    if sort is not None:
        column = f"metrics.{sort}"
        if column not in frame.columns:
            known = ", ".join(c.removeprefix("metrics.") for c in frame if c.startswith("metrics."))
            raise InputError(f"no run logged metric {sort!r}; metrics logged: {known or 'none'}")
        ascending = metric_direction(sort) == "min"
        frame = frame.sort_values(column, ascending=ascending, na_position="last", kind="stable")
    if csv is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(csv, index=False)
    _print_runs(frame, limit=limit, show_params=show_params)
    if csv is not None:
        _common.console.print(f"wrote {len(frame)} runs to {csv}")


def _print_runs(frame: pd.DataFrame, *, limit: int, show_params: bool) -> None:
    value_columns = [c for c in frame.columns if c.startswith("metrics.")]
    if show_params:
        value_columns += [c for c in frame.columns if c.startswith("params.")]
    table = Table(title=f"{len(frame)} runs" + (f" (first {limit})" if len(frame) > limit else ""))
    table.add_column("run", style="bold")
    table.add_column("run id", overflow="fold")
    table.add_column("experiment")
    table.add_column("started (UTC)")
    for column in value_columns:
        table.add_column(column.split(".", 1)[1], justify="right")
    for _, row in frame.head(limit).iterrows():
        table.add_row(
            _cell(row["run_name"]),
            _cell(row["run_id"]),
            _cell(row["experiment_name"]),
            _cell(row["start_time"]),
            *(_cell(row[c]) for c in value_columns),
        )
    _common.console.print(table)


@app.command("best")
def best(
    experiment: str = typer.Argument(..., help="Experiment name or id."),
    metric: str = typer.Option(..., "--metric", "-m", help="Metric to rank runs by."),
    direction: str | None = typer.Option(
        None, "--direction", help="'min' or 'max'; inferred from the metric name when omitted."
    ),
) -> None:
    """Show the run with the best value of a metric (lowest MAE, highest F1, ...)."""
    from titans.experiments.experiment_manager import metric_direction

    chosen = metric_direction(metric, direction)
    run = _manager().get_best_run(experiment, metric, direction=chosen)
    word = "lowest" if chosen == "min" else "highest"
    table = Table(title=f"Best run by {metric} ({word} is best)", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    table.add_row("run", run.info.run_name or "")
    table.add_row("run id", run.info.run_id)
    table.add_row(metric, _cell(run.data.metrics[metric]))
    for key in sorted(run.data.metrics):
        if key != metric:
            table.add_row(f"metrics.{key}", _cell(run.data.metrics[key]))
    for key in sorted(run.data.params):
        table.add_row(f"params.{key}", run.data.params[key])
    _common.console.print(table)
