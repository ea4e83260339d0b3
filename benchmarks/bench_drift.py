"""Drift benchmark: every column of 1,000,000 reference × 1,000,000 current rows, against
Evidently's DataDriftPreset on the same data in the same run.

- The data: 12 mixed columns (6 numeric, 6 categorical), seeded, with drift injected into four
  of them; written to parquet in a temp dir and read back by both sides.
- **Evidently** (anchor): ``Report([DataDriftPreset()])`` with its default tests, run in a
  separate venv (``benchmarks/.venv-evidently``, created here with
  ``pip install 'evidently>=0.7,<0.8' 'pandas<3' pyarrow``: Evidently 0.7 does not import with
  pandas 3, which the project runs). Timed from the in-memory frames: ``Dataset.from_pandas``
  for both plus ``report.run``. It prints its per-column method, score and threshold as JSON.
- **ours**: ``detect_drift(reference, current)`` on the same frames in this process (automatic
  test choice; columns on one thread per core), again on one thread (recorded, as Evidently
  computes on one core), and ``detect_drift_against_profile`` against the reference's stored
  profile. Median of ``REPEATS`` runs each.

Verdicts are compared column by column (same test, same threshold). When the Evidently venv
cannot be created the anchor is reported as unavailable with the reason, never estimated.

Usage: python benchmarks/bench_drift.py [--rows 1000000] [--no-install]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_REQUIREMENTS = ["evidently>=0.7,<0.8", "pandas<3", "pyarrow"]
#: the longest creating the Evidently venv may take (download + install)
INSTALL_TIMEOUT_S = 1_800
#: the longest one Evidently run may take
EVIDENTLY_TIMEOUT_S = 1_800
#: runs of ours per variant (the median is reported)
REPEATS = 3
SEED = 2026

#: the goals (issue): ≥ 30× faster than Evidently with the same verdicts; ≤ 1.5 s on a profile
GOAL_SPEEDUP = 30.0
GOAL_PROFILE_SECONDS = 1.5

NUMERIC = ["n_normal", "n_amount", "n_uniform", "n_wait", "n_day", "n_gamma"]
CATEGORICAL = ["c_type", "c_payment", "c_category", "c_status", "c_merchant", "c_weekday"]
#: where drift is injected (and an effect size comfortably above the 0.1 thresholds)
DRIFTED = {"n_normal", "n_wait", "c_type", "c_merchant"}


# ------------------------------------------------------------------------------ data


def make_frames(rows: int, seed: int = SEED) -> tuple[Any, Any]:
    """Reference and current frames: same distributions except the DRIFTED columns."""
    import pandas as pd

    def frame(rng: np.random.Generator, current: bool) -> pd.DataFrame:
        def pick(values: list[str], p: Any) -> Any:
            return np.asarray(values, dtype=object)[rng.choice(len(values), size=rows, p=p)]

        merchants = [f"merchant-{i:03d}" for i in range(200)]
        zipf = 1.0 / np.arange(1, 201)
        merchant = pick(merchants, zipf / zipf.sum())
        if current:  # 30 % of rows go to merchants the reference never saw
            new = rng.random(rows) < 0.3
            merchant[new] = pick([f"new-{i:02d}" for i in range(20)], None)[new]
        categories = [f"category-{i:02d}" for i in range(20)]
        cat_p = 1.0 / np.arange(1, 21) ** 0.8
        return pd.DataFrame(
            {
                "n_normal": rng.normal(0.3 if current else 0.0, 1.0, rows),  # W/std ≈ 0.3
                "n_amount": rng.lognormal(3.0, 1.0, rows) * (1.02 if current else 1.0),
                "n_uniform": rng.uniform(0.0, 100.0, rows),
                "n_wait": rng.exponential(13.0 if current else 10.0, rows),  # W/std ≈ 0.3
                "n_day": rng.integers(1, 32, rows).astype("float64"),
                "n_gamma": rng.gamma(2.0, 2.0, rows) + (0.05 if current else 0.0),
                "c_type": pick(["expense", "income"], [0.6, 0.4] if current else [0.8, 0.2]),
                "c_payment": pick(["card", "debit", "transfer", "cash", "paypal"], None),
                "c_category": pick(categories, cat_p / cat_p.sum()),
                "c_status": pick(
                    ["completed", "pending", "failed"],
                    [0.89, 0.08, 0.03] if current else [0.90, 0.07, 0.03],
                ),
                "c_merchant": merchant,
                "c_weekday": pick([str(d) for d in range(7)], None),
            }
        )

    return frame(np.random.default_rng([seed, 0]), False), frame(
        np.random.default_rng([seed, 1]), True
    )


# ------------------------------------------------------------------------------ Evidently side


def evidently_worker(data_dir: Path) -> dict[str, Any]:
    """Runs inside the Evidently venv: time DataDriftPreset, report per-column results."""
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference = pd.read_parquet(data_dir / "reference.parquet")
    current = pd.read_parquet(data_dir / "current.parquet")
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    started = time.perf_counter()
    ref = Dataset.from_pandas(reference, data_definition=definition)
    cur = Dataset.from_pandas(current, data_definition=definition)
    built = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(cur, ref)
    finished = time.perf_counter()
    columns: dict[str, Any] = {}
    raw = snapshot.dict()
    for metric in raw.get("metrics", []):
        config = metric.get("config") or {}
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        value = metric.get("value")
        columns[str(config["column"])] = {
            "method": config.get("method"),
            "score": float(value) if isinstance(value, int | float) else value,
            "threshold": float(config["threshold"]),
        }
    return {
        "seconds": round(finished - started, 3),
        "dataset_seconds": round(built - started, 3),
        "run_seconds": round(finished - built, 3),
        "evidently_version": evidently.__version__,
        "pandas_version": pd.__version__,
        "columns": columns,
        "metric_names": [str(m.get("metric_name")) for m in raw.get("metrics", [])][:40],
    }


def _venv_python() -> Path:
    return EVIDENTLY_VENV / "bin" / "python"


def ensure_evidently_venv(install: bool) -> tuple[bool, str]:
    """(ready, why not): reuse benchmarks/.venv-evidently, or create it when ``install``."""
    python = _venv_python()
    check = [str(python), "-c", "import evidently, pandas; print(evidently.__version__)"]
    if python.exists():
        probe = subprocess.run(check, capture_output=True, text=True, timeout=300)
        if probe.returncode == 0:
            return True, ""
        if not install:
            return False, f"{EVIDENTLY_VENV} does not import evidently: {probe.stderr[-500:]}"
    elif not install:
        return False, f"{EVIDENTLY_VENV} does not exist and installing was not allowed"
    steps = [
        [sys.executable, "-m", "venv", str(EVIDENTLY_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [str(python), "-m", "pip", "install", "--quiet", *EVIDENTLY_REQUIREMENTS],
        check,
    ]
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return False, f"`{' '.join(argv)}` did not finish within {INSTALL_TIMEOUT_S} s"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-800:]
            return False, f"`{' '.join(argv)}` failed ({done.returncode}): {tail}"
    return True, ""


def run_evidently(data_dir: Path) -> dict[str, Any]:
    argv = [str(_venv_python()), str(Path(__file__).resolve()), "--evidently-worker", str(data_dir)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=EVIDENTLY_TIMEOUT_S, env=env, cwd=data_dir
    )
    if done.returncode != 0:
        raise RuntimeError(f"the Evidently run failed: {done.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


#: Evidently method names (metric ids) of the tests ours chooses at this size
EVIDENTLY_METHODS = {"wasserstein": "Wasserstein distance", "jensenshannon": "Jensen-Shannon"}


def _evidently_verdict(entry: dict[str, Any]) -> bool | None:
    score, method = entry.get("score"), str(entry.get("method", ""))
    if not isinstance(score, float):
        return None
    if "p_value" in method.lower() or "test" in method.lower():
        return score < entry["threshold"]
    return score >= entry["threshold"]


# ------------------------------------------------------------------------------ our side


def _median_seconds(fn: Any, repeats: int) -> tuple[float, list[float], Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), [round(t, 3) for t in times], result


def run(
    rows: int = 1_000_000, install: bool = True, repeats: int = REPEATS, with_evidently: bool = True
) -> dict[str, Any]:
    """Ours (raw reference and stored profile) vs Evidently; ``with_evidently=False`` skips it."""
    import pandas as pd

    from titans.config import DriftSettings
    from titans.monitoring.drift import detect_drift, detect_drift_against_profile
    from titans.monitoring.profile import ReferenceProfile

    settings = DriftSettings()
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    with tempfile.TemporaryDirectory(prefix="titans-bench-drift-") as tmp:
        data_dir = Path(tmp)
        reference, current = make_frames(rows)
        reference.to_parquet(data_dir / "reference.parquet", index=False)
        current.to_parquet(data_dir / "current.parquet", index=False)
        del reference, current
        reference = pd.read_parquet(data_dir / "reference.parquet")
        current = pd.read_parquet(data_dir / "current.parquet")

        raw_s, raw_runs, raw = _median_seconds(
            lambda: detect_drift(reference, current, kinds=kinds, settings=settings), repeats
        )
        # Evidently computes on one core: ours on one core too, for the record
        one_core = DriftSettings(workers=1)
        single_s, single_runs, _ = _median_seconds(
            lambda: detect_drift(reference, current, kinds=kinds, settings=one_core), repeats
        )
        started = time.perf_counter()
        profile = ReferenceProfile.from_frame(reference, kinds=kinds)
        profile_build_s = time.perf_counter() - started
        profile = ReferenceProfile.from_dict(json.loads(profile.to_json()))  # as stored
        prof_s, prof_runs, prof = _median_seconds(
            lambda: detect_drift_against_profile(profile, current, settings=settings), repeats
        )

        ready, why = (
            ensure_evidently_venv(install) if with_evidently else (False, "not run (--quick)")
        )
        evidently: dict[str, Any] | None = None
        if ready:
            try:
                evidently = run_evidently(data_dir)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                why = str(exc)

    per_column = []
    for name in NUMERIC + CATEGORICAL:
        ours, stored = raw.columns[name], prof.columns[name]
        entry = (evidently or {}).get("columns", {}).get(name, {})
        per_column.append(
            {
                "column": name,
                "injected_drift": name in DRIFTED,
                "test": ours.test,
                "threshold": ours.threshold,
                "ours_score": round(ours.score, 6),
                "ours_drifted": ours.drifted,
                "profile_score": round(stored.score, 6),
                "profile_drifted": stored.drifted,
                "evidently_method": entry.get("method"),
                "evidently_score": entry.get("score"),
                "evidently_threshold": entry.get("threshold"),
                "evidently_drifted": _evidently_verdict(entry) if entry else None,
            }
        )
    same_test = all(
        EVIDENTLY_METHODS[c["test"]] in str(c["evidently_method"])
        and c["evidently_threshold"] == c["threshold"]
        for c in per_column
    ) if evidently else None  # fmt: skip
    # no Evidently figures: no agreement to claim either way
    agree_raw = (
        all(c["ours_drifted"] == c["evidently_drifted"] for c in per_column) if evidently else None
    )
    agree_profile = (
        all(c["profile_drifted"] == c["evidently_drifted"] for c in per_column)
        if evidently
        else None
    )
    return {
        "rows": rows,
        "columns": len(per_column),
        "ours_seconds": round(raw_s, 3),
        "ours_runs": raw_runs,
        "ours_workers": os.cpu_count(),
        "ours_one_core_seconds": round(single_s, 3),
        "ours_one_core_runs": single_runs,
        "profile_seconds": round(prof_s, 3),
        "profile_runs": prof_runs,
        "profile_build_seconds": round(profile_build_s, 3),
        "evidently": (
            {k: v for k, v in evidently.items() if k != "columns"}
            if evidently
            else {"unavailable": why}
        ),
        "evidently_seconds": evidently["seconds"] if evidently else None,
        "same_tests": same_test,
        "verdicts_agree": agree_raw if evidently else None,
        "profile_verdicts_agree": agree_profile if evidently else None,
        "injected_drift_found": sorted(raw.drifted_features) == sorted(DRIFTED),
        "per_column": per_column,
        "command": f"python benchmarks/bench_drift.py --rows {rows}",
    }


def markdown(result: dict[str, Any]) -> str:
    """The per-column table: our test, scores and verdicts beside Evidently's."""
    lines = [
        "| column | injected | test (threshold) | ours | profile | Evidently method | Evidently |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(score: Any, drifted: Any) -> str:
        if score is None:
            return "—"
        return f"{score:.4f} {'**drift**' if drifted else 'ok'}"

    for c in result["per_column"]:
        lines.append(
            f"| {c['column']} | {'yes' if c['injected_drift'] else 'no'} "
            f"| {c['test']} ({c['threshold']:g}) | {cell(c['ours_score'], c['ours_drifted'])} "
            f"| {cell(c['profile_score'], c['profile_drifted'])} "
            f"| {c['evidently_method'] or '—'} "
            f"| {cell(c['evidently_score'], c['evidently_drifted'])} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--no-install", action="store_true", help="reuse the Evidently venv only")
    parser.add_argument("--evidently-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evidently_worker is not None:
        print(json.dumps(evidently_worker(args.evidently_worker)))
        return 0
    print(json.dumps(run(args.rows, install=not args.no_install), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
