"""Reference profiles: compact per-column statistics of a model's training data.

A profile travels with every logged model (artifact ``reference_profile.json``) so that
monitoring compares live traffic with training data without needing the training set.
Numeric columns keep ~1,000 quantile edges plus denser ones in both tails (enough to
reproduce KS and Wasserstein verdicts),
categorical columns keep value frequencies (top values plus an ``__other__`` bucket).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titans.errors import InputError

PROFILE_FILENAME = "reference_profile.json"
OTHER = "__other__"
MISSING = "__missing__"

#: extra quantile levels kept in each tail (outer 0.05 %): a heavy tail moves the Wasserstein
#: distance most exactly where 1,001 equal steps say least (mirrored as 1 − level at the top)
TAIL_LEVELS: tuple[float, ...] = (1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4)

#: the monitored view of a transaction: (column, kind)
MONITORED_COLUMNS: dict[str, str] = {
    "amount": "numeric",
    "log_abs_amount": "numeric",
    "day_of_month": "numeric",
    "description_length": "numeric",
    "day_of_week": "categorical",
    "type": "categorical",
    "category": "categorical",
    "payment_method": "categorical",
    "status": "categorical",
    "reference": "categorical",
}


def monitored_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns monitoring watches, derived vectorised from a typed transactions frame."""
    dates = pd.to_datetime(frame["date"])
    amount = pd.to_numeric(frame["amount"], errors="coerce").astype("float64")
    description = frame["description"].astype("string")
    view = pd.DataFrame(
        {
            "amount": amount,
            "log_abs_amount": np.log1p(np.abs(amount)),
            "day_of_month": dates.dt.day.astype("float64"),
            "description_length": description.str.len().astype("float64"),
            "day_of_week": dates.dt.day_of_week.astype("string"),
        },
        index=frame.index,
    )
    for column in ("type", "category", "payment_method", "status", "reference"):
        view[column] = frame[column].astype("string") if column in frame else pd.NA
    return view


@dataclass
class NumericProfile:
    """Quantile sketch and moments of one numeric column."""

    count: int
    missing: int
    mean: float
    std: float
    min: float
    max: float
    quantiles: list[float]
    kind: str = "numeric"
    #: quantiles at ``tail_levels`` (both tails; absent from profiles made before they existed)
    tail_levels: list[float] = field(default_factory=list)
    tail_quantiles: list[float] = field(default_factory=list)

    @classmethod
    def from_values(cls, values: np.ndarray, n_quantiles: int) -> NumericProfile:
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return cls(
                0, int(values.size), float("nan"), float("nan"), float("nan"), float("nan"), []
            )
        probs = np.linspace(0.0, 1.0, n_quantiles)
        tails = np.array(sorted([*TAIL_LEVELS, *(1.0 - t for t in TAIL_LEVELS)]))
        edges = np.quantile(finite, np.concatenate((probs, tails)))
        return cls(
            count=int(finite.size),
            missing=int(values.size - finite.size),
            mean=float(finite.mean()),
            std=float(finite.std()),
            min=float(finite.min()),
            max=float(finite.max()),
            quantiles=edges[:n_quantiles].tolist(),
            tail_levels=tails.tolist(),
            tail_quantiles=edges[n_quantiles:].tolist(),
        )


@dataclass
class CategoricalProfile:
    """Value frequencies of one categorical column (top values, the rest as ``__other__``)."""

    count: int
    missing: int
    frequencies: dict[str, int] = field(default_factory=dict)
    kind: str = "categorical"

    @classmethod
    def from_values(cls, values: pd.Series, max_categories: int) -> CategoricalProfile:
        missing = int(values.isna().sum())
        counts = values.dropna().value_counts(sort=True)
        top = counts.iloc[:max_categories]
        frequencies = {str(k): int(v) for k, v in top.items()}
        rest = int(counts.iloc[max_categories:].sum())
        if rest:
            frequencies[OTHER] = rest
        return cls(count=int(counts.sum()), missing=missing, frequencies=frequencies)


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass
class ReferenceProfile:
    """Per-column profiles of a reference data set (a model's training data)."""

    rows: int
    columns: dict[str, ColumnProfile]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        kinds: dict[str, str] | None = None,
        n_quantiles: int = 1001,
        max_categories: int = 200,
        meta: dict[str, Any] | None = None,
    ) -> ReferenceProfile:
        """Profile the given columns of ``frame`` (default: the monitored view's kinds)."""
        kinds = kinds or {c: k for c, k in MONITORED_COLUMNS.items() if c in frame.columns}
        columns: dict[str, ColumnProfile] = {}
        for name, kind in kinds.items():
            if kind == "numeric":
                values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype="float64")
                columns[name] = NumericProfile.from_values(values, n_quantiles)
            elif kind == "categorical":
                columns[name] = CategoricalProfile.from_values(
                    frame[name].astype("string"), max_categories
                )
            else:
                raise InputError(f"column {name!r}: unknown kind {kind!r}; use numeric|categorical")
        return cls(rows=len(frame), columns=columns, meta=dict(meta or {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "meta": self.meta,
            "columns": {name: asdict(p) for name, p in self.columns.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReferenceProfile:
        columns: dict[str, ColumnProfile] = {}
        for name, raw in data["columns"].items():
            columns[name] = (
                NumericProfile(**raw) if raw["kind"] == "numeric" else CategoricalProfile(**raw)
            )
        return cls(rows=int(data["rows"]), columns=columns, meta=dict(data.get("meta", {})))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=True)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(
                f"{path}: not a readable reference profile ({exc}); re-log the model"
            ) from exc
