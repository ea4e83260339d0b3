"""Every metric name the platform uses, in one place: API, monitors, alert rules, dashboards.

A :class:`MetricName` is the Prometheus family name (``titans_...``, without the ``_total`` a
counter gets on export), its kind, help text and label names. Alert rules name a metric by its
``rule_name``: the family name without ``titans_`` and ``_total`` (``registry_up``,
``prediction_log_dropped``).

>>> PREDICTIONS.exported_name, PREDICTIONS.rule_name
('titans_predictions_total', 'predictions')
>>> by_rule_name("drift_share").name
'titans_drift_share'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from titans.errors import InputError

MetricKind = Literal["counter", "gauge", "histogram"]

#: prefix of every metric family the platform registers
PREFIX = "titans_"
#: prefix of the families ``MetricsCollector.collect_business_metrics`` creates per business name
BUSINESS_PREFIX = "titans_business_"


@dataclass(frozen=True)
class MetricName:
    """One metric family: its Prometheus name, kind, help text and label names."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()

    @property
    def exported_name(self) -> str:
        """The name in the exposition text (counters end in ``_total``)."""
        return f"{self.name}_total" if self.kind == "counter" else self.name

    @property
    def rule_name(self) -> str:
        """The name alert rules use: without ``titans_`` and the counter's ``_total``."""
        return self.name.removeprefix(PREFIX)


# ---- serving: titans.serving.metrics.ServingMetrics
PREDICTION_LOG_QUEUE_DEPTH = MetricName(
    "titans_prediction_log_queue_depth",
    "gauge",
    "Predictions waiting in memory to be written to the ops store.",
)
PREDICTION_LOG_DROPPED = MetricName(
    "titans_prediction_log_dropped",
    "counter",
    "Predictions that were never written to the ops store, by reason.",
    ("reason",),
)
PREDICTION_LOG_WRITTEN = MetricName(
    "titans_prediction_log_written", "counter", "Predictions written to the ops store."
)
PREDICTION_LOG_WRITE_FAILURES = MetricName(
    "titans_prediction_log_write_failures",
    "counter",
    "Batch writes of the prediction log that failed and will be retried.",
)
RATE_LIMITED = MetricName(
    "titans_rate_limited",
    "counter",
    "Requests refused with 429 because their API key ran out of tokens.",
)
RATE_LIMITER_FAIL_OPEN = MetricName(
    "titans_rate_limiter_fail_open",
    "counter",
    "Requests let through unchecked because the shared rate-limit store was unreachable.",
)

# ---- serving: titans.serving.routes.metrics.ApiMetrics
REQUEST_DURATION = MetricName(
    "titans_request_duration_seconds",
    "histogram",
    "Time to answer one HTTP request, by route template, model, version and status.",
    ("route", "model", "version", "status"),
)
PREDICTIONS = MetricName(
    "titans_predictions",
    "counter",
    "Predictions served, by model, version, A/B arm and predicted class (category only).",
    ("model", "version", "arm", "predicted_class"),
)
ERRORS = MetricName(
    "titans_errors", "counter", "Requests answered with an error status, by error type.", ("type",)
)
MODEL_INFO = MetricName(
    "titans_model_info",
    "gauge",
    "1 for each model version serving now (name, version, alias).",
    ("model", "name", "version", "alias"),
)

# ---- serving: titans.serving.model_store.ModelStore
REGISTRY_UP = MetricName(
    "titans_registry_up", "gauge", "1 when the last poll of the model registry succeeded, else 0."
)
MODEL_LOAD_FAILURES = MetricName(
    "titans_model_load_failures",
    "counter",
    "New production versions that failed to load or warm up (the old one kept serving).",
    ("model",),
)
REGISTRY_POLL_FAILURES = MetricName(
    "titans_registry_poll_failures",
    "counter",
    "Polls of the model registry that failed (the loaded models kept serving).",
)

# ---- alerting: titans.monitoring.alerts.AlertManager
ALERTS_SENT = MetricName(
    "titans_alerts_sent",
    "counter",
    "Alert notifications delivered, by channel and severity.",
    ("channel", "severity"),
)
ALERT_DELIVERY_FAILURES = MetricName(
    "titans_alert_delivery_failures",
    "counter",
    "Alert notifications a channel failed to deliver after every retry.",
    ("channel",),
)
ALERTS_SUPPRESSED = MetricName(
    "titans_alerts_suppressed",
    "counter",
    "Alert notifications held back (cooldown, silenced, acknowledged).",
    ("reason",),
)

# ---- monitors (values the alert rules watch)
CATEGORY_MACRO_F1 = MetricName(
    "titans_category_macro_f1", "gauge", "Macro-F1 of the category model on labelled feedback."
)
AMOUNT_MAE = MetricName(
    "titans_amount_mae", "gauge", "Mean absolute error of the amount model on feedback."
)
ANOMALY_PR_AUC = MetricName(
    "titans_anomaly_pr_auc", "gauge", "PR-AUC of the anomaly model on labelled anomalies."
)
DRIFT_SHARE = MetricName(
    "titans_drift_share",
    "gauge",
    "Share of a model's input features that drifted from its reference profile.",
    ("model",),
)
MISSING_SHARE = MetricName(
    "titans_missing_share", "gauge", "Share of incoming values that are missing.", ("dataset",)
)
BAD_ROW_SHARE = MetricName(
    "titans_bad_row_share",
    "gauge",
    "Share of incoming rows that break the schema and are rejected.",
    ("dataset",),
)
LATENCY_P95_MS = MetricName(
    "titans_latency_p95_ms", "gauge", "95th percentile of prediction latency, in milliseconds."
)
ERROR_RATE = MetricName("titans_error_rate", "gauge", "Share of prediction requests that fail.")
ANOMALY_FLAG_RATE = MetricName(
    "titans_anomaly_flag_rate", "gauge", "Share of transactions flagged as anomalous."
)
PREDICTIONS_PER_HOUR = MetricName(
    "titans_predictions_per_hour", "gauge", "Predictions requested in the last hour."
)

# ---- titans.monitoring.model_monitor.ModelMonitor (every result, by model, kind and metric)
MONITOR_VALUE = MetricName(
    "titans_monitor_value",
    "gauge",
    "Latest value of each metric the model monitor computes, by model, kind and metric.",
    ("model", "kind", "metric"),
)
MONITOR_THRESHOLD = MetricName(
    "titans_monitor_threshold",
    "gauge",
    "Threshold the model monitor judged each metric against, by model, kind and metric.",
    ("model", "kind", "metric"),
)
MONITOR_BREACH = MetricName(
    "titans_monitor_breach",
    "gauge",
    "1 when the metric's latest verdict is a breach, else 0, by model, kind and metric.",
    ("model", "kind", "metric"),
)
FEATURE_DRIFT_SCORE = MetricName(
    "titans_feature_drift_score",
    "gauge",
    "Drift score of one input feature against the model's reference profile, by test.",
    ("model", "feature", "test"),
)
FEATURE_DRIFTED = MetricName(
    "titans_feature_drifted",
    "gauge",
    "1 when the feature drifted from the reference profile in the latest window, else 0.",
    ("model", "feature"),
)
ESTIMATED_ACCURACY = MetricName(
    "titans_estimated_accuracy",
    "gauge",
    "Accuracy estimated from calibrated confidences, before labels arrive (CBPE), by model.",
    ("model",),
)
REALISED_ACCURACY = MetricName(
    "titans_realised_accuracy",
    "gauge",
    "Accuracy on labelled feedback whose labels were due in the latest window, by model.",
    ("model",),
)
ERROR_STREAM_CHANGES = MetricName(
    "titans_error_stream_changes",
    "gauge",
    "Changes the online detector found in a model's error stream in the latest window.",
    ("model",),
)
MONITOR_PREDICTIONS = MetricName(
    "titans_monitor_window_predictions",
    "gauge",
    "Predictions in the latest monitoring window, by model.",
    ("model",),
)
MONITOR_RUNS = MetricName(
    "titans_monitor_runs",
    "counter",
    "Monitoring passes, by model and outcome (ok, failed).",
    ("model", "outcome"),
)
MONITOR_LAST_RUN = MetricName(
    "titans_monitor_last_run_timestamp_seconds",
    "gauge",
    "Unix time the latest monitoring pass of a model finished.",
    ("model",),
)
RETRAIN_RUNS = MetricName(
    "titans_retrain_runs",
    "gauge",
    "Retrains of a model recorded on the audit trail, by outcome (completed, failed, refused); "
    "read from the ops store on every monitor pass, so it survives restarts of the exporter.",
    ("model", "outcome"),
)
PROCESS_CPU_PERCENT = MetricName(
    "titans_process_cpu_percent",
    "gauge",
    "CPU use of a watched process (psutil), percent of one core, by process.",
    ("process",),
)
PROCESS_MEMORY_BYTES = MetricName(
    "titans_process_memory_bytes",
    "gauge",
    "Resident memory of a watched process (psutil), by process.",
    ("process",),
)

# ---- titans.monitoring.metrics_collector.MetricsCollector
PREDICTION_TIME = MetricName(
    "titans_prediction_time_seconds",
    "histogram",
    "Time one prediction took, as reported to the metrics collector, by model.",
    ("model",),
)
MODEL_ACCURACY = MetricName(
    "titans_model_accuracy",
    "gauge",
    "Latest accuracy (0-1) reported for a model.",
    ("model",),
)
DATA_QUALITY_SCORE = MetricName(
    "titans_data_quality_score",
    "gauge",
    "Latest data quality score (0-1) of a data set.",
    ("dataset",),
)
LABELS_REFUSED = MetricName(
    "titans_metric_labels_refused",
    "counter",
    "Observations refused because their metric already had its cap of label sets, by metric.",
    ("metric",),
)

#: every metric family, by Prometheus name
METRICS: dict[str, MetricName] = {
    m.name: m for m in list(globals().values()) if isinstance(m, MetricName)
}


def get(name: str) -> MetricName:
    """The metric named ``name`` (family name, or exported name ending in ``_total``)."""
    found = METRICS.get(name) or METRICS.get(name.removesuffix("_total"))
    if found is None:
        raise InputError(f"unknown metric {name!r}; add it to titans.monitoring.metric_names")
    return found


def by_rule_name(rule_name: str) -> MetricName:
    """The metric an alert rule names (``drift_share`` -> ``titans_drift_share``)."""
    return get(PREFIX + rule_name)
