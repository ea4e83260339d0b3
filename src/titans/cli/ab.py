"""`titans ab`: create, inspect, analyse and stop A/B (and shadow) tests between model versions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from titans.cli import _common

if TYPE_CHECKING:
    from titans.experiments.ab_testing import ABTestingFramework
    from titans.store.models import ABTest

app = typer.Typer(
    help="A/B and shadow tests between two versions of one model, decided by an mSPRT.",
    no_args_is_help=True,
)

_DECISION_STYLE = {"promote_b": "green", "keep_a": "yellow", "continue": "cyan"}


def _framework() -> ABTestingFramework:
    from titans.experiments.ab_testing import ABTestingFramework

    return ABTestingFramework(_common.settings())


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _tests_table(tests: list[ABTest]) -> Table:
    table = Table(title="A/B tests (newest first)")
    table.add_column("name", style="bold")
    table.add_column("model")
    table.add_column("A", justify="right")
    table.add_column("B", justify="right")
    table.add_column("split to B", justify="right")
    table.add_column("mode")
    table.add_column("status")
    table.add_column("created (UTC)", no_wrap=True)
    table.add_column("outcome")
    for t in tests:
        outcome = ""
        if t.decision:
            outcome = f"{t.decision.get('decision', '')}: {t.decision.get('reason', '')}"
        table.add_row(
            t.name,
            t.model_name,
            t.model_a_version,
            t.model_b_version,
            f"{t.traffic_split:.1%}",
            t.mode,
            t.status,
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            outcome,
        )
    return table


def _arms_table(metrics: dict[str, Any]) -> Table:
    metric = metrics.get("metric")
    column = {"accuracy": "accuracy", "absolute_error": "mean_absolute_error"}.get(metric or "")
    table = Table(title=f"{metrics['test']} · {metrics['model_name']} · {metrics['mode']}")
    table.add_column("arm", style="bold")
    table.add_column("version", justify="right")
    table.add_column("traffic", justify="right")
    table.add_column("latency ms mean / p50 / p95", justify="right")
    table.add_column("error rate", justify="right")
    table.add_column("outcomes", justify="right")
    table.add_column((column or "outcome").replace("_", " "), justify="right")
    for arm in ("A", "B"):
        a = metrics["arms"][arm]
        lat = a["latency_ms"]
        rate = a["error_rate"]
        table.add_row(
            arm,
            a["version"],
            str(a["traffic"]),
            " / ".join(_num(lat[k], 3) for k in ("mean", "p50", "p95")),
            "–" if rate is None else f"{rate:.2%}",
            str(a["outcomes"]),
            _num(a.get(column)) if column else "–",
        )
    return table


@app.command("create")
def create_cmd(
    name: str = typer.Argument(..., help="A unique name for the test, e.g. category-v4."),
    model: str = typer.Option(
        ..., "--model", "-m", help="Registered model (titans-category) or its key (category)."
    ),
    version_a: str = typer.Option(..., "--a", help="Version of A, the champion."),
    version_b: str = typer.Option(..., "--b", help="Version of B, the challenger."),
    split: float = typer.Option(
        0.1,
        "--split",
        help="Share of traffic to B, in (0, 1); with --shadow, the share B also scores (up to 1).",
    ),
    shadow: bool = typer.Option(
        False, "--shadow", help="Shadow mode: clients always get A; B also scores that share."
    ),
    actor: str = typer.Option("system", "--as", help="Who starts the test (for the audit)."),
) -> None:
    """Start an A/B test between two versions of one model (one running test per model)."""
    test = _framework().setup_ab_test(
        name,
        (model, version_a),
        (model, version_b),
        split,
        "shadow" if shadow else "split",
        actor=actor,
    )
    what = "shadow-scores" if test.mode == "shadow" else "serves"
    _common.console.print(
        f"[green]started[/green] A/B test [bold]{test.name}[/bold] on {test.model_name}: "
        f"B (version {test.model_b_version}) {what} {test.traffic_split:.1%} of traffic, "
        f"A is version {test.model_a_version}"
    )


@app.command("status")
def status_cmd(
    name: str | None = typer.Argument(None, help="One test to show in detail; all if omitted."),
) -> None:
    """List the tests, or show one test's traffic, latency, errors and outcomes per arm."""
    framework = _framework()
    if name is None:
        tests = framework.list_tests()
        if not tests:
            _common.console.print("no A/B tests yet: `titans ab create` starts one")
            return
        _common.console.print(_tests_table(tests))
        return
    test = framework.get_test(name)
    _common.console.print(_tests_table([test]))
    metrics = framework.collect_ab_metrics(name)
    _common.console.print(_arms_table(metrics))
    if metrics["realised_split"] is not None:
        _common.console.print(
            f"realised share of B: {metrics['realised_split']:.1%} "
            f"(configured {metrics['traffic_split']:.1%})"
        )


@app.command("analyze")
def analyze_cmd(
    name: str = typer.Argument(..., help="The test to analyse."),
    actor: str = typer.Option("system", "--as", help="Who analyses (recorded with a decision)."),
) -> None:
    """Compare B with A (confidence interval and always-valid mSPRT) and decide."""
    result = _framework().analyze_ab_results(name, actor=actor)
    _common.console.print(_arms_table(result))
    diff, seq = result["difference"], result["sequential"]
    if diff is not None and seq is not None:
        table = Table(title=f"B − A on {result['metric'].replace('_', ' ')}")
        table.add_column("test")
        table.add_column("estimate", justify="right")
        table.add_column("interval", justify="right")
        table.add_column("p", justify="right")
        low, high = diff["ci_low"], diff["ci_high"]
        table.add_row(
            f"{diff['test']} ({diff['confidence']:.0%} CI)",
            _num(diff["estimate"]),
            f"[{_num(low)}, {_num(high)}]",
            _num(diff["p_value"], 3),
        )
        low, high = seq["always_valid_ci"]
        table.add_row(
            f"mSPRT, always valid (tau {seq['tau']})",
            _num(diff["estimate"]),
            f"[{_num(low)}, {_num(high)}]",
            _num(seq["always_valid_p"], 3),
        )
        _common.console.print(table)
    style = _DECISION_STYLE[result["decision"]]
    _common.console.print(
        f"decision: [bold {style}]{result['decision']}[/bold {style}] — {result['reason']}",
        soft_wrap=True,
    )
    if result["persisted"]:
        test = result["test"]
        if result["decision"] == "promote_b":
            version = result["arms"]["B"]["version"]
            _common.console.print(
                f"test {test} has ended with this decision; promote version {version} through "
                "the gates with `titans registry promote`"
            )
        else:
            _common.console.print(f"test {test} has ended with this decision; A keeps serving")


@app.command("stop")
def stop_cmd(
    name: str = typer.Argument(..., help="The running test to stop."),
    reason: str = typer.Option(..., "--reason", "-r", help="Why the test stops (audited)."),
    actor: str = typer.Option("system", "--as", help="Who stops the test (for the audit)."),
) -> None:
    """Stop a running test without a decision; all traffic returns to A."""
    test = _framework().stop_test(name, reason, actor=actor)
    _common.console.print(
        f"[yellow]stopped[/yellow] A/B test [bold]{test.name}[/bold] on {test.model_name}: {reason}"
    )
