"""Data drift: per-column stat tests chosen by column kind and sample size, and dataset drift.

Small samples are judged by hypothesis tests (KS, chi²); above ``large_sample_rows`` by
distances with effect-size thresholds (normalised Wasserstein, Jensen–Shannon), because
p-values flag almost any change at large n. The dataset drifts when the share of drifted
columns reaches ``drift_share``. Every threshold is a named setting (``Settings.drift``).

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"x": rng.normal(size=5_000), "c": rng.choice(["a", "b"], 5_000)})
>>> current = pd.DataFrame({"x": rng.normal(0.5, size=5_000), "c": rng.choice(["a", "b"], 5_000)})
>>> result = detect_drift(reference, current)
>>> result.drifted_features, result.share_drifted, result.drifted
(['x'], 0.5, True)
>>> result.columns["x"].test, round(result.columns["x"].score, 3), result.columns["x"].threshold
('wasserstein', 0.524, 0.1)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from titans.config import DriftSettings, Settings
from titans.errors import InputError
from titans.monitoring.profile import CategoricalProfile, ReferenceProfile
from titans.monitoring.stattests import (
    REGISTRY,
    CategoricalCounts,
    ColumnData,
    ColumnKind,
    DriftResult,
    NumericSample,
    StatTest,
    get_test,
)

__all__ = [
    "REGISTRY",
    "DatasetDriftResult",
    "DriftResult",
    "StatTest",
    "choose_test",
    "column_kind",
    "detect_drift",
    "detect_drift_against_profile",
    "get_test",
]


@dataclass(frozen=True)
class DatasetDriftResult:
    """Per-column verdicts and the dataset verdict (share of drifted columns >= drift_share).

    The share counts columns that got a score; a column without one (no non-missing values on a
    side) is reported with its note but neither drifts nor counts.
    """

    columns: dict[str, DriftResult]
    share_drifted: float
    drift_share: float
    drifted: bool
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, result in self.columns.items() if result.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "share_drifted": self.share_drifted,
            "drift_share": self.drift_share,
            "drifted_features": self.drifted_features,
            "columns": {name: result.to_dict() for name, result in self.columns.items()},
            "settings": self.settings,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per column: test, score, threshold, verdict, sample sizes."""
        rows = [result.to_dict() for result in self.columns.values()]
        return pd.DataFrame(rows).set_index("column") if rows else pd.DataFrame()


def _drift_settings(settings: DriftSettings | Settings | None) -> DriftSettings:
    if settings is None:
        return Settings().drift
    return settings.drift if isinstance(settings, Settings) else settings


def column_kind(values: pd.Series) -> ColumnKind:
    """numeric for numeric dtypes (booleans excluded), categorical for everything else."""
    is_numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return "numeric" if is_numeric else "categorical"


def choose_test(
    kind: ColumnKind, n_reference: int, n_current: int, settings: DriftSettings
) -> StatTest:
    """The test the settings pick for a column of ``kind`` with these non-missing row counts:
    a hypothesis test unless both samples exceed ``large_sample_rows``, a distance otherwise."""
    large = min(n_reference, n_current) > settings.large_sample_rows
    if kind == "numeric":
        name = settings.large_sample_numeric_test if large else settings.small_sample_numeric_test
    else:
        name = (
            settings.large_sample_categorical_test
            if large
            else settings.small_sample_categorical_test
        )
    return get_test(name)


def _column_data(values: pd.Series, kind: ColumnKind) -> ColumnData:
    if kind == "numeric":
        numbers = pd.to_numeric(values, errors="coerce")
        return NumericSample.from_values(numbers.to_numpy(dtype="float64", na_value=float("nan")))
    return CategoricalCounts.from_values(values)


def _judge(
    names: list[str],
    load: Callable[[str], tuple[ColumnData, ColumnData]],
    tests: Mapping[str, str] | None,
    settings: DriftSettings,
) -> DatasetDriftResult:
    tests = dict(tests or {})

    def judge_one(name: str) -> DriftResult:
        reference, current = load(name)
        if name in tests:
            test = get_test(tests[name])
        else:
            kind: ColumnKind = "numeric" if isinstance(reference, NumericSample) else "categorical"
            test = choose_test(kind, reference.count, current.count, settings)
        return test.run(name, reference, current, settings)

    workers = min(settings.workers or os.cpu_count() or 1, len(names))
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            verdicts = list(pool.map(judge_one, names))
    else:
        verdicts = [judge_one(name) for name in names]
    results = dict(zip(names, verdicts, strict=True))
    judged = [r for r in results.values() if r.note is None]
    share = sum(r.drifted for r in judged) / len(judged) if judged else 0.0
    return DatasetDriftResult(
        columns=results,
        share_drifted=share,
        drift_share=settings.drift_share,
        drifted=bool(judged) and share >= settings.drift_share,
        settings=settings.model_dump(),
    )


def _check_columns(wanted: list[str], available: Iterable[str], where: str) -> None:
    have = set(available)
    missing = [c for c in wanted if c not in have]
    if missing:
        raise InputError(
            f"column(s) {', '.join(map(repr, missing))} not in the {where}; "
            f"pick columns among {', '.join(sorted(map(str, have)))}"
        )


def _check_tests(tests: Mapping[str, str] | None, columns: list[str]) -> None:
    for name, test in (tests or {}).items():
        get_test(test)
        if name not in columns:
            raise InputError(f"a test is set for column {name!r}, which is not compared")


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Iterable[str] | None = None,
    *,
    kinds: Mapping[str, ColumnKind] | None = None,
    tests: Mapping[str, str] | None = None,
    settings: DriftSettings | Settings | None = None,
) -> DatasetDriftResult:
    """Compare ``current`` with ``reference`` column by column.

    ``columns`` default: the reference's columns (all must be in ``current``). ``kinds``
    overrides the kind inferred from the reference dtype; ``tests`` forces a registered test
    per column instead of the automatic choice.
    """
    drift = _drift_settings(settings)
    wanted = list(columns) if columns is not None else [str(c) for c in reference.columns]
    _check_columns(wanted, reference.columns, "reference")
    _check_columns(wanted, current.columns, "current data")
    _check_tests(tests, wanted)
    kinds = dict(kinds or {})
    for name, kind in kinds.items():
        if kind not in ("numeric", "categorical"):
            raise InputError(f"column {name!r}: unknown kind {kind!r}; use numeric|categorical")

    def load(name: str) -> tuple[ColumnData, ColumnData]:
        kind = kinds.get(name) or column_kind(reference[name])
        return _column_data(reference[name], kind), _column_data(current[name], kind)

    return _judge(wanted, load, tests, drift)


def detect_drift_against_profile(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    columns: Iterable[str] | None = None,
    *,
    tests: Mapping[str, str] | None = None,
    settings: DriftSettings | Settings | None = None,
) -> DatasetDriftResult:
    """Compare ``current`` with the reference profile stored with a model (no training data).

    Categorical verdicts equal the raw-data ones when the profile kept every category (no
    ``__other__``). Numeric scores come from the profile's quantile sketch of K knots: the KS
    statistic is within 1/(K−1) + 2/n_reference of the raw-data one, the Wasserstein distance
    within (max − min)/(K−1) (see tests/monitoring/test_drift.py).
    """
    drift = _drift_settings(settings)
    wanted = list(columns) if columns is not None else list(profile.columns)
    _check_columns(wanted, profile.columns, "reference profile")
    _check_columns(wanted, current.columns, "current data")
    _check_tests(tests, wanted)

    def load(name: str) -> tuple[ColumnData, ColumnData]:
        stored = profile.columns[name]
        if isinstance(stored, CategoricalProfile):
            reference: ColumnData = CategoricalCounts.from_profile(stored)
            return reference, _column_data(current[name], "categorical")
        return NumericSample.from_profile(stored), _column_data(current[name], "numeric")

    return _judge(wanted, load, tests, drift)
