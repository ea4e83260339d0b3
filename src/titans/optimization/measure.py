"""Measurements the optimiser reports: single-row latency, batch throughput, output agreement."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from titans.models.base import TrainedModel
from titans.models.fast import fast_predictor
from titans.models.inputs import typed_frame

#: the fields an API request carries (the holdout's label columns are left out)
REQUEST_FIELDS = (
    "date",
    "type",
    "description",
    "amount",
    "payment_method",
    "reference",
    "status",
    "category",
)


def request_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as the API receives them: ISO date strings, None for missing values."""
    records = []
    present = [f for f in REQUEST_FIELDS if f in frame.columns]
    for row in frame[present].astype(object).to_dict("records"):
        record = {k: (None if v is None or v is pd.NA or v != v else v) for k, v in row.items()}
        if record.get("date") is not None:
            record["date"] = str(record["date"])[:10]
        records.append(record)
    return records


def single_row_path(trained: TrainedModel) -> tuple[str, Callable[[Mapping[str, Any]], Any]]:
    """How the API scores one transaction of this model: its compiled path, or the batch path
    on a one-row frame; (``compiled`` | ``batch``, the function)."""
    fast = fast_predictor(trained)
    if fast is not None:
        return "compiled", fast.predict_one

    def batch_one(record: Mapping[str, Any]) -> pd.DataFrame:
        return trained.predict(typed_frame(pd.DataFrame([dict(record)])))

    return "batch", batch_one


def latencies_us(
    predict_one: Callable[[Mapping[str, Any]], Any],
    records: list[dict[str, Any]],
    rounds: int = 1,
) -> np.ndarray:
    """Microseconds per call, one call per record per round (after one untimed warm-up)."""
    predict_one(records[0])
    out = []
    for _ in range(rounds):
        for record in records:
            started = time.perf_counter_ns()
            predict_one(record)
            out.append((time.perf_counter_ns() - started) / 1000.0)
    return np.asarray(out, dtype=np.float64)


def percentiles(values: np.ndarray) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50_us": round(float(p50), 1), "p99_us": round(float(p99), 1)}


def batch_rows_per_second(trained: TrainedModel, frame: pd.DataFrame, repeats: int = 3) -> float:
    """Rows per second predicting ``frame`` in one call (best of ``repeats``)."""
    typed = typed_frame(frame)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        trained.predict(typed)
        best = min(best, time.perf_counter() - started)
    return round(len(frame) / best, 1)


def rows_for_batch(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` rows of ``frame`` (drawn with replacement, seeded, when it has fewer)."""
    if len(frame) >= rows:
        return frame.head(rows).reset_index(drop=True)
    picks = np.random.default_rng(seed).choice(len(frame), rows, replace=True)
    return frame.iloc[picks].reset_index(drop=True)


@dataclass
class Agreement:
    """How closely a candidate's outputs follow a reference's on the same rows."""

    rows: int
    label_agreement: float | None
    max_abs_diff: float
    max_rel_diff: float
    column: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "label_agreement": self.label_agreement,
            "max_abs_diff": self.max_abs_diff,
            "max_rel_diff": self.max_rel_diff,
            "column": self.column,
        }


def agreement(reference: pd.DataFrame, candidate: pd.DataFrame) -> Agreement:
    """Label agreement (``prediction`` of a classifier, ``is_anomaly``) and the largest
    difference of the main numeric output (``probability`` / ``prediction`` / ``score``)."""
    label_column = next(
        (c for c in ("is_anomaly", "prediction") if c in reference and reference[c].dtype != float),
        None,
    )
    labels = None
    if label_column is not None:
        same = reference[label_column].to_numpy() == candidate[label_column].to_numpy()
        labels = float(same.mean()) if len(same) else 1.0
    numeric = next(c for c in ("probability", "prediction", "score") if c in reference)
    if label_column == "prediction":
        numeric = "probability"
    ref = reference[numeric].to_numpy(dtype=np.float64)
    got = candidate[numeric].to_numpy(dtype=np.float64)
    diff = np.abs(ref - got)
    rel = diff / np.maximum(np.abs(ref), 1.0)
    return Agreement(
        rows=len(reference),
        label_agreement=labels,
        max_abs_diff=float(diff.max()) if diff.size else 0.0,
        max_rel_diff=float(rel.max()) if rel.size else 0.0,
        column=numeric,
    )
