"""ModelMonitor: prediction quality, data drift, concept drift and performance of served models.

Each method judges one aspect of one model version against what that version knows about
itself: the reference profile logged with it (inputs and outputs of its training data), its
validation metrics (``evaluation.json``) and, for the category classifier, a confidence
calibration fitted on its held-out rows (so accuracy can be estimated before labels arrive).
Nothing here needs the training set.

Every result is a :class:`MonitorResult` of :class:`MetricVerdict` rows (metric, value,
threshold, verdict). :meth:`ModelMonitor.run_window` reads one window of the prediction log
(with the feedback joined), runs every monitor, stores each verdict in the ops store
(``monitor_metrics`` rows plus the full result in ``monitoring_results``), sets the Prometheus
gauges of its own registry and feeds the alert rules when an AlertManager is attached.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func, select

from titans.config import Settings
from titans.errors import InputError, ModelNotFoundError
from titans.experiments.ab_testing import shadow_prediction_id
from titans.monitoring import metric_names as mn
from titans.monitoring.drift import DatasetDriftResult, detect_drift_against_profile
from titans.monitoring.performance import (
    ConfidenceCalibration,
    ErrorStreamDetector,
    estimate_accuracy,
    label_ready_mask,
    realised_accuracy,
    realised_mean_error,
)
from titans.monitoring.profile import PROFILE_FILENAME, ReferenceProfile, monitored_view
from titans.store import Store
from titans.store.models import (
    AuditEntryRow,
    Feedback,
    MonitoringResult,
    MonitorMetric,
    Prediction,
    utcnow,
)

if TYPE_CHECKING:
    from titans.monitoring.alerts import AlertManager

Verdict = Literal["ok", "breach", "insufficient", "unavailable"]
Kind = Literal["data_drift", "concept_drift", "data_quality", "performance", "prediction_quality"]

MODEL_KEYS = ("category", "amount", "anomaly", "cashflow")
#: how a retrain ends on the audit trail (``retrain.<outcome>``, titans.retraining.pipeline)
_RETRAIN_OUTCOMES = ("completed", "failed", "refused")
EVALUATION_FILENAME = "evaluation.json"
#: what a shadow score's prediction id ends with (titans.experiments.ab_testing)
SHADOW_SUFFIX = shadow_prediction_id("")
#: an amount error this many times the validation MAE is a "big miss" for the change detector
BIG_MISS = 2.0
#: features a window shorter than ``calendar_min_days`` covers only partly by construction
CALENDAR_COLUMNS = ("day_of_month", "day_of_week")
#: the longest window a pass reads (about 27 years)
MAX_WINDOW_DAYS = 10_000
#: prediction-log columns of each model's output the monitors read
OUTPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "category": ("prediction", "probability"),
    "amount": ("prediction",),
    "anomaly": ("score", "is_anomaly"),
    "cashflow": (),
}
#: the feedback field holding each model's actual outcome
ACTUAL_FIELDS: dict[str, str] = {
    "category": "category",
    "amount": "amount",
    "anomaly": "is_anomaly",
}


def parse_window(window: str | float | timedelta) -> timedelta:
    """A window length from ``1h``, ``30m``, ``1d``, seconds, or a timedelta.

    >>> parse_window("1h"), parse_window(90)
    (datetime.timedelta(seconds=3600), datetime.timedelta(seconds=90))
    """
    from titans.monitoring.alerts.rules import parse_duration

    if isinstance(window, timedelta):
        seconds = window.total_seconds()
    else:
        try:
            seconds = parse_duration(window)
        except ValueError as exc:
            raise InputError(f"window {window!r}: {exc}") from exc
    if seconds <= 0:
        raise InputError(f"window {window!r} is empty; use a positive length such as 1h")
    if seconds > MAX_WINDOW_DAYS * 86_400:
        raise InputError(
            f"window {window!r} is longer than {MAX_WINDOW_DAYS} days; use a shorter one"
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric of one monitoring pass: its value, the threshold used and the verdict."""

    metric: str
    value: float | None
    threshold: float | None
    verdict: Verdict
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass
class MonitorResult:
    """What one monitor found for one model version over one window."""

    kind: Kind
    model_name: str
    model_version: str | None
    metrics: list[MetricVerdict]
    details: dict[str, Any] = field(default_factory=dict)
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def breached(self) -> bool:
        """True when any headline metric's verdict is a breach.

        Per-feature drift rows (``drift:<feature>``) are the parts of ``drift_share``: with
        many features one flags by chance now and then, so the dataset verdict decides.
        """
        return any(
            m.verdict == "breach" and not m.metric.startswith("drift:") for m in self.metrics
        )

    def metric(self, name: str) -> MetricVerdict | None:
        return next((m for m in self.metrics if m.metric == name), None)

    @property
    def drifted_features(self) -> list[str]:
        """Features that drifted (data drift results only)."""
        return list(self.details.get("drift", {}).get("drifted_features", []))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "breached": self.breached,
            "metrics": [m.to_dict() for m in self.metrics],
            "details": self.details,
        }


@dataclass
class VersionReference:
    """What one registered version knows about itself: profile, validation metrics, calibration."""

    name: str
    key: str
    version: str
    profile: ReferenceProfile
    metrics: dict[str, float]
    calibration: ConfidenceCalibration | None = None
    #: mean top-class confidence on the held-out rows (category)
    reference_confidence: float | None = None
    #: classes the model predicts (category)
    classes: tuple[str, ...] = ()


@dataclass
class WindowData:
    """One window of the prediction log: inputs, outputs and feedback, in time order."""

    model_name: str
    start: datetime
    end: datetime
    ts: pd.Series
    versions: pd.Series
    inputs: pd.DataFrame
    outputs: pd.DataFrame
    latency_ms: np.ndarray
    actuals: pd.Series
    feedback_ts: pd.Series

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class WindowReport:
    """Every monitor's result for one model and window, and what it led to."""

    model_name: str
    model_version: str | None
    start: datetime
    end: datetime
    predictions: int
    results: list[MonitorResult]
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def result(self, kind: str) -> MonitorResult | None:
        return next((r for r in self.results if r.kind == kind), None)

    @property
    def drifted_features(self) -> list[str]:
        found = self.result("data_drift")
        return found.drifted_features if found else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "predictions": self.predictions,
            "drifted_features": self.drifted_features,
            "results": [r.to_dict() for r in self.results],
            "alerts": self.alerts,
        }


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _category_truth(values: pd.Series, classes: Iterable[str]) -> np.ndarray:
    """Actual categories as the model names them (lower case; unknown ones are ``other``)."""
    from titans.models.category import apply_known_classes

    return apply_known_classes(values.astype("string").str.strip().str.lower(), set(classes))


class ModelMonitor:
    """Watch the served models: drift, prediction quality, concept drift, performance.

    ``clock`` is injectable so replays and tests control "now" (label delay, windows).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        alert_manager: AlertManager | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = (
            settings if settings is not None else (store.settings if store else Settings())
        )
        self._store = store
        self.alert_manager = alert_manager
        self._clock = clock
        self._references: dict[tuple[str, str], VersionReference] = {}
        self._reference_lock = threading.Lock()
        self.registry = CollectorRegistry()
        self._gauges = {
            metric.name: self._gauge(metric)
            for metric in (
                mn.MONITOR_VALUE,
                mn.MONITOR_THRESHOLD,
                mn.MONITOR_BREACH,
                mn.FEATURE_DRIFT_SCORE,
                mn.FEATURE_DRIFTED,
                mn.DRIFT_SHARE,
                mn.ESTIMATED_ACCURACY,
                mn.REALISED_ACCURACY,
                mn.ERROR_STREAM_CHANGES,
                mn.MONITOR_PREDICTIONS,
                mn.MONITOR_LAST_RUN,
                mn.RETRAIN_RUNS,
                mn.PROCESS_CPU_PERCENT,
                mn.PROCESS_MEMORY_BYTES,
                mn.CATEGORY_MACRO_F1,
                mn.AMOUNT_MAE,
                mn.ANOMALY_FLAG_RATE,
                mn.DATA_QUALITY_SCORE,
                mn.MISSING_SHARE,
                mn.BAD_ROW_SHARE,
            )
        }
        self.runs_total = Counter(
            mn.MONITOR_RUNS.name,
            mn.MONITOR_RUNS.help,
            list(mn.MONITOR_RUNS.labels),
            registry=self.registry,
        )

    def _gauge(self, metric: mn.MetricName) -> Gauge:
        return Gauge(metric.name, metric.help, list(metric.labels), registry=self.registry)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings)
        return self._store

    # ------------------------------------------------------------------ names and references

    def resolve(self, model_name: str) -> tuple[str, str]:
        """(registered name, model key) for ``category`` or ``titans-category``."""
        for key in MODEL_KEYS:
            if model_name in (key, self.settings.registered_name(key)):
                return self.settings.registered_name(key), key
        raise InputError(
            f"unknown model {model_name!r}; use one of {', '.join(MODEL_KEYS)} "
            f"(or its registered name, e.g. {self.settings.registered_name('category')})"
        )

    def serving_version(self, model_name: str) -> str:
        """The version the ``production`` alias names (what the API serves)."""
        from titans.registry.registry_manager import ModelRegistryManager

        name, _ = self.resolve(model_name)
        version = ModelRegistryManager(self.settings).get_alias_version(name, "production")
        if version is None:
            raise ModelNotFoundError(
                f"{name} has no production version to monitor; promote one first "
                "(titans registry promote)"
            )
        return version

    def reference(self, model_name: str, version: str | None = None) -> VersionReference:
        """Profile, validation metrics and (category) calibration of one version, cached."""
        name, key = self.resolve(model_name)
        version = str(version) if version is not None else self.serving_version(name)
        cache_key = (name, version)
        with self._reference_lock:
            cached = self._references.get(cache_key)
            if cached is None:
                cached = self._load_reference(name, key, version)
                self._references[cache_key] = cached
            return cached

    def _load_reference(self, name: str, key: str, version: str) -> VersionReference:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.settings.tracking_uri)
        try:
            mv = client.get_model_version(name, version)
            if mv.run_id is None:
                raise ModelNotFoundError(
                    f"{name} version {version} has no training run; re-train it with `titans train`"
                )
            with tempfile.TemporaryDirectory() as tmp:
                profile = ReferenceProfile.load(
                    client.download_artifacts(mv.run_id, PROFILE_FILENAME, tmp)
                )
                evaluation = json.loads(
                    Path(client.download_artifacts(mv.run_id, EVALUATION_FILENAME, tmp)).read_text(
                        encoding="utf-8"
                    )
                )
        except MlflowException as exc:
            raise ModelNotFoundError(
                f"{name} version {version}: its reference profile or evaluation could not be "
                f"read ({str(exc).splitlines()[0]}); re-train it with `titans train`"
            ) from exc
        metrics = {
            k: float(v) for k, v in evaluation.get("metrics", {}).items() if _finite(v) is not None
        }
        reference = VersionReference(
            name=name, key=key, version=version, profile=profile, metrics=metrics
        )
        if key == "category":
            # the artifact's own location: a models:/ URI would resolve against MLflow's
            # global registry URI, which a fresh process (titans monitor serve) never set
            location = client.get_model_version_download_uri(name, version)
            self._calibrate(reference, str(mv.run_id), location)
        return reference

    def _calibrate(self, reference: VersionReference, run_id: str, uri: str) -> None:
        """Fit P(correct | confidence) on the version's held-out rows (CBPE's reference)."""
        from titans.models.base import get_spec
        from titans.models.pyfunc import load_trained
        from titans.models.train import load_holdout

        spec = get_spec("category", self.settings)
        holdout = spec.select(load_holdout(run_id, self.settings))
        if len(holdout) == 0:
            return
        trained = load_trained(uri)
        out = trained.predict(holdout)
        classes = tuple(str(c) for c in getattr(trained, "classes", ()) or ())
        if not classes:
            stored = reference.profile.columns.get("prediction")
            classes = tuple(getattr(stored, "frequencies", {}).keys())
        truth = _category_truth(holdout["category"], classes)
        confidence = out["probability"].to_numpy(dtype=np.float64)
        correct = out["prediction"].to_numpy(dtype=object) == truth
        reference.calibration = ConfidenceCalibration.fit(confidence, correct)
        reference.reference_confidence = float(confidence.mean())
        reference.classes = classes

    # ------------------------------------------------------------------ the task list's methods

    def monitor_data_drift(
        self,
        model_name: str,
        input_data: pd.DataFrame,
        *,
        version: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> MonitorResult:
        """Every input feature vs the serving version's reference profile; names the drifted."""
        ref = self.reference(model_name, version)
        if not isinstance(input_data, pd.DataFrame):
            raise InputError(
                f"input_data is a {type(input_data).__name__}; pass a DataFrame of transactions"
            )
        missing = [c for c in ("date", "amount", "description") if c not in input_data.columns]
        if missing:
            raise InputError(
                f"input_data lacks column(s) {', '.join(missing)}; pass raw transactions "
                "(date, type, description, amount, payment_method, ...)"
            )
        view = monitored_view(input_data)
        columns = [
            c
            for c in ref.profile.columns
            if c != "prediction" and c in view.columns and view[c].notna().any()
        ]
        skipped = sorted(set(ref.profile.columns) - set(columns) - {"prediction"})
        dates = pd.to_datetime(input_data["date"], errors="coerce")
        span = int((dates.max() - dates.min()).days) + 1 if dates.notna().any() else 0
        calendar: list[str] = []
        if span < self.settings.monitor.calendar_min_days:
            calendar = [c for c in columns if c in CALENDAR_COLUMNS]
            columns = [c for c in columns if c not in CALENDAR_COLUMNS]
        result = detect_drift_against_profile(ref.profile, view, columns, settings=self.settings)
        judged = len(input_data) >= self.settings.monitor.min_rows
        verdicts = [
            MetricVerdict(
                "drift_share",
                result.share_drifted,
                result.drift_share,
                ("breach" if result.drifted else "ok") if judged else "insufficient",
                f"{len(result.drifted_features)} of {len(columns)} features drifted",
            )
        ]
        for column, column_result in result.columns.items():
            verdicts.append(
                MetricVerdict(
                    f"drift:{column}",
                    _finite(column_result.score),
                    _finite(column_result.threshold),
                    ("breach" if column_result.drifted else "ok") if judged else "insufficient",
                    column_result.test,
                )
            )
        details = {
            "drift": result.to_dict(),
            "rows": len(input_data),
            "not_in_inputs": skipped,
            "calendar_not_compared": calendar,
            "date_span_days": span,
        }
        return self._result("data_drift", ref, verdicts, details, window, drift=result)

    def monitor_data_quality(
        self,
        model_name: str,
        input_data: pd.DataFrame,
        *,
        version: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> MonitorResult:
        """The DataQualityMonitor's checks on the inputs a model received (its label excluded).

        ``quality_score`` is judged against ``Settings.monitor.min_quality_score``; the
        missing and bad-row shares are the values the data-quality alert rules watch.
        """
        from titans.monitoring.data_quality import DataQualityMonitor

        ref = self.reference(model_name, version)
        frame = input_data.drop(columns=["category"]) if ref.key == "category" else input_data
        checked = DataQualityMonitor(self.settings, store=self.store).monitor_input_quality(frame)
        judged = checked["rows"] >= self.settings.monitor.min_rows
        floor = self.settings.monitor.min_quality_score
        score = float(checked["quality_score"])
        verdicts = [
            MetricVerdict(
                "quality_score",
                score,
                floor,
                ("breach" if score < floor else "ok") if judged else "insufficient",
                f"{len(checked['faults'])} kinds of fault",
            )
        ]
        for name, value in checked["alert_metrics"].items():
            verdicts.append(
                MetricVerdict(name, float(value), None, "ok" if judged else "insufficient")
            )
        return self._result("data_quality", ref, verdicts, {"quality": checked}, window)

    def monitor_prediction_quality(
        self,
        model_name: str,
        predictions: pd.DataFrame,
        *,
        version: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> MonitorResult:
        """Output distribution vs the reference, confidence drop, anomaly-rate spike, bad outputs.

        ``predictions`` holds the model's output columns: category ``prediction`` and
        ``probability``; amount ``prediction``; anomaly ``score`` and ``is_anomaly``.
        """
        ref = self.reference(model_name, version)
        wanted = OUTPUT_COLUMNS[ref.key]
        missing = [c for c in wanted if c not in predictions.columns]
        if missing:
            raise InputError(
                f"predictions of {ref.key} lack column(s) {', '.join(missing)}; "
                f"pass {', '.join(wanted)}"
            )
        cfg = self.settings.monitor
        judged = len(predictions) >= cfg.min_rows
        verdicts: list[MetricVerdict] = []
        details: dict[str, Any] = {"rows": len(predictions)}

        invalid = self._invalid_outputs(ref, predictions)
        share = float(invalid.mean()) if len(invalid) else 0.0
        verdicts.append(
            MetricVerdict(
                "invalid_output_share",
                share,
                cfg.invalid_output_share,
                ("breach" if share > cfg.invalid_output_share else "ok")
                if len(invalid)
                else "insufficient",
                f"{int(invalid.sum())} invalid of {len(invalid)}",
            )
        )
        output_column = "prediction" if ref.key != "anomaly" else "score"
        drift: DatasetDriftResult | None = None
        if "prediction" in ref.profile.columns and len(predictions):
            frame = pd.DataFrame({"prediction": predictions[output_column].to_numpy()})
            drift = detect_drift_against_profile(
                ref.profile, frame, ["prediction"], settings=self.settings
            )
            column = drift.columns["prediction"]
            verdicts.append(
                MetricVerdict(
                    "prediction_drift",
                    _finite(column.score),
                    _finite(column.threshold),
                    ("breach" if column.drifted else "ok") if judged else "insufficient",
                    column.test,
                )
            )
            details["prediction_drift"] = drift.to_dict()
        if ref.key == "category" and ref.reference_confidence is not None:
            confidence = pd.to_numeric(predictions["probability"], errors="coerce").mean()
            floor = ref.reference_confidence * (1 - cfg.confidence_drop)
            verdicts.append(
                MetricVerdict(
                    "mean_confidence",
                    _finite(confidence),
                    floor,
                    ("breach" if confidence < floor else "ok") if judged else "insufficient",
                    f"reference mean {ref.reference_confidence:.3f}",
                )
            )
        if ref.key == "anomaly":
            rate = (
                float(predictions["is_anomaly"].astype(bool).mean()) if len(predictions) else None
            )
            ceiling = self.settings.anomaly_alert_rate * cfg.anomaly_rate_factor
            verdicts.append(
                MetricVerdict(
                    "anomaly_rate",
                    rate,
                    ceiling,
                    ("breach" if (rate or 0.0) > ceiling else "ok") if judged else "insufficient",
                    f"expected ≈ {self.settings.anomaly_alert_rate:.3f}",
                )
            )
        return self._result("prediction_quality", ref, verdicts, details, window, drift=drift)

    @staticmethod
    def _invalid_outputs(ref: VersionReference, predictions: pd.DataFrame) -> np.ndarray:
        if ref.key == "category":
            prob = pd.to_numeric(predictions["probability"], errors="coerce").to_numpy(float)
            bad = ~np.isfinite(prob) | (prob < 0) | (prob > 1)
            if ref.classes:
                labels = predictions["prediction"].astype("string").to_numpy(dtype=object)
                bad |= ~np.isin(labels, list(ref.classes))
            return bad
        if ref.key == "amount":
            value = pd.to_numeric(predictions["prediction"], errors="coerce").to_numpy(float)
            return ~np.isfinite(value) | (value < 0)
        if ref.key == "anomaly":
            score = pd.to_numeric(predictions["score"], errors="coerce").to_numpy(float)
            return ~np.isfinite(score)
        return np.zeros(len(predictions), dtype=bool)

    def monitor_concept_drift(
        self,
        model_name: str,
        predictions: Sequence[Any] | pd.Series | np.ndarray,
        actuals: Sequence[Any] | pd.Series | np.ndarray,
        *,
        prediction_ts: Sequence[datetime] | pd.Series | None = None,
        now: datetime | None = None,
        version: str | None = None,
        window: tuple[datetime, datetime] | None = None,
        intervals: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> MonitorResult:
        """Realised performance on labelled feedback vs the validation baseline, with an
        interval that respects how few labels there are, plus an online change detector
        (ADWIN or Page-Hinkley) on the error stream.

        ``predictions`` and ``actuals`` are aligned and in time order (category: labels;
        amount: predicted and actual amounts; anomaly: flags). A missing actual (None/NaN) is a
        label not given yet. With ``prediction_ts`` only predictions older than the label delay
        (``Settings.monitor.label_delay_seconds``) count: the others may still get a label.
        ``intervals`` (amount: the predicted ``lower`` and ``upper``) make the change detector
        watch the share of actuals outside the predicted interval.
        """
        ref = self.reference(model_name, version)
        cfg = self.settings.monitor
        pred = pd.Series(np.asarray(predictions, dtype=object))
        actual = pd.Series(np.asarray(actuals, dtype=object))
        if len(pred) != len(actual):
            raise InputError(
                f"{len(pred)} predictions but {len(actual)} actuals; pass one actual per "
                "prediction (None where no label arrived)"
            )
        due = np.ones(len(pred), dtype=bool)
        if prediction_ts is not None:
            ts = pd.Series(pd.to_datetime(pd.Series(prediction_ts), utc=True))
            if len(ts) != len(pred):
                raise InputError(
                    f"{len(ts)} prediction times for {len(pred)} predictions; "
                    "pass one per prediction"
                )
            delay = timedelta(seconds=cfg.label_delay_seconds)
            due = label_ready_mask(ts, now or self._clock(), delay)
        labelled = due & actual.notna().to_numpy() & pred.notna().to_numpy()
        details: dict[str, Any] = {
            "predictions": len(pred),
            "labels_due": int(due.sum()),
            "labelled": int(labelled.sum()),
            "labels_pending": int((~due).sum()),
            "label_coverage": float(labelled.sum() / due.sum()) if due.any() else None,
            "label_delay_seconds": cfg.label_delay_seconds,
        }
        verdicts: list[MetricVerdict] = []
        errors: np.ndarray | None = None
        if ref.key == "category":
            truth = _category_truth(actual[labelled], ref.classes or ["other"])
            guess = pred[labelled].astype("string").to_numpy(dtype=object)
            errors = (guess != truth).astype(np.float64)
            verdicts += self._judge_accuracy(ref, truth, guess, details)
        elif ref.key == "amount":
            guess = pd.to_numeric(pred[labelled], errors="coerce").to_numpy(float)
            truth_amount = np.abs(pd.to_numeric(actual[labelled], errors="coerce").to_numpy(float))
            errors = np.abs(guess - truth_amount)
            errors = errors[np.isfinite(errors)]
            verdicts += self._judge_error(ref, errors, details)
        elif ref.key == "anomaly":
            flags = pred[labelled].astype(bool).to_numpy()
            truth_flags = actual[labelled].astype(bool).to_numpy()
            errors = (flags != truth_flags).astype(np.float64)
            if errors.size:
                interval = realised_accuracy(1.0 - errors, cfg.confidence_level)
                details["agreement"] = interval.to_dict()
                verdicts.append(
                    MetricVerdict(
                        "flag_agreement", interval.value, None, "ok", "no validation baseline"
                    )
                )
        else:
            verdicts.append(
                MetricVerdict(
                    "realised_performance",
                    None,
                    None,
                    "unavailable",
                    "the cash-flow forecast gets no per-prediction feedback",
                )
            )
        if errors is not None:
            stream = errors
            if ref.key == "amount":
                # ADWIN's bound holds for values in [0, 1], so the detector watches a 0/1
                # stream, not currency errors: actuals outside the predicted interval (which
                # follows each row's own scale), else misses beyond BIG_MISS x the validation MAE
                stream, what = self._amount_misses(ref, errors, labelled, actual, intervals)
                details["error_stream"] = what
            verdicts.append(self._change_points(stream, details))
        return self._result("concept_drift", ref, verdicts, details, window)

    @staticmethod
    def _amount_misses(
        ref: VersionReference,
        errors: np.ndarray,
        labelled: np.ndarray,
        actual: pd.Series,
        intervals: tuple[Sequence[float], Sequence[float]] | None,
    ) -> tuple[np.ndarray, str]:
        if intervals is not None:
            lower = pd.to_numeric(pd.Series(np.asarray(intervals[0])), errors="coerce")
            upper = pd.to_numeric(pd.Series(np.asarray(intervals[1])), errors="coerce")
            if len(lower) != len(labelled) or len(upper) != len(labelled):
                raise InputError(
                    f"intervals hold {len(lower)} lower and {len(upper)} upper bounds for "
                    f"{len(labelled)} predictions; pass one of each per prediction"
                )
            truth = np.abs(pd.to_numeric(actual[labelled], errors="coerce").to_numpy(float))
            lo, hi = lower.to_numpy(float)[labelled], upper.to_numpy(float)[labelled]
            keep = np.isfinite(truth) & np.isfinite(lo) & np.isfinite(hi)
            outside = (truth[keep] < lo[keep]) | (truth[keep] > hi[keep])
            return outside.astype(np.float64), "share of actuals outside the predicted interval"
        mae = ref.metrics.get("mae")
        scale = BIG_MISS * mae if mae and mae > 0 else float(np.median(errors) or 1.0)
        return (errors > scale).astype(np.float64), f"share of errors above {scale:.4g}"

    def _judge_accuracy(
        self,
        ref: VersionReference,
        truth: np.ndarray,
        guess: np.ndarray,
        details: dict[str, Any],
    ) -> list[MetricVerdict]:
        from titans.models import metrics as model_metrics

        cfg = self.settings.monitor
        baseline = ref.metrics.get("accuracy")
        floor = baseline * (1 - cfg.performance_tolerance) if baseline is not None else None
        if truth.size == 0:
            return [MetricVerdict("realised_accuracy", None, floor, "insufficient", "no labels")]
        interval = realised_accuracy(truth == guess, cfg.confidence_level)
        details["realised"] = {**interval.to_dict(), "baseline": baseline}
        enough = truth.size >= cfg.min_labels
        # degraded only when the whole interval lies below the floor: few labels, wide interval
        verdict: Verdict = (
            ("breach" if floor is not None and interval.upper < floor else "ok")
            if enough
            else "insufficient"
        )
        f1 = model_metrics.macro_f1(truth, guess)
        details["macro_f1"] = f1
        return [
            MetricVerdict(
                "realised_accuracy",
                interval.value,
                floor,
                verdict,
                f"{interval.n} labels, {interval.lower:.3f}-{interval.upper:.3f}",
            ),
            MetricVerdict(
                "macro_f1",
                _finite(f1),
                ref.metrics.get("macro_f1"),
                "ok" if enough else "insufficient",
                "point value on feedback",
            ),
        ]

    def _judge_error(
        self, ref: VersionReference, errors: np.ndarray, details: dict[str, Any]
    ) -> list[MetricVerdict]:
        cfg = self.settings.monitor
        baseline = ref.metrics.get("mae")
        ceiling = baseline * (1 + cfg.performance_tolerance) if baseline is not None else None
        if errors.size == 0:
            return [MetricVerdict("realised_mae", None, ceiling, "insufficient", "no labels")]
        interval = realised_mean_error(errors, cfg.confidence_level, metric="mae")
        details["realised"] = {**interval.to_dict(), "baseline": baseline}
        enough = errors.size >= cfg.min_labels
        verdict: Verdict = (
            ("breach" if ceiling is not None and interval.lower > ceiling else "ok")
            if enough
            else "insufficient"
        )
        return [
            MetricVerdict(
                "realised_mae",
                interval.value,
                ceiling,
                verdict,
                f"{interval.n} labels, {interval.lower:.2f}-{interval.upper:.2f}",
            )
        ]

    def _change_points(self, errors: np.ndarray, details: dict[str, Any]) -> MetricVerdict:
        cfg = self.settings.monitor
        detector = ErrorStreamDetector(cfg.change_detector)
        points = detector.update(errors) if errors.size else []
        details["change_points"] = list(points)
        details["detector"] = cfg.change_detector
        judged = errors.size >= cfg.min_labels
        return MetricVerdict(
            "error_stream_changes",
            float(len(points)),
            0.0,
            ("breach" if points else "ok") if judged else "insufficient",
            f"{cfg.change_detector} over {errors.size} labelled errors",
        )

    def estimate_performance(
        self,
        model_name: str,
        predictions: pd.DataFrame,
        *,
        version: str | None = None,
        window: tuple[datetime, datetime] | None = None,
    ) -> MonitorResult:
        """Accuracy estimated from calibrated confidences (CBPE), before labels arrive."""
        ref = self.reference(model_name, version)
        cfg = self.settings.monitor
        if ref.calibration is None or "probability" not in predictions.columns:
            verdict = MetricVerdict(
                "estimated_accuracy",
                None,
                None,
                "unavailable",
                "confidence-based estimation needs the category classifier's probabilities",
            )
            return self._result("performance", ref, [verdict], {}, window)
        baseline = ref.metrics.get("accuracy")
        floor = baseline * (1 - cfg.performance_tolerance) if baseline is not None else None
        confidences = pd.to_numeric(predictions["probability"], errors="coerce").to_numpy(float)
        confidences = confidences[np.isfinite(confidences)]
        if confidences.size == 0:
            verdict = MetricVerdict("estimated_accuracy", None, floor, "insufficient", "no rows")
            return self._result("performance", ref, [verdict], {}, window)
        interval = estimate_accuracy(ref.calibration, confidences, cfg.confidence_level)
        judged = confidences.size >= cfg.min_rows
        verdict = MetricVerdict(
            "estimated_accuracy",
            interval.value,
            floor,
            ("breach" if floor is not None and interval.upper < floor else "ok")
            if judged
            else "insufficient",
            f"cbpe over {interval.n} predictions, {interval.lower:.3f}-{interval.upper:.3f}",
        )
        details = {"estimated": {**interval.to_dict(), "baseline": baseline}}
        return self._result("performance", ref, [verdict], details, window)

    def monitor_model_performance(
        self,
        model_name: str,
        window: str | float | timedelta | None = None,
        *,
        end: datetime | None = None,
        pid: int | None = None,
        data: WindowData | None = None,
    ) -> MonitorResult:
        """Latency p50/p95/p99, throughput and invalid-output rate from the prediction log over
        ``window``; CPU and memory of process ``pid`` (default: this one) from psutil.

        The log holds answered requests only: the API's refused and failed requests are on its
        ``/metrics`` (``titans_errors_total``), so the error rate here is the share of answered
        predictions whose output is invalid.
        """
        import psutil

        name, _ = self.resolve(model_name)
        if data is None:
            length = parse_window(window or self.settings.monitor.window)
            finish = end or self._clock()
            data = self.load_window(name, finish - length, finish)
        seconds = max((data.end - data.start).total_seconds(), 1e-9)
        latency = data.latency_ms[np.isfinite(data.latency_ms)]
        verdicts: list[MetricVerdict] = []
        details: dict[str, Any] = {"rows": len(data)}
        if latency.size:
            p50, p95, p99 = (float(v) for v in np.percentile(latency, [50, 95, 99]))
            details["latency_ms"] = {"p50": p50, "p95": p95, "p99": p99}
            for label, value in (("p50", p50), ("p95", p95), ("p99", p99)):
                verdicts.append(MetricVerdict(f"latency_{label}_ms", value, None, "ok"))
        else:
            details["latency_ms"] = None
            verdicts.append(
                MetricVerdict("latency_p95_ms", None, None, "insufficient", "no predictions")
            )
        throughput = len(data) / seconds
        details["throughput_rps"] = throughput
        verdicts.append(MetricVerdict("throughput_rps", throughput, None, "ok"))
        process = psutil.Process(pid or os.getpid())
        with process.oneshot():
            cpu = process.cpu_percent(interval=0.1)
            memory = float(process.memory_info().rss)
        details.update({"cpu_percent": cpu, "memory_mb": memory / 2**20, "pid": process.pid})
        verdicts.append(MetricVerdict("cpu_percent", cpu, None, "ok", f"pid {process.pid}"))
        verdicts.append(MetricVerdict("memory_bytes", memory, None, "ok", f"pid {process.pid}"))
        version = str(data.versions.mode().iloc[0]) if len(data) else None
        result = MonitorResult(
            "performance",
            name,
            version,
            verdicts,
            details,
            window_start=data.start,
            window_end=data.end,
        )
        return result

    # ------------------------------------------------------------------ the prediction log

    def load_window(self, model_name: str, start: datetime, end: datetime) -> WindowData:
        """Predictions of ``model_name`` logged in [start, end), oldest first, with feedback."""
        if start.tzinfo is None or end.tzinfo is None:
            raise InputError(f"window ({start}, {end}) needs timezone-aware (UTC) datetimes")
        if start >= end:
            raise InputError(f"window starts ({start}) at or after its end ({end}); swap them")
        name, key = self.resolve(model_name)
        query = (
            select(
                Prediction.ts,
                Prediction.model_version,
                Prediction.features,
                Prediction.prediction,
                Prediction.latency_ms,
                Feedback.actual,
                Feedback.ts,
            )
            .outerjoin(Feedback, Feedback.prediction_id == Prediction.prediction_id)
            .where(Prediction.model_name == name, Prediction.ts >= start, Prediction.ts < end)
            # shadow scores (logged under "<id>:shadow") were never served: not monitored
            .where(~Prediction.prediction_id.like(f"%{SHADOW_SUFFIX}"))
            .where(Prediction.arm.is_(None) | (Prediction.arm != "shadow"))
            .order_by(Prediction.ts.desc())
            .limit(self.settings.monitor.max_rows)
        )
        with self.store.session() as session:
            rows = session.execute(query).all()[::-1]
        inputs = pd.DataFrame.from_records([r[2] for r in rows]) if rows else pd.DataFrame()
        outputs = pd.DataFrame.from_records([r[3] for r in rows]) if rows else pd.DataFrame()
        for column in OUTPUT_COLUMNS[key]:
            if column not in outputs.columns:
                outputs[column] = pd.Series(dtype=object)
        field_name = ACTUAL_FIELDS.get(key)
        actuals = [(r[5] or {}).get(field_name) if field_name is not None else None for r in rows]
        return WindowData(
            model_name=name,
            start=start,
            end=end,
            ts=pd.Series(pd.to_datetime([r[0] for r in rows], utc=True)),
            versions=pd.Series([r[1] for r in rows], dtype=object),
            inputs=inputs,
            outputs=outputs,
            latency_ms=np.asarray([r[4] for r in rows], dtype=np.float64),
            actuals=pd.Series(actuals, dtype=object),
            feedback_ts=pd.Series(pd.to_datetime([r[6] for r in rows], utc=True)),
        )

    # ------------------------------------------------------------------ one window, end to end

    def run_window(
        self,
        model_name: str,
        window: str | float | timedelta | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        store_results: bool = True,
        pid: int | None = None,
    ) -> WindowReport:
        """Run every monitor over one window of the prediction log; store, export and alert.

        The window is [end - window, end) (end default: now), or [start, end) when both are
        given. Predictions from several versions: the version serving most of them is judged.
        """
        name, key = self.resolve(model_name)
        finish = end or self._clock()
        begin = start or finish - parse_window(window or self.settings.monitor.window)
        try:
            data = self.load_window(name, begin, finish)
            report = self._run(name, key, data, pid=pid)
        except Exception:
            self.runs_total.labels(model=name, outcome="failed").inc()
            raise
        if store_results:
            self.store_results(report.results)
        self.export(report)
        if self.alert_manager is not None:
            report.alerts = self.evaluate_alerts(report)
        self.export_retraining(name)
        self.runs_total.labels(model=name, outcome="ok").inc()
        self._gauges[mn.MONITOR_LAST_RUN.name].labels(model=name).set(time.time())
        return report

    def export_retraining(self, model_name: str) -> dict[str, int]:
        """Count the model's retrains on the audit trail by outcome and export the counts.

        Retrains run in other processes (a CronJob, ``titans retrain run``) that Prometheus
        cannot scrape; the audit trail is where every one of them ends, so the exporter reads
        it. Every outcome is exported, zeros included, so an alert can use ``delta``.
        """
        name, _ = self.resolve(model_name)
        actions = {f"retrain.{outcome}": outcome for outcome in _RETRAIN_OUTCOMES}
        stmt = (
            select(AuditEntryRow.action, func.count())
            .where(AuditEntryRow.model_name == name, AuditEntryRow.action.in_(list(actions)))
            .group_by(AuditEntryRow.action)
        )
        with self.store.session() as session:
            found = {str(action): int(n) for action, n in session.execute(stmt)}
        counts = {outcome: found.get(action, 0) for action, outcome in actions.items()}
        gauge = self._gauges[mn.RETRAIN_RUNS.name]
        for outcome, n in counts.items():
            gauge.labels(model=name, outcome=outcome).set(n)
        return counts

    def _run(self, name: str, key: str, data: WindowData, *, pid: int | None) -> WindowReport:
        window = (data.start, data.end)
        version = str(data.versions.mode().iloc[0]) if len(data) else None
        results: list[MonitorResult] = []
        if key != "cashflow" and len(data):
            results.append(
                self.monitor_data_drift(name, data.inputs, version=version, window=window)
            )
            results.append(
                self.monitor_prediction_quality(name, data.outputs, version=version, window=window)
            )
            results.append(
                self.monitor_data_quality(name, data.inputs, version=version, window=window)
            )
            if key == "category":
                results.append(
                    self.estimate_performance(name, data.outputs, version=version, window=window)
                )
            column = "is_anomaly" if key == "anomaly" else "prediction"
            results.append(
                self.monitor_concept_drift(
                    name,
                    data.outputs[column],
                    data.actuals,
                    prediction_ts=data.ts,
                    version=version,
                    window=window,
                    intervals=(
                        (data.outputs["lower"], data.outputs["upper"])
                        if key == "amount" and {"lower", "upper"} <= set(data.outputs.columns)
                        else None
                    ),
                )
            )
        results.append(self.monitor_model_performance(name, data=data, pid=pid))
        return WindowReport(name, version, data.start, data.end, len(data), results)

    def _result(
        self,
        kind: Kind,
        ref: VersionReference,
        verdicts: list[MetricVerdict],
        details: dict[str, Any],
        window: tuple[datetime, datetime] | None,
        *,
        drift: DatasetDriftResult | None = None,
    ) -> MonitorResult:
        return MonitorResult(
            kind,
            ref.name,
            ref.version,
            verdicts,
            details,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
        )

    def store_results(self, results: Iterable[MonitorResult]) -> int:
        """Write each result (and one row per metric) to the ops store; the rows written."""
        now = self._clock()
        written = 0
        with self.store.session() as session:
            for result in results:
                session.add(
                    MonitoringResult(
                        ts=now,
                        model_name=result.model_name,
                        model_version=result.model_version,
                        kind=result.kind,
                        window_start=result.window_start,
                        window_end=result.window_end,
                        result=json.loads(json.dumps(result.to_dict(), default=str)),
                        drifted=result.breached,
                    )
                )
                for metric in result.metrics:
                    session.add(
                        MonitorMetric(
                            ts=now,
                            window_start=result.window_start,
                            window_end=result.window_end,
                            model_name=result.model_name,
                            model_version=result.model_version,
                            kind=result.kind,
                            metric=metric.metric[:100],
                            value=metric.value,
                            threshold=metric.threshold,
                            verdict=metric.verdict,
                        )
                    )
                    written += 1
        return written

    def history(
        self, model_name: str, *, since: datetime | None = None, metrics: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Stored metric rows of one model, oldest first (for charts and `titans monitor`)."""
        name, _ = self.resolve(model_name)
        query = select(MonitorMetric).where(MonitorMetric.model_name == name)
        if since is not None:
            query = query.where(MonitorMetric.ts >= since)
        wanted = list(metrics)
        if wanted:
            query = query.where(MonitorMetric.metric.in_(wanted))
        with self.store.session() as session:
            rows = session.scalars(query.order_by(MonitorMetric.ts, MonitorMetric.id)).all()
            return [
                {
                    "ts": row.ts.isoformat(),
                    "window_end": row.window_end.isoformat() if row.window_end else None,
                    "kind": row.kind,
                    "metric": row.metric,
                    "value": row.value,
                    "threshold": row.threshold,
                    "verdict": row.verdict,
                    "version": row.model_version,
                }
                for row in rows
            ]

    # ------------------------------------------------------------------ Prometheus and alerts

    def export(self, report: WindowReport) -> None:
        """Set this monitor's gauges from one window's results."""
        g = self._gauges
        name = report.model_name
        g[mn.MONITOR_PREDICTIONS.name].labels(model=name).set(report.predictions)
        for result in report.results:
            for m in result.metrics:
                if m.metric.startswith("drift:"):
                    continue
                labels = {"model": name, "kind": result.kind, "metric": m.metric}
                if m.value is not None:
                    g[mn.MONITOR_VALUE.name].labels(**labels).set(m.value)
                if m.threshold is not None:
                    g[mn.MONITOR_THRESHOLD.name].labels(**labels).set(m.threshold)
                g[mn.MONITOR_BREACH.name].labels(**labels).set(1 if m.verdict == "breach" else 0)
            if result.kind == "data_drift":
                drift = result.details["drift"]
                judged = any(
                    m.metric == "drift_share" and m.verdict != "insufficient"
                    for m in result.metrics
                )
                if not judged:
                    # too few rows to call drift: export nothing an alert rule could fire on
                    self._forget_drift(name)
                    self._export_named(name, result)
                    continue
                g[mn.DRIFT_SHARE.name].labels(model=name).set(drift["share_drifted"])
                for feature, column in drift["columns"].items():
                    score = _finite(column.get("score"))
                    if score is not None:
                        g[mn.FEATURE_DRIFT_SCORE.name].labels(
                            model=name, feature=feature, test=str(column.get("test"))
                        ).set(score)
                    g[mn.FEATURE_DRIFTED.name].labels(model=name, feature=feature).set(
                        1 if column.get("drifted") else 0
                    )
            self._export_named(name, result)

    def _forget_drift(self, name: str) -> None:
        """Drop the model's drift share and per-feature drift samples from the export."""
        g = self._gauges
        with contextlib.suppress(KeyError):
            g[mn.DRIFT_SHARE.name].remove(name)
        for metric in (mn.FEATURE_DRIFT_SCORE, mn.FEATURE_DRIFTED):
            gauge = g[metric.name]
            for labels in [k for k in _label_sets(gauge, metric.labels) if k[0] == name]:
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)

    def _export_named(self, name: str, result: MonitorResult) -> None:
        g = self._gauges
        named = {
            "estimated_accuracy": (mn.ESTIMATED_ACCURACY, True),
            "realised_accuracy": (mn.REALISED_ACCURACY, True),
            "error_stream_changes": (mn.ERROR_STREAM_CHANGES, True),
            "macro_f1": (mn.CATEGORY_MACRO_F1, False),
            "realised_mae": (mn.AMOUNT_MAE, False),
            "anomaly_rate": (mn.ANOMALY_FLAG_RATE, False),
        }
        for m in result.metrics:
            if m.metric in named and m.value is not None and m.verdict != "insufficient":
                metric, by_model = named[m.metric]
                gauge = g[metric.name]
                (gauge.labels(model=name) if by_model else gauge).set(m.value)
            dataset = {
                "quality_score": mn.DATA_QUALITY_SCORE,
                "missing_share": mn.MISSING_SHARE,
                "bad_row_share": mn.BAD_ROW_SHARE,
            }
            if m.metric in dataset and m.value is not None and m.verdict != "insufficient":
                g[dataset[m.metric].name].labels(dataset=name).set(m.value)
            if m.metric in ("cpu_percent", "memory_bytes") and m.value is not None:
                target = (
                    mn.PROCESS_CPU_PERCENT
                    if m.metric == "cpu_percent"
                    else (mn.PROCESS_MEMORY_BYTES)
                )
                g[target.name].labels(process=m.detail or "monitor").set(m.value)

    def export_metrics(self) -> bytes:
        """This monitor's registry in the Prometheus text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def alert_observations(self, report: WindowReport) -> list[tuple[str, float]]:
        """(rule metric, value) pairs of one window that the alert rules watch (judged only)."""
        observed: list[tuple[str, float]] = []
        mapping = {
            "drift_share": "drift_share",
            "estimated_accuracy": "estimated_accuracy",
            "error_stream_changes": "error_stream_changes",
            "latency_p95_ms": "latency_p95_ms",
            "missing_share": "missing_share",
            "bad_row_share": "bad_row_share",
        }
        if report.model_name == self.settings.registered_name("category"):
            mapping["macro_f1"] = "category_macro_f1"
        if report.model_name == self.settings.registered_name("amount"):
            mapping["realised_mae"] = "amount_mae"
        for result in report.results:
            for m in result.metrics:
                if m.metric in mapping and m.value is not None and m.verdict in ("ok", "breach"):
                    observed.append((mapping[m.metric], float(m.value)))
        return observed

    def evaluate_alerts(self, report: WindowReport) -> list[dict[str, Any]]:
        """Feed the window's judged metrics to the alert rules; the events that notified."""
        if self.alert_manager is None:
            return []
        watched = {r.metric for r in self.alert_manager.rules}
        labels = {"model": report.model_name}
        drifted = report.drifted_features
        events: list[dict[str, Any]] = []
        for metric, value in self.alert_observations(report):
            if metric not in watched:
                continue
            notes = {"drifted_features": drifted} if metric == "drift_share" and drifted else {}
            for event in self.alert_manager.evaluate(metric, value, labels, annotations=notes):
                events.append(
                    {
                        "rule": event.name,
                        "metric": metric,
                        "value": value,
                        "threshold": event.threshold,
                        "state": event.state,
                        "notified": event.notified,
                        "alert_id": event.alert_id,
                        "delivered_to": [d.channel for d in event.deliveries if d.ok],
                        "failed": [d.channel for d in event.failed_deliveries],
                    }
                )
        return events

    # ------------------------------------------------------------------ the HTML report

    def build_report(
        self,
        model_name: str,
        window: str | float | timedelta | None = None,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        report: WindowReport | None = None,
    ) -> dict[str, Any]:
        """The data of the monitoring report page (``titans.monitoring.report``) for a window.

        Runs the monitors over the window unless ``report`` (a finished run) is given; nothing
        is stored or alerted by building a report.
        """
        from titans.monitoring.alerts import AlertManager
        from titans.monitoring.report import feature_distributions

        name, _ = self.resolve(model_name)
        label = str(window or self.settings.monitor.window)
        if report is None:
            finish = end or self._clock()
            begin = start or finish - parse_window(window or self.settings.monitor.window)
            data = self.load_window(name, begin, finish)
            report = self._run(name, self.resolve(name)[1], data, pid=None)
        else:
            data = self.load_window(name, report.start, report.end)
        notes: list[str] = []
        drift = report.result("data_drift")
        drift_section: dict[str, Any] | None = None
        if drift is not None:
            ref = self.reference(name, drift.model_version)
            drift_section = dict(drift.details["drift"])
            columns = list(drift_section["columns"])
            drift_section["distributions"] = feature_distributions(
                ref.profile, monitored_view(data.inputs), columns
            )
            if drift.details.get("not_in_inputs"):
                notes.append(
                    "not in the model's inputs, so not compared: "
                    + ", ".join(drift.details["not_in_inputs"])
                )
            if drift.details.get("calendar_not_compared"):
                notes.append(
                    f"the window's transactions span {drift.details['date_span_days']} days, "
                    f"under {self.settings.monitor.calendar_min_days}: calendar features "
                    f"({', '.join(drift.details['calendar_not_compared'])}) cover part of "
                    "their cycle by construction and were not compared"
                )
        else:
            notes.append("no drift result: the window holds no predictions of this model")
        quality = report.result("data_quality")
        quality_section = quality.details["quality"] if quality is not None else None
        prediction = report.result("prediction_quality")
        prediction_drift = prediction.details.get("prediction_drift") if prediction else None
        performance = self._performance_section(report)
        system = report.result("performance")
        system_section = None
        if system is not None and system.details.get("latency_ms") is not None:
            system_section = {
                "latency_ms": system.details["latency_ms"],
                "throughput_rps": system.details.get("throughput_rps"),
                "error_rate": next(
                    (
                        m.value
                        for r in report.results
                        for m in r.metrics
                        if m.metric == "invalid_output_share"
                    ),
                    None,
                ),
                "cpu_percent": system.details.get("cpu_percent"),
                "memory_mb": system.details.get("memory_mb"),
            }
        since = report.start - 20 * (report.end - report.start)
        history = [
            {
                "ts": row["window_end"] or row["ts"],
                **{k: row[k] for k in ("metric", "value")},
                "threshold": row["threshold"],
            }
            for row in self.history(
                name,
                since=since,
                metrics=(
                    "drift_share",
                    "estimated_accuracy",
                    "realised_accuracy",
                    "latency_p95_ms",
                ),
            )
            if row["value"] is not None
        ]
        alerts = [
            {
                "name": record.name,
                "severity": record.severity,
                "status": record.status,
                "first_seen": record.first_seen.isoformat(),
                "summary": str(
                    record.details.get("description") or record.details.get("message") or ""
                ),
            }
            for record in AlertManager(self.settings, self.store, channels={}).history(
                status=None, limit=50
            )
            if record.details.get("labels", {}).get("model") in (None, name)
        ]
        return {
            "title": "Titans monitoring report",
            "generated_at": self._clock().isoformat(),
            "model": name,
            "version": report.model_version,
            "window": {
                "start": report.start.isoformat(),
                "end": report.end.isoformat(),
                "label": label,
            },
            "predictions": report.predictions,
            "drift": drift_section,
            "prediction_drift": prediction_drift,
            "quality": quality_section,
            "performance": performance,
            "system": system_section,
            "history": history,
            "alerts": alerts,
            "notes": notes,
        }

    @staticmethod
    def _performance_section(report: WindowReport) -> dict[str, Any] | None:
        concept = report.result("concept_drift")
        estimated = report.result("performance")
        if concept is None and estimated is None:
            return None
        section: dict[str, Any] = {
            "realised": None,
            "estimated": None,
            "change_points": None,
            "detector": None,
            "labels_pending": 0,
        }
        for result in report.results:
            if result.kind == "performance" and "estimated" in result.details:
                metric = result.metric("estimated_accuracy")
                section["estimated"] = {
                    **result.details["estimated"],
                    "degraded": bool(metric and metric.verdict == "breach"),
                }
        if concept is not None:
            realised = concept.details.get("realised")
            if realised is not None:
                judged = next(
                    (m for m in concept.metrics if m.metric.startswith("realised_")), None
                )
                section["realised"] = {
                    **realised,
                    "degraded": bool(judged and judged.verdict == "breach"),
                }
            section["change_points"] = len(concept.details.get("change_points", []))
            section["detector"] = concept.details.get("detector")
            section["labels_pending"] = concept.details.get("labels_pending", 0)
        return section


def _label_sets(gauge: Gauge, names: Sequence[str]) -> list[tuple[str, ...]]:
    """The label values (in the order of ``names``) of every sample the gauge holds now."""
    return [
        tuple(sample.labels[name] for name in names)
        for family in gauge.collect()
        for sample in family.samples
    ]
