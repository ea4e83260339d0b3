"""`titans registry`: list, show, promote, roll back, compare and trace registered versions."""

from __future__ import annotations

import getpass
import json
from typing import Any

import typer
from rich.table import Table

from titans.cli._common import console, progress, settings
from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError, PromotionRefused
from titans.registry.metadata_manager import ModelMetadataManager
from titans.registry.registry_manager import ModelRegistryManager, normalize_stage

app = typer.Typer(
    help="Registered model versions: list, show, promote, rollback, compare, lineage.",
    no_args_is_help=True,
)

_NAME_HELP = "Registered model name (titans-category) or model key (category)."


def _actor_default() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user database entry (containers)
        return "cli"


def _actor_option() -> Any:
    return typer.Option(
        None, "--actor", envvar="TITANS_ACTOR", help="Who acts (default: the login name)."
    )


def _name(raw: str, s: Settings) -> str:
    """Accept a model key (``amount``) where a registered name is expected."""
    return s.registered_name(raw) if raw in MODEL_KEYS else raw


def _f(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@app.command("list")
def list_cmd() -> None:
    """Every registered model with its latest version and aliases."""
    manager = ModelRegistryManager(settings())
    models = manager.list_models()
    if not models:
        console.print("no registered models yet; train some with `titans train`")
        return
    table = Table(title="Registered models")
    table.add_column("name", style="bold")
    table.add_column("latest", justify="right")
    table.add_column("staging", justify="right")
    table.add_column("production", justify="right", style="green")
    table.add_column("other aliases")
    for m in models:
        aliases = dict(m["aliases"])
        staging, production = aliases.pop("staging", "-"), aliases.pop("production", "-")
        others = ", ".join(f"{a}→{v}" for a, v in aliases.items())
        table.add_row(m["name"], m["latest_version"] or "-", staging, production, others)
    console.print(table)


@app.command("show")
def show_cmd(
    name: str = typer.Argument(..., help=_NAME_HELP),
    version: str | None = typer.Argument(None, help="One version (default: all of them)."),
) -> None:
    """The versions of one model (aliases, stage, validation, score) or one version's tags."""
    s = settings()
    manager = ModelRegistryManager(s)
    model_name = _name(name, s)
    if version is not None:
        row = manager.get_version(model_name, version)
        table = Table(title=f"{model_name} version {row['version']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for key, value in row.items():
            if key != "tags":
                table.add_row(key, ", ".join(value) if isinstance(value, list) else _f(value))
        for key, value in sorted(row["tags"].items()):
            table.add_row(f"tag {key}", value)
        console.print(table)
        return
    rows = manager.get_versions(model_name)
    table = Table(title=f"{model_name}: {len(rows)} version(s)")
    for column in ("version", "aliases", "stage", "validation", "metric", "data", "created"):
        table.add_column(column)
    for r in rows:
        metric = f"{r['primary_metric']} {r['primary_score']}" if r["primary_metric"] else "-"
        table.add_row(
            r["version"],
            ", ".join(r["aliases"]) or "-",
            r["stage"],
            r["validation_status"] or "-",
            metric,
            r["data_version"] or "-",
            r["created"][:19].replace("T", " "),
        )
    console.print(table)


@app.command("promote")
def promote_cmd(
    name: str = typer.Argument(..., help=_NAME_HELP),
    version: str = typer.Argument(..., help="The version to promote."),
    stage: str = typer.Argument(..., help="Staging or Production."),
    actor: str | None = _actor_option(),
) -> None:
    """Run the gates (artifact, validation, approval), then move the alias; exit 1 if refused."""
    s = settings()
    manager = ModelRegistryManager(s)
    model_name = _name(name, s)
    try:
        stage = normalize_stage(stage)
    except InputError:
        manager.promote_model(model_name, version, stage, actor=actor or _actor_default())
        raise  # unreachable: promote_model audits the refusal and raises the same error
    with progress() as bar:
        task = bar.add_task(f"promoting {model_name} v{version} to {stage}", total=1)
        moved = manager.promote_model(model_name, version, stage, actor=actor or _actor_default())
        bar.update(task, completed=1)
    if not moved:
        refusal = manager.last_refusal
        raise PromotionRefused(str(refusal) if refusal else "promotion refused")
    console.print(
        f"[green]promoted[/green] {model_name} version {version} to {stage}; "
        f"clients load models:/{model_name}@{stage.lower()}",
        highlight=False,
    )


@app.command("rollback")
def rollback_cmd(
    name: str = typer.Argument(..., help=_NAME_HELP),
    version: str = typer.Argument(..., help="A version that passed validation before."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    actor: str | None = _actor_option(),
) -> None:
    """Point production back at an earlier validated version; exit 1 if refused."""
    s = settings()
    manager = ModelRegistryManager(s)
    model_name = _name(name, s)
    moved = manager.rollback_model(
        model_name, version, actor=actor or _actor_default(), reason=reason
    )
    if not moved:
        refusal = manager.last_refusal
        raise PromotionRefused(str(refusal) if refusal else "rollback refused")
    console.print(
        f"[yellow]rolled back[/yellow] {model_name} production to version {version}",
        highlight=False,
    )


@app.command("compare")
def compare_cmd(
    name: str = typer.Argument(..., help=_NAME_HELP),
    version1: str = typer.Argument(..., help="The reference version."),
    version2: str = typer.Argument(..., help="The challenger (deltas are version2 - version1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole comparison as JSON."),
) -> None:
    """Re-evaluate two versions on the same holdout: metrics, segments, agreement, speed."""
    s = settings()
    manager = ModelRegistryManager(s)
    model_name = _name(name, s)
    with progress() as bar:
        task = bar.add_task(f"comparing {model_name} v{version1} and v{version2}", total=1)
        result = manager.compare_models(model_name, version1, version2)
        bar.update(task, completed=1)
    if as_json:
        console.print_json(json.dumps(result))
        return
    console.print(_compare_table(result))
    for segmentation, per_segment in result["segments"].items():
        console.print(_segment_table(result, segmentation, per_segment))
    primary = result["primary"]
    console.print(
        f"{result['primary_metric']} ({'higher' if result['direction'] == 'max' else 'lower'} "
        f"is better): version {version1} {_f(primary['version1'])}, version {version2} "
        f"{_f(primary['version2'])} → better: {primary['better']}; "
        f"agreement {_f(result['agreement_rate'])} on {result['holdout']['source']}",
        highlight=False,
    )


def _compare_table(result: dict[str, Any]) -> Table:
    v1, v2 = result["version1"], result["version2"]
    table = Table(title=f"{result['model_name']}: version {v1} vs {v2}")
    table.add_column("measure", style="bold")
    table.add_column(f"v{v1}", justify="right")
    table.add_column(f"v{v2}", justify="right")
    table.add_column("delta", justify="right")
    metrics = result["metrics"]
    for key in metrics["version1"]:
        table.add_row(
            key,
            _f(metrics["version1"].get(key)),
            _f(metrics["version2"].get(key)),
            _f(metrics["delta"].get(key)),
        )
    latency, size = result["latency_ms_per_row"], result["artifact_bytes"]
    table.add_row("latency ms/row", _f(latency["version1"]), _f(latency["version2"]), "")
    table.add_row("artifact bytes", _f(size["version1"]), _f(size["version2"]), "")
    return table


def _segment_table(result: dict[str, Any], segmentation: str, per_segment: dict[str, Any]) -> Table:
    table = Table(title=f"{result['primary_metric']} by {segmentation}")
    for column in ("segment", "rows", f"v{result['version1']}", f"v{result['version2']}"):
        table.add_column(column, justify="right" if column != "segment" else "left")
    table.add_column("improvement", justify="right")
    for label, row in per_segment.items():
        table.add_row(
            label,
            _f(int(row["rows"])),
            _f(row["version1"]),
            _f(row["version2"]),
            _f(row["improvement"]),
        )
    return table


@app.command("lineage")
def lineage_cmd(
    name: str = typer.Argument(..., help=_NAME_HELP),
    version: str = typer.Argument(..., help="The version to trace."),
) -> None:
    """The chain from a version through its parent versions back to the raw data versions."""
    s = settings()
    model_name = _name(name, s)
    chain = ModelMetadataManager(s).lineage_chain(model_name, version)
    for depth, node in enumerate(chain):
        indent = "  " * depth
        arrow = "" if depth == 0 else "↳ parent "
        console.print(
            f"{indent}{arrow}[bold]{model_name} v{node['version']}[/bold] "
            f"(stage {node['stage']}, code {(node['code_version'] or 'unknown')[:12]}, "
            f"run {node['run_id']})",
            highlight=False,
        )
        manifest = node["data_manifest"]
        data = node["data_version"] or "unknown"
        if manifest:
            console.print(
                f"{indent}  data {data}: {manifest['rows']:,} rows, {manifest['date_min']} → "
                f"{manifest['date_max']}, source {manifest['source']}",
                highlight=False,
            )
        else:
            source = node["data_source"] or "no manifest stored"
            console.print(f"{indent}  data {data} ({source})", highlight=False)
        if node.get("cycle"):
            console.print(f"{indent}  [red]parent tags loop back to v{node['cycle']}[/red]")
