"""Performance gate: the primary metric on the run's holdout vs floor, baseline and champion."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from titans.config import ValidationThresholds
from titans.models.base import Direction, ModelSpec, TrainedModel
from titans.validation.result import CheckResult, fmt


def improvement(score: float, reference: float, direction: Direction) -> float:
    """How much better ``score`` is than ``reference`` in the metric's units (negative: worse).

    >>> improvement(0.8, 0.6, "max"), improvement(80.0, 100.0, "min")
    (0.20000000000000007, 20.0)
    """
    return score - reference if direction == "max" else reference - score


def relative_improvement(score: float, reference: float, direction: Direction) -> float:
    """``improvement`` as a fraction of ``|reference|`` (inf/-inf/0 when the reference is 0).

    >>> relative_improvement(75.0, 100.0, "min")
    0.25
    """
    gain = improvement(score, reference, direction)
    if reference == 0:
        return math.copysign(math.inf, gain) if gain else 0.0
    return gain / abs(reference)


def check_performance(
    spec: ModelSpec,
    trained: TrainedModel,
    holdout: pd.DataFrame,
    *,
    logged_baseline: float | None,
    thresholds: ValidationThresholds,
    champion: TrainedModel | None = None,
    champion_uri: str | None = None,
    champion_notes: list[str] | None = None,
) -> CheckResult:
    """Re-evaluate on the holdout; pass when the floor, the baseline margin and the champion hold.

    ``logged_baseline`` is the baseline's primary metric the training run measured on these
    same held-out rows (the baseline needs the training rows, which are not kept).
    """
    metric, direction = spec.primary_metric, spec.direction
    result = CheckResult(
        "performance",
        thresholds={
            "primary_metric": metric,
            "direction": direction,
            "primary_floor": thresholds.primary_floor,
            "min_margin_over_baseline": thresholds.min_margin_over_baseline,
            "champion_tolerance": thresholds.champion_tolerance if champion is not None else None,
        },
    )
    metrics = {k: float(v) for k, v in spec.evaluate(trained, holdout).items()}
    score = metrics.get(metric, math.nan)
    details: dict[str, Any] = {"holdout_rows": len(holdout), "metrics": metrics, "score": score}
    result.details = details
    if not math.isfinite(score) and spec.task == "anomaly":
        labelled = "is_anomaly" in holdout and bool(holdout["is_anomaly"].notna().any())
        result.fail(
            f"{metric} cannot be measured: the holdout has "
            f"{'no labelled anomaly' if labelled else 'no is_anomaly labels'}; validate an "
            "anomaly model trained on labelled data (e.g. `titans train --generate N`)"
        )
        return result
    if not math.isfinite(score):
        result.fail(
            f"{metric} is not a number on the {len(holdout):,} held-out rows "
            "(no rows this model can be scored on?); retrain on data covering the holdout period"
        )
        return result

    worse_than = "below" if direction == "max" else "above"
    floor = thresholds.primary_floor
    if floor is not None and improvement(score, floor, direction) < 0:
        result.fail(f"{metric} {fmt(score)} is {worse_than} the floor {fmt(floor)}")

    details["baseline_source"] = "baseline metric logged by the training run on this holdout"
    details["baseline_score"] = logged_baseline
    if logged_baseline is None or not math.isfinite(logged_baseline):
        result.fail(
            f"the run logged no finite baseline_{metric} to compare with; "
            "retrain the model with `titans train`"
        )
    else:
        margin = improvement(score, logged_baseline, direction)
        relative = relative_improvement(score, logged_baseline, direction)
        details.update(margin_over_baseline=margin, relative_margin_over_baseline=relative)
        required = thresholds.min_margin_over_baseline
        if margin <= 0:
            result.fail(
                f"{metric} {fmt(score)} does not beat the baseline's {fmt(logged_baseline)}"
            )
        elif relative < required:
            result.fail(
                f"{metric} {fmt(score)} beats the baseline's {fmt(logged_baseline)} by "
                f"{relative:.1%}, less than the required {required:.1%}"
            )

    if champion is not None:
        _check_champion(result, spec, champion, champion_uri, holdout, score, thresholds)
        result.notes.extend(champion_notes or [])
    return result


def _check_champion(
    result: CheckResult,
    spec: ModelSpec,
    champion: TrainedModel,
    champion_uri: str | None,
    holdout: pd.DataFrame,
    score: float,
    thresholds: ValidationThresholds,
) -> None:
    metric, direction = spec.primary_metric, spec.direction
    champion_score = float(spec.evaluate(champion, holdout).get(metric, math.nan))
    tolerance = thresholds.champion_tolerance
    result.details["champion"] = {"model_uri": champion_uri, "score": champion_score}
    if not math.isfinite(champion_score):
        result.notes.append(f"the champion's {metric} is not a number on this holdout; skipped")
        return
    relative = relative_improvement(score, champion_score, direction)
    result.details["champion"]["relative_improvement"] = relative
    if relative < -tolerance:
        result.fail(
            f"{metric} {fmt(score)} is {-relative:.1%} worse than the champion's "
            f"{fmt(champion_score)} ({champion_uri}), beyond the tolerance {tolerance:.1%}"
        )
