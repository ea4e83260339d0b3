"""Stability gate: valid outputs on edge cases, deterministic predictions, noise absorbed."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from titans.config import ValidationThresholds
from titans.data.columns import EXPENSE_CATEGORIES
from titans.models.base import ModelSpec, TrainedModel
from titans.models.metrics import top_share_mask
from titans.validation.edge_cases import edge_cases
from titans.validation.result import CheckResult, fmt

#: real held-out rows each edge case is applied to
EDGE_CASE_ROWS = 20
#: held-out rows used for determinism and perturbation (bounded, so validation stays fast)
SAMPLE_ROWS = 5_000
#: amplitude of the multiplicative amount noise of the perturbation test (+-1 %)
NOISE = 0.01
#: boolean output columns an anomaly model may flag with (else its top-scored share is used)
FLAG_COLUMNS = ("is_anomaly", "flag", "flagged", "anomaly")


def known_classes(trained: TrainedModel, output: pd.DataFrame) -> set[str]:
    """Classes a classifier can predict: its estimator's ``classes_``, else its proba columns."""
    state = trained.state
    for holder in (state.get("pipeline") if isinstance(state, dict) else None, state):
        classes = getattr(holder, "classes_", None)
        if classes is not None:
            return {str(c) for c in classes}
    proba = [c.removeprefix("proba_") for c in output.columns if str(c).startswith("proba_")]
    return set(proba) or {*EXPENSE_CATEGORIES, "other"}


def output_problems(
    spec: ModelSpec,
    output: object,
    n_input: int,
    classes: set[str] | None = None,
) -> list[str]:
    """Why ``output`` is not a valid prediction of ``n_input`` rows by this kind of model."""
    if not isinstance(output, pd.DataFrame):
        return [f"returned {type(output).__name__}, not a DataFrame"]
    problems: list[str] = []
    expected = spec.settings.forecast_horizon_days if spec.task == "forecast" else n_input
    if len(output) != expected:
        problems.append(f"{len(output)} output rows for {expected} expected")
    needed = {"forecast": "prediction", "anomaly": "score"}.get(spec.task, "prediction")
    if needed not in output.columns:
        return [*problems, f"no {needed!r} column (columns: {', '.join(map(str, output.columns))})"]
    for column in output.columns:
        values = output[column]
        if pd.api.types.is_bool_dtype(values):
            continue
        if pd.api.types.is_numeric_dtype(values):
            bad = ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
            if bad.any():
                problems.append(f"{int(bad.sum())} NaN/inf value(s) in {column!r}")
        elif values.isna().any():
            problems.append(f"{int(values.isna().sum())} missing value(s) in {column!r}")
    if spec.task == "classification" and classes is not None and len(output):
        predicted = set(output["prediction"].dropna().astype(str))
        unknown = sorted(predicted - classes)
        if unknown:
            problems.append(f"predicted unknown class(es) {', '.join(unknown[:5])}")
    if "lower" in output and "upper" in output and not problems:
        inverted = (output["lower"].to_numpy() > output["upper"].to_numpy()).sum()
        if inverted:
            problems.append(f"{int(inverted)} interval(s) with lower > upper")
    if spec.task == "forecast" and "date" in output and len(output) > 1 and not problems:
        steps = pd.to_datetime(output["date"]).diff().dropna()
        if (steps != pd.Timedelta(days=1)).any():
            problems.append("forecast dates are not consecutive days")
    return problems


def _safe_predict(
    trained: TrainedModel, frame: pd.DataFrame
) -> tuple[pd.DataFrame | None, str | None]:
    try:
        return trained.predict(frame), None
    except Exception as exc:  # the check's purpose is to report any exception, whatever its type
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"raised {type(exc).__name__}: {message[:200]}"


def check_edge_cases(
    spec: ModelSpec, trained: TrainedModel, holdout: pd.DataFrame, thresholds: ValidationThresholds
) -> dict[str, Any]:
    """Each enabled edge case's outcome: ``{"name": {"ok": bool, "problems": [...]}}``."""
    base = holdout.sample(min(EDGE_CASE_ROWS, len(holdout)), random_state=0).sort_index()
    reference, _ = _safe_predict(trained, base)
    classes = known_classes(trained, reference if reference is not None else pd.DataFrame())
    outcome: dict[str, Any] = {}
    for name, frame in edge_cases(base, thresholds.edge_cases).items():
        output, error = _safe_predict(trained, frame)
        problems = [error] if error else output_problems(spec, output, len(frame), classes)
        outcome[name] = {"rows": len(frame), "ok": not problems, "problems": problems}
    return outcome


def _frames_differ(a: pd.DataFrame, b: pd.DataFrame) -> str | None:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:200]
    return None


def check_determinism(
    trained: TrainedModel,
    reloaded: TrainedModel | None,
    sample: pd.DataFrame,
) -> dict[str, Any]:
    """Same input twice, and through an independently loaded copy: identical outputs."""
    first, error = _safe_predict(trained, sample)
    if first is None:
        return {"ok": False, "problems": [f"predict on {len(sample):,} held-out rows {error}"]}
    second, error = _safe_predict(trained, sample.copy())
    problems = []
    diff = _frames_differ(first, second) if second is not None else error
    if diff:
        problems.append(f"the same rows predicted twice differ: {diff}")
    if reloaded is not None:
        third, error = _safe_predict(reloaded, sample.copy())
        diff = _frames_differ(first, third) if third is not None else error
        if diff:
            problems.append(f"a second load of the model predicts differently: {diff}")
    return {"ok": not problems, "problems": problems, "rows": len(sample)}


def perturb_amounts(frame: pd.DataFrame, seed: int, noise: float = NOISE) -> pd.DataFrame:
    """Every amount times (1 + u), u uniform in [-noise, +noise], seeded.

    >>> f = pd.DataFrame({"amount": [100.0, -50.0, 0.0]})
    >>> perturb_amounts(f, seed=1)["amount"].round(3).tolist()
    [100.024, -50.45, 0.0]
    """
    rng = np.random.default_rng(seed)
    factor = 1.0 + rng.uniform(-noise, noise, size=len(frame))
    out = frame.copy()
    out["amount"] = frame["amount"].to_numpy(dtype=np.float64) * factor
    return out


def anomaly_flags(output: pd.DataFrame, alert_rate: float) -> np.ndarray:
    for column in FLAG_COLUMNS:
        if column in output and pd.api.types.is_bool_dtype(output[column]):
            return output[column].to_numpy(dtype=bool)
    return top_share_mask(output["score"].to_numpy(dtype=np.float64), alert_rate)


def _relative_changes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """|after - before| over |before|, the denominator floored at 1 % of the mean |before|."""
    scale = max(float(np.mean(np.abs(before))) * 0.01, 1e-9) if before.size else 1e-9
    return np.abs(after - before) / np.maximum(np.abs(before), scale)


def _scaled_changes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """|after - before| over the mean |before| (for series that cross zero).

    >>> _scaled_changes(np.array([100.0, -100.0, 0.0]), np.array([101.0, -100.0, 2.0])).tolist()
    [0.015, 0.0, 0.03]
    """
    scale = max(float(np.mean(np.abs(before))), 1e-9) if before.size else 1e-9
    return np.abs(after - before) / scale


def check_perturbation(
    spec: ModelSpec,
    trained: TrainedModel,
    sample: pd.DataFrame,
    thresholds: ValidationThresholds,
    seed: int,
) -> dict[str, Any]:
    """+-1 % amount noise: class/flag flips below the bound, bounded relative change otherwise."""
    before, error = _safe_predict(trained, sample)
    after, error_after = _safe_predict(trained, perturb_amounts(sample, seed))
    if before is None or after is None:
        return {"ok": False, "problems": [f"predict on perturbed rows {error or error_after}"]}
    column = "score" if spec.task == "anomaly" else "prediction"
    if column not in before or column not in after:
        return {"ok": False, "problems": [f"no {column!r} column to compare"]}
    outcome: dict[str, Any] = {"rows": len(sample), "noise": NOISE, "seed": seed}
    if spec.task in {"classification", "anomaly"}:
        if spec.task == "classification":
            a = before[column].astype(str).to_numpy()
            b = after[column].astype(str).to_numpy()
            changed = a != b
        else:
            alert_rate = spec.settings.anomaly_alert_rate
            fa, fb = anomaly_flags(before, alert_rate), anomaly_flags(after, alert_rate)
            changed = fa != fb
            outcome["flagged_rows"] = int(fa.sum())
        rate = float(changed.mean()) if changed.size else 0.0
        bound = thresholds.max_flip_rate
        outcome.update(flip_rate=rate, changed_rows=int(changed.sum()), max_flip_rate=bound)
        ok = rate == 0.0 or rate < bound
        noun = "predicted classes" if spec.task == "classification" else "anomaly flags"
        problem = f"+-1% amount noise changed {noun} of {rate:.2%} of rows (bound {bound:.2%})"
    else:
        a = before[column].to_numpy(dtype=np.float64)
        b = after[column].to_numpy(dtype=np.float64)
        # a daily net flow crosses zero, so a forecast's change is measured against its scale
        rel = _relative_changes(a, b) if spec.task != "forecast" else _scaled_changes(a, b)
        p95 = float(np.quantile(rel, 0.95)) if rel.size else 0.0
        bound = thresholds.max_relative_change
        outcome.update(
            relative_change_p95=p95,
            relative_change_mean=float(rel.mean()) if rel.size else 0.0,
            relative_change_max=float(rel.max()) if rel.size else 0.0,
            max_relative_change=bound,
        )
        ok = bool(np.isfinite(p95)) and p95 <= bound
        problem = (
            f"+-1% amount noise moved predictions by {fmt(p95 * 100)}% at the 95th percentile "
            f"(bound {fmt(bound * 100)}%)"
        )
    outcome["ok"] = ok
    outcome["problems"] = [] if ok else [problem]
    return outcome


def check_stability(
    spec: ModelSpec,
    trained: TrainedModel,
    reloaded: TrainedModel | None,
    holdout: pd.DataFrame,
    thresholds: ValidationThresholds,
    seed: int,
) -> CheckResult:
    """Edge cases, determinism (also across two loads) and perturbation consistency."""
    result = CheckResult(
        "stability",
        thresholds={
            "max_flip_rate": thresholds.max_flip_rate,
            "max_relative_change": thresholds.max_relative_change,
            "amount_noise": NOISE,
            "edge_cases": thresholds.edge_cases.model_dump(),
        },
    )
    if holdout.empty:
        result.fail("the holdout has no rows to build edge cases from; retrain on more data")
        return result
    selected = spec.select(holdout)
    if selected.empty:
        selected = holdout
    sample = (
        selected.sample(SAMPLE_ROWS, random_state=seed).sort_index()
        if len(selected) > SAMPLE_ROWS
        else selected
    )
    edge = check_edge_cases(spec, trained, holdout, thresholds)
    determinism = check_determinism(trained, reloaded, sample)
    perturbation = check_perturbation(spec, trained, sample, thresholds, seed)
    result.details = {"edge_cases": edge, "determinism": determinism, "perturbation": perturbation}
    for name, outcome in edge.items():
        for problem in outcome["problems"]:
            result.fail(f"edge case {name}: {problem}")
    for problem in determinism["problems"]:
        result.fail(f"determinism: {problem}")
    for problem in perturbation["problems"]:
        result.fail(f"perturbation: {problem}")
    if reloaded is None:
        result.notes.append("determinism across loads not checked (no second load)")
    return result
