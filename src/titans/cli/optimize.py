"""`titans optimize`: ONNX size/speed versions, ensembles, and benchmarks of registered models."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from titans.cli._common import console, progress, settings
from titans.optimization.optimizer import ModelOptimizer

app = typer.Typer(
    help="Optimise registered models (ONNX, float16, pruning, tuned sessions, ensembles) "
    "and benchmark them against their source.",
    no_args_is_help=True,
)

_URI_HELP = "models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID or runs:/RUN_ID/model"


def _f(value: Any) -> str:
    """A table cell: 4 significant digits for floats, '-' for nothing."""
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(report: dict[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    rows = [
        ("new version", report.get("model_uri")),
        ("source", report.get("source")),
        ("kind", report.get("kind")),
        ("converted steps", report.get("converted_steps")),
        ("precision", report.get("precision")),
        ("session tuning", report.get("tuning")),
        ("single-row speedup (p50)", report.get("speedup_p50")),
        ("size (bytes)", report.get("size_bytes")),
        ("size change (bytes)", report.get("size_delta_bytes")),
        (f"{report.get('metric', 'metric')} source → new", _metric_change(report)),
        ("agreement with source", _agreement(report.get("agreement"))),
        ("trees kept", _trees(report.get("pruning"))),
    ]
    for what, value in rows:
        if value is not None:
            table.add_row(what, _f(value))
    for note in report.get("notes", []):
        table.add_row("note", note)
    return table


def _metric_change(report: dict[str, Any]) -> str | None:
    if "source_metric" not in report:
        return None
    return (
        f"{report['source_metric']:.4g} → {report['optimised_metric']:.4g} "
        f"(Δ {report['metric_delta']:+.3g})"
    )


def _agreement(agreement: dict[str, Any] | None) -> str | None:
    if not agreement:
        return None
    labels = agreement.get("label_agreement")
    share = f"{labels:.2%} of {agreement['rows']} rows; " if labels is not None else ""
    return f"{share}max relative {agreement['column']} difference {agreement['max_rel_diff']:.2g}"


def _trees(pruning: dict[str, Any] | None) -> str | None:
    if not pruning:
        return None
    return f"{pruning['kept_trees']} of {pruning['original_trees']}"


@app.command("size")
def size(
    model_uri: str = typer.Argument(..., help=_URI_HELP),
    prune_tolerance: float = typer.Option(
        0.01, help="Largest primary-metric loss a pruned tree ensemble may have."
    ),
    float16: bool = typer.Option(True, help="Store large weights as float16 when they agree."),
) -> None:
    """Register an ONNX version of a model (float16 weights, pruned trees where they hold)."""
    optimizer = ModelOptimizer(settings(), prune_tolerance=prune_tolerance, float16=float16)
    with progress() as bar:
        task = bar.add_task(f"optimising {model_uri} for size", total=1)
        uri = optimizer.optimize_model_size(model_uri)
        bar.update(task, completed=1, description=f"registered {uri}")
    console.print(_summary(optimizer.last_report, f"ONNX version of {model_uri}"))
    console.print(uri, highlight=False)


@app.command("speed")
def speed(model_uri: str = typer.Argument(..., help=_URI_HELP)) -> None:
    """Register an ONNX version whose session is tuned for single-row latency (measured)."""
    optimizer = ModelOptimizer(settings())
    with progress() as bar:
        task = bar.add_task(f"tuning {model_uri} for single-row latency", total=1)
        uri = optimizer.optimize_inference_speed(model_uri)
        bar.update(task, completed=1, description=f"registered {uri}")
    report = optimizer.last_report
    trials = Table(title="single-row latency per session setting (µs)")
    trials.add_column("setting")
    trials.add_column("p50", justify="right")
    trials.add_column("p99", justify="right")
    for setting, measured in report.get("trials", {}).items():
        trials.add_row(setting, _f(measured["p50_us"]), _f(measured["p99_us"]))
    source = report.get("source_single_row", {})
    trials.add_row(f"source ({source.get('path')} path)", _f(source.get("p50_us")), _f(None))
    console.print(trials)
    console.print(_summary(report, f"Tuned ONNX version of {model_uri}"))
    console.print(uri, highlight=False)


@app.command("ensemble")
def ensemble(
    model_uris: list[str] = typer.Argument(..., help=f"Two or more: {_URI_HELP}"),
    weight: list[float] = typer.Option(
        [], "--weight", help="One per model, in order (default: equal weights)."
    ),
) -> None:
    """Register a validated soft-voting / averaging ensemble of versions of one model."""
    optimizer = ModelOptimizer(settings())
    with progress() as bar:
        task = bar.add_task(f"ensembling {len(model_uris)} models", total=1)
        uri = optimizer.create_model_ensemble(model_uris, weight or None)
        bar.update(task, completed=1, description=f"registered {uri}")
    report = optimizer.last_report
    table = Table(title=f"Ensemble {uri} ({report.get('kind')})")
    table.add_column("model")
    table.add_column("primary metric on the holdout", justify="right")
    for member, score in report.get("member_metrics", {}).items():
        table.add_row(member, _f(score))
    metrics = report.get("metrics", {})
    primary = next(iter(metrics), None)
    table.add_row(f"[bold]{uri}[/bold]", _f(metrics.get(primary)) if primary else "-")
    console.print(table)
    console.print(uri, highlight=False)


@app.command("benchmark")
def benchmark(
    model_uri: str = typer.Argument(..., help=_URI_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Size, load time, single-row p50/p99, batch-of-1,000 throughput, metric delta."""
    result = ModelOptimizer(settings()).benchmark_model_performance(model_uri)
    if as_json:
        console.print_json(json.dumps(result, default=str))
        return
    table = Table(title=f"Benchmark of {result['model_uri']} ({result['flavour']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "size_bytes",
        "load_seconds",
        "first_prediction_seconds",
        "single_row_path",
        "single_row_p50_us",
        "single_row_p99_us",
        "batch_1000_rows_per_s",
    ):
        table.add_row(key, _f(result[key]))
    table.add_row(result["primary_metric"], _f(result["metrics"].get(result["primary_metric"])))
    table.add_row(f"Δ vs {result['source_uri'] or 'source'}", _f(result["metric_delta"]))
    console.print(table)
