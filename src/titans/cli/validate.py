"""`titans validate MODEL_URI`: run the validation gates, print each check, exit 1 on failure."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from titans.cli._common import console, progress, settings
from titans.errors import TitansError
from titans.validation.model_validation import CHECKS, REPORT_ARTIFACT, ModelValidationPipeline


def validate(
    model_uri: str = typer.Argument(
        ..., help="models:/NAME/VERSION, models:/NAME@ALIAS, models:/m-ID or runs:/RUN_ID/model"
    ),
    champion: str | None = typer.Option(
        None, "--champion", help="Also require: not worse than this model on the same holdout."
    ),
) -> None:
    """Validate a model (performance, stability, fairness) on its own holdout; log the report."""
    pipeline = ModelValidationPipeline(settings())
    with progress() as bar:
        task = bar.add_task(f"validating {model_uri}", total=1)
        verdicts = pipeline.run_full_validation(model_uri, champion_uri=champion)
        bar.update(task, completed=1, description=f"validated {model_uri}")
    report = pipeline.last_report
    console.print(checks_table(report))
    where = f"runs:/{report['run_id']}/{REPORT_ARTIFACT}"
    if verdicts["passed"]:
        console.print(f"[green]passed[/green] — report logged to {where}", highlight=False)
        return
    failed = [c for c in CHECKS if not verdicts[c]]
    # a TitansError, so `titans` prints it as one line and exits 1 (see titans.cli.main)
    raise TitansError(
        f"validation failed: {', '.join(failed)} (reasons above; report logged to {where})"
    )


def checks_table(report: dict[str, Any]) -> Table:
    """One row per check: verdict, key numbers, and why it failed (or what else to know)."""
    name = report.get("registered_name")
    title = f"{name} v{report['version']}" if name else report.get("model_uri", "model")
    table = Table(title=f"Validation of {title} ({report.get('model')})", show_lines=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("numbers")
    table.add_column("reasons / notes", overflow="fold")
    for check in CHECKS:
        outcome = report.get("checks", {}).get(check)
        if outcome is None:
            continue
        mark = "[green]passed[/green]" if outcome["passed"] else "[red]FAILED[/red]"
        lines = [*outcome["reasons"], *(f"[dim]{n}[/dim]" for n in outcome["notes"])]
        table.add_row(check, mark, _numbers(check, outcome, report), "\n".join(lines) or "-")
    return table


def _numbers(check: str, outcome: dict[str, Any], report: dict[str, Any]) -> str:
    details, limits = outcome.get("details", {}), outcome.get("thresholds", {})
    if check == "performance":
        parts = [f"{report.get('primary_metric')} {_f(details.get('score'))}"]
        parts.append(f"baseline {_f(details.get('baseline_score'))}")
        if limits.get("primary_floor") is not None:
            parts.append(f"floor {_f(limits['primary_floor'])}")
        if "champion" in details:
            parts.append(f"champion {_f(details['champion'].get('score'))}")
        return ", ".join(parts)
    if check == "stability":
        edge = details.get("edge_cases", {})
        ok = sum(1 for e in edge.values() if e.get("ok"))
        perturbation = details.get("perturbation", {})
        moved = perturbation.get("flip_rate", perturbation.get("relative_change_p95"))
        return f"edge cases {ok}/{len(edge)} ok, noise effect {_f(moved)}"
    if details.get("largest_gap") is None:
        return "n/a"
    return f"largest {details.get('metric')} gap {_f(details['largest_gap'])}"


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"
