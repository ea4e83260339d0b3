"""The demo loop: one pass of data → validate → train → register on synthetic data.

Library code: it yields step results and never prints; `titans demo` renders them.
Later stages of the loop (promotion, serving, monitoring, retraining) append steps here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from titans.config import Settings


@dataclass
class StepResult:
    """What one step of the loop did."""

    name: str
    ok: bool
    detail: str
    seconds: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoContext:
    """State handed from step to step."""

    settings: Settings
    rows: int
    seed: int
    values: dict[str, Any] = field(default_factory=dict)
    on_progress: Callable[[str], None] = lambda _msg: None


Step = Callable[[DemoContext], tuple[str, dict[str, Any]]]


def _generate(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.data.io import write_transactions
    from titans.data.synth import generate

    frame = generate(ctx.rows, seed=ctx.seed)
    path = write_transactions(frame, ctx.settings.ensure_home() / "data" / "demo_export.csv")
    ctx.values["export_path"] = path
    return f"{len(frame):,} transactions → {path}", {"rows": len(frame), "path": str(path)}


def _validate(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.data.io import read_raw
    from titans.data.schema import validate_frame
    from titans.data.versions import data_version
    from titans.errors import DataValidationError

    report = validate_frame(read_raw(ctx.values["export_path"]))
    if not report.passed(ctx.settings.max_bad_row_share):
        raise DataValidationError(
            f"{report.bad_share:.1%} of rows failed validation "
            f"(limit {ctx.settings.max_bad_row_share:.1%}); run `titans data validate` for the list"
        )
    ctx.values["frame"] = report.valid
    version = data_version(report.valid)
    ctx.values["data_version"] = version
    return (
        f"{len(report.valid):,} valid, {len(report.rejected):,} quarantined, "
        f"data version {version}",
        {"valid": len(report.valid), "rejected": len(report.rejected), "data_version": version},
    )


def _train(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.models.train import train_models

    results = train_models(
        ctx.values["frame"],
        seed=ctx.seed,
        settings=ctx.settings,
        data_source=str(ctx.values["export_path"]),
        progress=lambda key, step: ctx.on_progress(f"train {key}: {step}"),
    )
    ctx.values["training"] = results
    losers = [r.model_key for r in results if not r.evaluation.beats_baseline]
    if losers:
        raise RuntimeError(f"models did not beat their baselines: {', '.join(losers)}")
    names = ", ".join(f"{r.registered_name} v{r.version}" for r in results)
    return f"registered {names}", {"models": [r.to_dict() for r in results]}


def _promote(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    """Every new version: validation gates → policy approval → staging → production."""
    from titans.registry.registry_manager import ModelRegistryManager

    registry = ModelRegistryManager(ctx.settings)
    promoted, refused = [], []
    for result in ctx.values["training"]:
        for stage in ("Staging", "Production"):
            ctx.on_progress(f"promote {result.registered_name} v{result.version} → {stage}")
            if not registry.promote_model(result.registered_name, result.version, stage, "demo"):
                refusal = registry.last_refusal
                refused.append(f"{result.registered_name} v{result.version}: {refusal}")
                break
        else:
            promoted.append(registry.get_production_model(result.registered_name))
    if refused:
        raise RuntimeError("promotion refused: " + "; ".join(refused))
    return f"in production: {', '.join(promoted)}", {"production": promoted}


def _audit(ctx: DemoContext) -> tuple[str, dict[str, Any]]:
    from titans.governance.audit import AuditLogger

    audit = AuditLogger(ctx.settings)
    result = audit.verify()
    if not result.ok:
        raise RuntimeError(
            f"audit chain broken at entry {result.first_broken_seq}: {result.reason}"
        )
    return (
        f"{result.entries_checked} entries, chain verifies, head {result.head_hash}",
        {"entries": result.entries_checked, "head": result.head_hash, "verified": result.ok},
    )


STEPS: list[tuple[str, Step]] = [
    ("generate", _generate),
    ("validate data", _validate),
    ("train + register", _train),
    ("validate + approve + promote", _promote),
    ("audit chain", _audit),
]


def run_demo(
    settings: Settings | None = None,
    rows: int | None = None,
    seed: int | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Iterator[StepResult]:
    """Run the loop step by step; stop after the first failed step (its result says why)."""
    settings = settings or Settings()
    ctx = DemoContext(
        settings=settings,
        rows=rows or settings.ci_rows,
        seed=settings.seed if seed is None else seed,
        on_progress=on_progress or (lambda _msg: None),
    )
    for name, step in STEPS:
        started = time.perf_counter()
        try:
            detail, data = step(ctx)
        except Exception as exc:  # reported as a failed step; the CLI exits non-zero
            yield StepResult(
                name, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - started
            )
            return
        yield StepResult(name, True, detail, time.perf_counter() - started, data)
    ctx.values.pop("frame", None)


def demo_context_results(results: list[StepResult]) -> dict[str, Any]:
    """All step data in one dict (for JSON output)."""
    return {r.name: {"ok": r.ok, "detail": r.detail, **r.data} for r in results}
