"""Data quality of incoming transactions and model features, and a quality report over a period.

Every check is a whole-column pandas/numpy operation. Results are plain dicts that keep the
thresholds used, so the verdict can be re-derived; ``faults`` names each problem found with the
column it is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from sqlalchemy import select

from titans.config import Settings
from titans.data.columns import (
    COLUMNS,
    EXPENSE_CATEGORIES,
    PAYMENT_METHODS,
    SNAKE_CASE,
    STATUSES,
    TRANSACTION_TYPES,
)
from titans.errors import InputError
from titans.monitoring.profile import NumericProfile, ReferenceProfile
from titans.store import Store
from titans.store.models import Prediction, utcnow

#: thresholds used unless the constructor is given others
DEFAULT_THRESHOLDS: dict[str, float] = {
    # |modified z| of log(1 + |amount|) above which a value is an outlier (Iglewicz & Hoaglin)
    "outlier_robust_z": 3.5,
    # |change| of a pairwise correlation against the reference that is reported
    "correlation_change": 0.2,
    # drop of a feature's permutation importance (share of reference) that is reported
    "importance_drop": 0.5,
    # rows sampled for permutation importance
    "importance_sample_rows": 2000,
}

#: vocabulary of each categorical column of the export format
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "type": TRANSACTION_TYPES,
    "category": EXPENSE_CATEGORIES,
    "payment_method": PAYMENT_METHODS,
    "status": STATUSES,
}
_ALWAYS_REQUIRED = ("date", "type", "description", "amount", "status", "reference")
_EXPENSE_REQUIRED = ("category", "payment_method")
_MAX_EXAMPLES = 10

_TEMPLATE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Data quality report</title>
<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1.5em}
td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}th{background:#eee}</style>
</head><body>
<h1>Data quality report</h1>
<p>Period {{ r.period.start }} to {{ r.period.end }}: {{ r.predictions }} logged predictions.</p>
<h2>Summary</h2>
<table><tr><th>quality score</th><td>{{ '%.4f' % r.input_quality.quality_score }}</td></tr>
<tr><th>rows</th><td>{{ r.input_quality.rows }}</td></tr>
{% for model, n in r.predictions_by_model.items() %}
<tr><th>predictions of {{ model }}</th><td>{{ n }}</td></tr>{% endfor %}</table>
<h2>Score breakdown</h2>
<table><tr><th>check</th><th>score</th></tr>
{% for check, score in r.input_quality.breakdown.items() %}
<tr><td>{{ check }}</td><td>{{ '%.4f' % score }}</td></tr>{% endfor %}</table>
<h2>Faults</h2>
<table><tr><th>check</th><th>column</th><th>rows</th><th>examples</th></tr>
{% for f in r.input_quality.faults %}
<tr><td>{{ f.check }}</td><td>{{ f.column }}</td><td>{{ f.count }}</td>
<td>{{ f.examples | join(', ') }}</td></tr>{% else %}<tr><td colspan="4">none</td></tr>{% endfor %}
</table>
<h2>Completeness</h2>
<table><tr><th>column</th><th>complete share</th></tr>
{% for column, share in r.input_quality.completeness.items() %}
<tr><td>{{ column }}</td><td>{{ '%.4f' % share }}</td></tr>{% endfor %}</table>
<h2>Thresholds</h2>
<table>{% for name, value in r.input_quality.thresholds.items() %}
<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
</body></html>
"""
)


def _fault(check: str, column: str, mask: pd.Series, values: pd.Series) -> dict[str, Any]:
    examples = values[mask].dropna().astype(str).unique()[:_MAX_EXAMPLES]
    return {"check": check, "column": column, "count": int(mask.sum()), "examples": list(examples)}


def _as_transactions(data: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise InputError(f"data must be a pandas DataFrame of transactions, not {type(data)}")
    frame = data.rename(columns={k: v for k, v in SNAKE_CASE.items() if k in data.columns})
    missing = [c for c in _ALWAYS_REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(
            f"data lacks column(s) {', '.join(missing)}; pass transactions in the export format "
            f"({', '.join(COLUMNS)})"
        )
    return frame


class DataQualityMonitor:
    """Check incoming transactions and model features; report quality over a period."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        reference_profile: ReferenceProfile | None = None,
        reference_features: pd.DataFrame | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        unknown = sorted(set(thresholds or {}) - set(DEFAULT_THRESHOLDS))
        if unknown:
            raise InputError(
                f"unknown threshold(s) {', '.join(unknown)}; use {', '.join(DEFAULT_THRESHOLDS)}"
            )
        self.settings = settings if settings is not None else (store.settings if store else None)
        self._store = store
        self.reference_profile = reference_profile
        self.reference_features = reference_features
        self.thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}

    @property
    def store(self) -> Store:
        """The ops store (built from the settings on first use)."""
        if self._store is None:
            self._store = Store(self.settings or Settings())
        return self._store

    # ------------------------------------------------------------------ input quality

    def monitor_input_quality(self, data: pd.DataFrame) -> dict[str, Any]:
        """Completeness, type validity, ranges, outliers, unknown categories and duplicates.

        ``quality_score`` is the mean of the ``breakdown`` scores (each 0-1, 1 = no problem);
        ``faults`` lists each problem with its column, row count and example values.
        """
        frame = _as_transactions(data)
        n = len(frame)
        faults: list[dict[str, Any]] = []
        expense = (frame["type"].astype("string") == "Expense").fillna(False)
        # a row the schema would reject (what the bad_row_share alert rule watches)
        bad_row = pd.Series(False, index=frame.index)

        completeness: dict[str, float] = {}
        missing_required = 0
        required_cells = 0
        for column in (*_ALWAYS_REQUIRED, *_EXPENSE_REQUIRED):
            if column not in frame.columns:
                continue
            values = frame[column]
            blank = values.isna()
            if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
                blank = blank | (values.astype("string").str.strip() == "").fillna(False)
            applies = expense if column in _EXPENSE_REQUIRED else pd.Series(True, index=frame.index)
            lacking = blank & applies
            cells = int(applies.sum())
            completeness[column] = 1.0 - int(lacking.sum()) / cells if cells else 1.0
            missing_required += int(lacking.sum())
            bad_row |= lacking
            required_cells += cells
            if lacking.any():
                faults.append(_fault("missing", column, lacking, values))

        dates = pd.to_datetime(frame["date"], errors="coerce")
        amount = pd.to_numeric(frame["amount"], errors="coerce").astype("float64")
        bad_date = frame["date"].notna() & dates.isna()
        bad_amount = frame["amount"].notna() & ~np.isfinite(amount.fillna(0.0))
        bad_amount |= frame["amount"].notna() & amount.isna()
        for column, bad in (("date", bad_date), ("amount", bad_amount)):
            if bad.any():
                faults.append(_fault("invalid_type", column, bad, frame[column]))
        type_validity = 1.0 - (int(bad_date.sum()) + int(bad_amount.sum())) / (2 * n) if n else 1.0

        wrong_sign = (expense & (amount > 0)) | (~expense & (amount < 0))
        bad_row |= bad_date | bad_amount | wrong_sign
        out_of_range = pd.Series(False, index=frame.index)
        profile = self.reference_profile.columns.get("amount") if self.reference_profile else None
        if isinstance(profile, NumericProfile) and profile.count:
            out_of_range = (amount < profile.min) | (amount > profile.max)
            if out_of_range.any():
                faults.append(_fault("out_of_reference_range", "amount", out_of_range, amount))
        if wrong_sign.any():
            faults.append(_fault("sign_for_type", "amount", wrong_sign, amount))
        range_score = 1.0 - float((wrong_sign | out_of_range).mean()) if n else 1.0

        log_amount = np.log1p(np.abs(amount))
        median = float(np.nanmedian(log_amount)) if n else 0.0
        mad = float(np.nanmedian(np.abs(log_amount - median))) if n else 0.0
        robust_z = 0.6745 * (log_amount - median) / mad if mad > 0 else log_amount * 0.0
        outlier = (robust_z.abs() > self.thresholds["outlier_robust_z"]).fillna(False)
        if outlier.any():
            faults.append(_fault("outlier", "amount", outlier, amount))
        outlier_score = 1.0 - float(outlier.mean()) if n else 1.0

        unknown_categories: dict[str, dict[str, int]] = {}
        unknown_cells = 0
        categorical_cells = 0
        for column, vocabulary in VOCABULARIES.items():
            if column not in frame.columns:
                continue
            values = frame[column].astype("string")
            present = values.notna()
            unknown = present & ~values.isin(vocabulary)
            categorical_cells += int(present.sum())
            unknown_cells += int(unknown.sum())
            bad_row |= unknown
            if unknown.any():
                counts = values[unknown].value_counts()
                unknown_categories[column] = {str(k): int(v) for k, v in counts.items()}
                faults.append(_fault("unknown_category", column, unknown, values))
        category_score = 1.0 - unknown_cells / categorical_cells if categorical_cells else 1.0

        duplicated = frame.duplicated(keep="first")
        duplicates = int(duplicated.sum())
        if duplicates:
            faults.append(_fault("duplicate", "*", duplicated, frame["reference"]))

        breakdown = {
            "completeness": 1.0 - missing_required / required_cells if required_cells else 1.0,
            "type_validity": type_validity,
            "ranges": range_score,
            "outliers": outlier_score,
            "categories": category_score,
            "duplicates": 1.0 - duplicates / n if n else 1.0,
        }
        return {
            "rows": n,
            "quality_score": float(np.mean(list(breakdown.values()))),
            "breakdown": breakdown,
            "completeness": completeness,
            "type_validity": {"date": int(bad_date.sum()), "amount": int(bad_amount.sum())},
            "ranges": {
                "sign_for_type": int(wrong_sign.sum()),
                "out_of_reference_range": int(out_of_range.sum()),
            },
            "outliers": {"amount": int(outlier.sum()), "median_log_amount": median, "mad": mad},
            "unknown_categories": unknown_categories,
            "duplicates": duplicates,
            "faults": faults,
            # named as the alert rules name them (titans.monitoring.metric_names)
            "alert_metrics": {
                "missing_share": missing_required / required_cells if required_cells else 0.0,
                "bad_row_share": float(bad_row.mean()) if n else 0.0,
            },
            "thresholds": dict(self.thresholds),
        }

    # ------------------------------------------------------------------ feature quality

    def monitor_feature_quality(
        self,
        features: pd.DataFrame,
        *,
        model: Any | None = None,
        target: Any | None = None,
        reference_target: Any | None = None,
    ) -> dict[str, Any]:
        """Missing values, distribution, correlation change and permutation-importance drift.

        Correlation change and importance drift compare with ``reference_features`` given to the
        constructor; importance drift also needs a fitted ``model`` and both targets, and is
        skipped with a note otherwise.
        """
        if not isinstance(features, pd.DataFrame):
            raise InputError(f"features must be a pandas DataFrame, not {type(features)}")
        numeric = features.select_dtypes("number")
        missing = {str(c): float(v) for c, v in features.isna().mean().items()}
        distribution: dict[str, dict[str, Any]] = {}
        if not numeric.empty:
            stats = numeric.describe(percentiles=[0.05, 0.5, 0.95]).T
            for column, row in stats.iterrows():
                distribution[str(column)] = {k: float(v) for k, v in row.items()}
        for column in features.columns.difference(numeric.columns):
            top = features[column].astype("string").value_counts(normalize=True).head(10)
            distribution[str(column)] = {"top": {str(k): float(v) for k, v in top.items()}}

        reference = self.reference_features
        correlation: dict[str, Any] = {"skipped": "no reference features given"}
        if reference is not None:
            common = [c for c in numeric.columns if c in reference.select_dtypes("number").columns]
            change = (numeric[common].corr() - reference[common].corr()).abs()
            upper = change.where(np.triu(np.ones(change.shape, dtype=bool), k=1))
            pairs = upper.stack()
            flagged = pairs[pairs > self.thresholds["correlation_change"]]
            correlation = {
                "max_change": float(pairs.max()) if len(pairs) else 0.0,
                "changed_pairs": {f"{a}~{b}": float(v) for (a, b), v in flagged.items()},
            }

        importance = self._importance_drift(features, model, target, reference_target)
        return {
            "rows": len(features),
            "missing": missing,
            "distribution": distribution,
            "correlation": correlation,
            "importance_drift": importance,
            "thresholds": dict(self.thresholds),
        }

    def _importance_drift(
        self, features: pd.DataFrame, model: Any, target: Any, reference_target: Any
    ) -> dict[str, Any]:
        if model is None:
            return {"skipped": "no model given"}
        if self.reference_features is None or target is None or reference_target is None:
            return {"skipped": "needs reference_features and both targets"}
        from sklearn.inspection import permutation_importance

        size = int(self.thresholds["importance_sample_rows"])
        rng = np.random.default_rng(0)

        def importances(frame: pd.DataFrame, y: Any) -> pd.Series:
            y_values = np.asarray(y)
            rows = rng.choice(len(frame), size=min(size, len(frame)), replace=False)
            result = permutation_importance(
                model, frame.iloc[rows], y_values[rows], n_repeats=5, random_state=0
            )
            return pd.Series(result["importances_mean"], index=frame.columns)

        before = importances(self.reference_features[features.columns], reference_target)
        after = importances(features, target)
        scale = before.clip(lower=1e-12)
        drop = ((before - after) / scale).where(before > 0, 0.0)
        dropped = drop[drop > self.thresholds["importance_drop"]]
        return {
            "reference": {str(k): float(v) for k, v in before.items()},
            "current": {str(k): float(v) for k, v in after.items()},
            "dropped_features": {str(k): float(v) for k, v in dropped.items()},
        }

    # ------------------------------------------------------------------ report

    def generate_quality_report(
        self,
        time_period: tuple[datetime, datetime] | timedelta,
        *,
        model_name: str | None = None,
        html_path: str | Path | None = None,
    ) -> dict[str, Any]:
        """Input quality of the raw features of predictions logged in ``time_period``.

        ``time_period`` is ``(start, end)`` or a duration ending now. With ``html_path`` the
        report is also written there as a self-contained HTML page.
        """
        if isinstance(time_period, timedelta):
            end = utcnow()
            start = end - time_period
        else:
            start, end = time_period
        if start.tzinfo is None or end.tzinfo is None:
            raise InputError(
                f"time period ({start}, {end}) needs timezone-aware datetimes; pass UTC times"
            )
        if start >= end:
            raise InputError(f"time period starts ({start}) after it ends ({end}); swap them")
        query = select(Prediction.model_name, Prediction.features).where(
            Prediction.ts >= start,
            Prediction.ts < end,
            # a shadow score re-reads an input already counted under the served prediction
            ~Prediction.prediction_id.like("%:shadow"),
        )
        if model_name is not None:
            query = query.where(Prediction.model_name == model_name)
        with self.store.session() as session:
            rows = session.execute(query).all()
        models = pd.Series([r[0] for r in rows], dtype="string")
        inputs = pd.DataFrame.from_records([r[1] for r in rows])
        for column in COLUMNS:
            if column not in inputs.columns:
                inputs[column] = pd.Series(pd.NA, index=inputs.index, dtype="string")
        report: dict[str, Any] = {
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "predictions": len(rows),
            "predictions_by_model": {str(k): int(v) for k, v in models.value_counts().items()},
            "input_quality": self.monitor_input_quality(inputs),
        }
        if html_path is not None:
            path = Path(html_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_html(report), encoding="utf-8")
            report["html_path"] = str(path)
        return report


def render_html(report: Mapping[str, Any]) -> str:
    """The report of :meth:`DataQualityMonitor.generate_quality_report` as one HTML page."""
    return _TEMPLATE.render(r=report)
