"""Model, data-quality and business metrics in a registry of their own, exported as Prometheus text.

Every label set is capped per metric family: past ``max_label_sets`` a new label set is
refused (existing ones keep updating) and counted in ``titans_metric_labels_refused_total``,
so a caller passing user ids as tags cannot blow up Prometheus.

>>> collector = MetricsCollector()
>>> collector.collect_data_quality_metrics("transactions", 0.97)
True
>>> collector.registry.get_sample_value("titans_data_quality_score", {"dataset": "transactions"})
0.97
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from titans.errors import InputError
from titans.monitoring import metric_names as names

#: label sets one metric family may hold before new ones are refused
DEFAULT_MAX_LABEL_SETS = 100
#: distinct business metric names one collector accepts
DEFAULT_MAX_BUSINESS_METRICS = 50

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# suffixes the exposition format gives meaning to; a gauge named so would read as something else
_RESERVED_SUFFIXES = ("_total", "_count", "_sum", "_bucket", "_created", "_info")
_PREDICTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _check_label_value(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InputError(f"{what} {value!r} must be non-empty text of at most 200 characters")
    return value


def _check_fraction(what: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InputError(f"{what} {value!r} must be a number between 0 and 1")
    return number


class MetricsCollector:
    """Collect prediction, data-quality and business metrics; export them for Prometheus."""

    def __init__(
        self,
        *,
        max_label_sets: int = DEFAULT_MAX_LABEL_SETS,
        max_business_metrics: int = DEFAULT_MAX_BUSINESS_METRICS,
    ) -> None:
        if max_label_sets < 1 or max_business_metrics < 1:
            raise InputError("max_label_sets and max_business_metrics must be at least 1")
        self.max_label_sets = max_label_sets
        self.max_business_metrics = max_business_metrics
        #: this collector's own registry (never the process-global one)
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._label_sets: dict[str, set[tuple[str, ...]]] = {}
        self.prediction_time = Histogram(
            names.PREDICTION_TIME.name,
            names.PREDICTION_TIME.help,
            names.PREDICTION_TIME.labels,
            buckets=_PREDICTION_BUCKETS,
            registry=self.registry,
        )
        self.model_accuracy = Gauge(
            names.MODEL_ACCURACY.name,
            names.MODEL_ACCURACY.help,
            names.MODEL_ACCURACY.labels,
            registry=self.registry,
        )
        self.data_quality_score = Gauge(
            names.DATA_QUALITY_SCORE.name,
            names.DATA_QUALITY_SCORE.help,
            names.DATA_QUALITY_SCORE.labels,
            registry=self.registry,
        )
        self.labels_refused = Counter(
            names.LABELS_REFUSED.name,
            names.LABELS_REFUSED.help,
            names.LABELS_REFUSED.labels,
            registry=self.registry,
        )
        # business metric name -> (gauge, its label names)
        self._business: dict[str, tuple[Gauge, tuple[str, ...]]] = {}

    def _admit(self, family: str, values: tuple[str, ...]) -> bool:
        """True when ``values`` is a known label set of ``family`` or there is room for it."""
        with self._lock:
            seen = self._label_sets.setdefault(family, set())
            if values in seen:
                return True
            if len(seen) >= self.max_label_sets:
                self.labels_refused.labels(metric=family).inc()
                return False
            seen.add(values)
            return True

    def collect_prediction_metrics(
        self, model_name: str, prediction_time: float, accuracy: float | None = None
    ) -> bool:
        """Record one prediction's time in seconds and, when given, the model's accuracy (0-1).

        Returns False when the model's label set was refused by the cardinality cap.
        """
        model = _check_label_value("model name", model_name)
        seconds = float(prediction_time)
        if not math.isfinite(seconds) or seconds < 0:
            raise InputError(
                f"prediction time {prediction_time!r} must be a non-negative number of seconds"
            )
        score = None if accuracy is None else _check_fraction("accuracy", accuracy)
        if not self._admit(names.PREDICTION_TIME.name, (model,)):
            return False
        self.prediction_time.labels(model=model).observe(seconds)
        if score is not None:
            self.model_accuracy.labels(model=model).set(score)
        return True

    def collect_data_quality_metrics(self, dataset_name: str, quality_score: float) -> bool:
        """Set the latest quality score (0-1) of a data set; False when refused by the cap."""
        dataset = _check_label_value("dataset name", dataset_name)
        score = _check_fraction("quality score", quality_score)
        if not self._admit(names.DATA_QUALITY_SCORE.name, (dataset,)):
            return False
        self.data_quality_score.labels(dataset=dataset).set(score)
        return True

    def collect_business_metrics(
        self, metric_name: str, value: float, tags: Mapping[str, str] | None = None
    ) -> bool:
        """Set business metric ``titans_business_<metric_name>`` to ``value`` for ``tags``.

        The first call for a name fixes its label names (the tag keys); a later call with other
        keys is an InputError. Returns False when the label set was refused by the cap.
        """
        if not isinstance(metric_name, str) or not _NAME.match(metric_name):
            raise InputError(
                f"business metric name {metric_name!r} is invalid; use letters, digits and "
                "underscores, not starting with a digit"
            )
        if metric_name.endswith(_RESERVED_SUFFIXES):
            raise InputError(
                f"business metric name {metric_name!r} ends in a suffix Prometheus reserves "
                f"({', '.join(_RESERVED_SUFFIXES)}); rename it"
            )
        number = float(value)
        if not math.isfinite(number):
            raise InputError(f"business metric {metric_name!r}: value {value!r} must be finite")
        tags = dict(tags or {})
        for key, tag_value in tags.items():
            if not isinstance(key, str) or not _NAME.match(key) or key.startswith("__"):
                raise InputError(
                    f"business metric {metric_name!r}: tag name {key!r} is not a valid label "
                    "name; use letters, digits and underscores, not starting with a digit or __"
                )
            _check_label_value(f"business metric {metric_name!r}: tag {key!r} value", tag_value)
        label_names = tuple(sorted(tags))
        family = names.BUSINESS_PREFIX + metric_name
        with self._lock:
            entry = self._business.get(metric_name)
            if entry is None:
                if len(self._business) >= self.max_business_metrics:
                    raise InputError(
                        f"business metric {metric_name!r} refused: this collector already holds "
                        f"{self.max_business_metrics} business metrics; reuse a name with tags"
                    )
                gauge = Gauge(
                    family,
                    f"Business metric {metric_name}, as reported to the metrics collector.",
                    label_names,
                    registry=self.registry,
                )
                entry = (gauge, label_names)
                self._business[metric_name] = entry
        gauge, known_names = entry
        if known_names != label_names:
            raise InputError(
                f"business metric {metric_name!r} has tags {list(known_names)}, not "
                f"{list(label_names)}; send the same tag names every time"
            )
        values = tuple(tags[k] for k in label_names)
        if not self._admit(family, values):
            return False
        (gauge.labels(*values) if values else gauge).set(number)
        return True

    def export_metrics(self) -> str:
        """Every metric of this collector in the Prometheus text exposition format."""
        return generate_latest(self.registry).decode("utf-8")
