"""Settings: the only place defaults live (env prefix TITANS_)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, computed_field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MODEL_KEYS: tuple[str, ...] = ("category", "amount", "anomaly", "cashflow")


class ApiKey(BaseModel):
    """One API key, held only as its SHA-256 hex digest, with the roles it grants."""

    name: str
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    #: predict; admin; approver / requester (governance); alerts (Alertmanager's webhook token)
    roles: list[Literal["predict", "admin", "approver", "requester", "alerts"]] = ["predict"]


class GovernanceIdentity(BaseModel):
    """A person or service acting in governance (e.g. approving from the CLI) without an API key."""

    name: str = Field(min_length=1)
    roles: list[Literal["requester", "approver", "admin"]] = ["requester"]


class EdgeCaseSwitches(BaseModel):
    """Which families of edge cases the stability check feeds a model (all on by default)."""

    #: zero, tiny, huge and wrongly signed amounts
    amounts: bool = True
    #: empty, unicode and 5,000-character descriptions
    descriptions: bool = True
    #: categories, references and payment methods never seen in training
    unseen_values: bool = True
    #: every optional field missing (category, payment method, status, reference, receipt URL)
    missing_fields: bool = True
    #: dates far in the past and far in the future
    extreme_dates: bool = True
    #: a frame with no rows at all
    empty_input: bool = True


class ValidationThresholds(BaseModel):
    """The gates one model must pass in titans.validation (direction-aware, see each field)."""

    #: worst acceptable primary metric on the holdout: a minimum for metrics to maximise
    #: (macro-F1, PR-AUC), a maximum for metrics to minimise (MAE); None = no absolute bound
    primary_floor: float | None = None
    #: how much better than the trivial baseline, as a fraction of the baseline's score
    #: (0.10 = 10 % better); the model must always beat the baseline strictly
    min_margin_over_baseline: float = Field(default=0.0, ge=0)
    #: how much worse than the champion on the same holdout is tolerated, as a fraction of
    #: the champion's score
    champion_tolerance: float = Field(default=0.02, ge=0)
    #: metric compared across segments; None = the model's default (see titans.validation)
    fairness_metric: str | None = None
    #: largest allowed gap of the fairness metric between two segments of one feature
    max_fairness_gap: float = Field(default=0.15, ge=0)
    #: segments with fewer rows (for recall: fewer positives) are skipped and reported
    min_segment_rows: int = Field(default=50, ge=1)
    #: share of rows whose predicted class may change under +-1 % amount noise
    max_flip_rate: float = Field(default=0.02, ge=0, le=1)
    #: bound on the 95th percentile of relative prediction change under +-1 % amount noise
    max_relative_change: float = Field(default=0.05, ge=0)
    edge_cases: EdgeCaseSwitches = EdgeCaseSwitches()


class CategoryValidation(ValidationThresholds):
    primary_floor: float | None = 0.7
    min_margin_over_baseline: float = Field(default=0.05, ge=0)


class AmountValidation(ValidationThresholds):
    min_margin_over_baseline: float = Field(default=0.10, ge=0)


class AnomalyValidation(ValidationThresholds):
    primary_floor: float | None = 0.2
    #: recall per segment counts labelled anomalies (~1 % of rows), so the minimum is lower
    min_segment_rows: int = Field(default=20, ge=1)
    min_margin_over_baseline: float = Field(default=0.5, ge=0)
    max_fairness_gap: float = Field(default=0.5, ge=0)


class CashflowValidation(ValidationThresholds):
    champion_tolerance: float = Field(default=0.05, ge=0)


class ValidationSettings(BaseModel):
    """Validation thresholds per model; env e.g. TITANS_VALIDATION__CATEGORY__PRIMARY_FLOOR=0.8."""

    category: CategoryValidation = CategoryValidation()
    amount: AmountValidation = AmountValidation()
    anomaly: AnomalyValidation = AnomalyValidation()
    cashflow: CashflowValidation = CashflowValidation()
    #: how many quantile bands of |amount| the fairness check segments by
    amount_bands: int = Field(default=4, ge=2, le=20)

    def for_model(self, model_key: str) -> ValidationThresholds:
        """The thresholds of one of the four models."""
        thresholds: ValidationThresholds = getattr(self, model_key)
        return thresholds


class AlertSettings(BaseModel):
    """Alert rules, routing, retries and escalation (titans.monitoring.alerts).

    Slack, PagerDuty and SMTP are the top-level settings (TITANS_SLACK_WEBHOOK_URL, ...);
    this block holds the rest, e.g. TITANS_ALERTS__WEBHOOK_URL or
    TITANS_ALERTS__ESCALATION_AFTER_SECONDS.
    A channel whose URL or host is not set is skipped by every route.
    """

    #: alert rules YAML; None = the rules shipped with the package (default_rules.yaml)
    rules_path: Path | None = None
    #: generic JSON webhook receiving every routed alert (may embed a token, hence secret)
    webhook_url: SecretStr | None = None
    #: base URL of a Prometheus Alertmanager (alerts are POSTed to <url>/api/v2/alerts)
    alertmanager_url: str | None = None
    #: link back to where an alert came from (Alertmanager's generatorURL), e.g. a dashboard
    generator_url: str | None = None
    #: channel names each severity is delivered to (slack, email, pagerduty, webhook,
    #: alertmanager)
    routes: dict[Literal["info", "warning", "critical"], list[str]] = {
        "info": ["webhook"],
        "warning": ["slack", "webhook", "alertmanager"],
        "critical": ["slack", "email", "pagerduty", "webhook", "alertmanager"],
    }
    #: where unacknowledged critical alerts go once past their deadline
    escalation_channels: list[str] = ["pagerduty", "email"]
    #: how long a critical alert may stay firing and unacknowledged before it is escalated
    escalation_after_seconds: float = Field(default=900.0, gt=0)
    #: delivery attempts per channel and alert (1 = no retry)
    delivery_attempts: int = Field(default=3, ge=1, le=10)
    #: wait before the first retry; doubled for each later one
    retry_backoff_seconds: float = Field(default=0.5, ge=0)
    #: connect/read timeout of one HTTP or SMTP delivery
    delivery_timeout_seconds: float = Field(default=5.0, gt=0)


class DriftSettings(BaseModel):
    """Drift thresholds and the automatic test choice; env e.g. TITANS_DRIFT__DRIFT_SHARE=0.3.

    p-values flag almost any change at large n, so above ``large_sample_rows`` (the smaller of
    the two samples' non-missing rows) columns are judged by distances with effect-size
    thresholds instead of hypothesis tests.
    """

    #: a column is judged by the "large sample" tests when both samples have more rows than this
    large_sample_rows: int = Field(default=1_000, ge=1)
    small_sample_numeric_test: str = "ks"
    small_sample_categorical_test: str = "chisquare"
    large_sample_numeric_test: str = "wasserstein"
    large_sample_categorical_test: str = "jensenshannon"
    #: hypothesis tests (ks, chisquare): drift when p < this
    p_value_threshold: float = Field(default=0.05, gt=0, lt=1)
    #: Wasserstein distance in units of the reference standard deviation: drift when >= this
    wasserstein_threshold: float = Field(default=0.1, gt=0)
    #: Jensen–Shannon distance (natural log, 0 … 0.833): drift when >= this
    jensenshannon_threshold: float = Field(default=0.1, gt=0)
    #: population stability index: drift when >= this
    psi_threshold: float = Field(default=0.1, gt=0)
    #: equal-frequency bins of the reference for numeric PSI and Jensen–Shannon
    histogram_bins: int = Field(default=10, ge=2, le=1_000)
    #: dataset drift when the share of drifted columns is >= this
    drift_share: float = Field(default=0.5, gt=0, le=1)
    #: columns compared at once (threads; numpy and pyarrow release the GIL); 0 = one per core
    workers: int = Field(default=0, ge=0, le=64)


class MonitorSettings(BaseModel):
    """What the ModelMonitor watches and when it calls a change; env e.g.
    TITANS_MONITOR__LABEL_DELAY_SECONDS=86400.
    """

    #: the window `titans monitor run` / `serve` computes when none is given (1h, 30m, 1d, s)
    window: str = "1h"
    #: `titans monitor serve`: seconds between two monitoring passes
    interval_seconds: float = Field(default=60.0, gt=0)
    #: a prediction's label counts only once it is this old (labels arrive late)
    label_delay_seconds: float = Field(default=0.0, ge=0)
    #: fewer labelled predictions than this: realised performance is reported, never judged
    min_labels: int = Field(default=30, ge=1)
    #: calendar features (day_of_month, day_of_week) are compared only when the window's
    #: transaction dates span at least this many days: a shorter window covers part of the
    #: month (or week) by construction, which is not drift
    calendar_min_days: int = Field(default=56, ge=1)
    #: data quality: the DataQualityMonitor's 0-1 score of a window's inputs below this
    min_quality_score: float = Field(default=0.9, ge=0, le=1)
    #: fewer predictions than this in a window: drift is reported, never judged
    min_rows: int = Field(default=50, ge=1)
    #: confidence level of every interval the monitor reports
    confidence_level: float = Field(default=0.95, gt=0.5, lt=1)
    #: performance degraded when the interval lies wholly this far (relative) past the baseline
    performance_tolerance: float = Field(default=0.05, ge=0, lt=1)
    #: prediction quality: mean top-class confidence below (1 - this) x the reference's
    confidence_drop: float = Field(default=0.10, gt=0, lt=1)
    #: prediction quality: anomaly flag rate above this multiple of the expected alert rate
    anomaly_rate_factor: float = Field(default=3.0, gt=1)
    #: prediction quality: share of invalid outputs (NaN, out of range, unknown class) tolerated
    invalid_output_share: float = Field(default=0.0, ge=0, lt=1)
    #: online change detector over the error stream: adwin or page_hinkley
    change_detector: Literal["adwin", "page_hinkley"] = "adwin"
    #: most prediction-log rows one pass reads per model (the newest are kept)
    max_rows: int = Field(default=200_000, ge=100)


class RetrainingSettings(BaseModel):
    """Automated retraining: triggers, training data versions, the challenger's path; env e.g.
    TITANS_RETRAINING__MIN_NEW_LABELS=500.
    """

    #: data versions kept under <home>/data/versions beyond those a registered model used
    data_retention: int = Field(default=10, ge=1)
    #: the newest share of the (time-ordered) training data held out for validation
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    #: training data is refused when fewer of its rows than this share carry the model's label
    min_label_coverage: float = Field(default=0.9, ge=0, le=1)
    #: and when a monitored column moved this far from the previous training version
    #: (the drift engine's large-sample distance: Wasserstein or Jensen-Shannon)
    max_distribution_shift: float = Field(default=0.5, gt=0)
    #: trigger: realised or estimated primary performance this much (relative) below baseline
    performance_drop: float = Field(default=0.05, ge=0, lt=1)
    #: trigger: share of drifted input features in the latest window at or above this
    drift_share: float = Field(default=0.3, gt=0, le=1)
    #: trigger: the production version is older than this many days
    max_model_age_days: float = Field(default=30.0, gt=0)
    #: trigger (business rule): at least this many new labelled predictions since training
    min_new_labels: int = Field(default=500, ge=1)
    #: one retrain per model: the lock's lease (renewed while training)
    lock_ttl_seconds: float = Field(default=1800.0, gt=0)
    #: the challenger's test against production: split (serve B to a share) or shadow (B
    #: scores a share of what A serves, so users only ever get the champion's answers)
    ab_mode: Literal["split", "shadow"] = "split"
    #: share of traffic to B (split: below 1; shadow: up to 1, every request scored twice)
    ab_traffic_split: float = Field(default=0.5, gt=0, le=1)
    #: cron expressions per model key for `titans scheduler` (e.g. {"category": "0 3 * * *"})
    schedules: dict[str, str] = {}


class Settings(BaseSettings):
    """Every tunable of the platform; constructors take one, or build it from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="TITANS_",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
    )

    environment: Literal["local", "staging", "production"] = "local"
    home: Path = Path(".titans")
    tracking_uri_override: str | None = Field(default=None, alias="TITANS_TRACKING_URI")
    database_url_override: str | None = Field(default=None, alias="TITANS_DATABASE_URL")
    #: bring the ops store schema to head on first use (turn off where `titans db upgrade` runs)
    database_auto_migrate: bool = True
    redis_url: str | None = None

    # models
    model_name_prefix: str = "titans-"
    seed: int = 42
    ci_rows: int = 20_000
    full_rows: int = 1_000_000
    min_class_examples: int = 5
    anomaly_alert_rate: float = Field(default=0.01, gt=0, lt=0.5)
    forecast_horizon_days: int = 30

    # model validation gates (titans.validation)
    validation: ValidationSettings = ValidationSettings()

    # data drift tests and thresholds (titans.monitoring.drift)
    drift: DriftSettings = DriftSettings()

    # data validation
    max_bad_row_share: float = Field(default=0.05, ge=0, le=1)

    # serving / auth
    api_keys: list[ApiKey] = []
    open_routes: list[str] = ["/health", "/ready", "/metrics"]
    #: per-API-key token bucket: sustained requests per second, and how many may come at once
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)

    # serving: prediction log (bounded queue, batched background writes to the ops store)
    #: records held in memory while the writer catches up; beyond it records are dropped
    #: (and counted in titans_prediction_log_dropped_total)
    prediction_log_queue_size: int = Field(default=10_000, ge=1)
    prediction_log_batch_size: int = Field(default=500, ge=1)
    #: the longest a logged record waits before its batch is written
    prediction_log_flush_seconds: float = Field(default=0.5, gt=0)
    #: how long shutdown waits for the queue to drain before counting the rest as dropped
    prediction_log_drain_timeout_seconds: float = Field(default=10.0, ge=0)

    # serving: API limits and the model store
    #: most transactions one /predict/batch request (or one cashflow history) may carry
    max_batch_size: int = Field(default=1_000, ge=1)
    #: request bodies larger than this are refused with 413
    max_body_bytes: int = Field(default=1_000_000, ge=1_024)
    #: how often the API asks the registry which version is in production (0 = never)
    model_poll_seconds: float = Field(default=30.0, ge=0)

    # governance (titans.governance): approvals, policy, sampled decisions
    #: identities beyond the API keys' names, e.g. TITANS_GOVERNANCE_IDENTITIES=
    #: '[{"name": "ann", "roles": ["approver"]}]'; `system` is built in (policy approvals)
    governance_identities: list[GovernanceIdentity] = []
    #: a pending request must be decided within this time; a granted approval stays valid
    #: this long after it was granted
    approval_ttl_hours: float = Field(default=72.0, gt=0)
    #: governance policy YAML; None = the default policy shipped with the package
    governance_policy_path: Path | None = None
    #: share of model decisions kept for compliance review (at least one per batch)
    decision_sample_rate: float = Field(default=0.01, gt=0, le=1)
    #: sampled decisions older than this are deleted by `prune_decisions`
    decision_retention_days: int = Field(default=365, ge=1)

    # A/B tests (titans.experiments.ab_testing)
    #: significance level of A/B decisions (fixed-horizon intervals and the mSPRT threshold)
    ab_alpha: float = Field(default=0.05, gt=0, lt=0.5)
    #: outcomes (predictions with feedback) each arm needs before any decision is made
    ab_min_samples_per_arm: int = Field(default=100, ge=2)
    #: mSPRT mixture: standard deviation of the normal prior on the standardised effect
    #: (B - A) / sigma; most powerful for effects near it (0.1 ~ 0.80 vs 0.84 accuracy)
    ab_msprt_tau: float = Field(default=0.1, gt=0)
    #: how often a router re-reads the running tests from the ops store (no DB per request)
    ab_route_refresh_seconds: float = Field(default=30.0, gt=0)

    # alert channels: secrets have no default
    slack_webhook_url: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str | None = None
    smtp_port: int = 25
    alert_email_from: str = "titans-alerts@localhost"
    alert_email_to: list[str] = []
    alert_cooldown_seconds: int = 3600
    #: rules, the other channels, routing by severity, retries and escalation
    alerts: AlertSettings = AlertSettings()
    #: the ModelMonitor: windows, label delay, thresholds of prediction quality and performance
    monitor: MonitorSettings = MonitorSettings()
    #: automated retraining: triggers, training data, the challenger's A/B test
    retraining: RetrainingSettings = RetrainingSettings()

    @model_validator(mode="after")
    def _no_placeholder_secrets_outside_local(self) -> Settings:
        if self.environment != "local":
            for name in ("slack_webhook_url", "pagerduty_routing_key"):
                secret = getattr(self, name)
                if secret is not None and secret.get_secret_value() in {"changeme", "", "xxx"}:
                    raise ValueError(
                        f"{name} holds a placeholder; set TITANS_{name.upper()} to the real value"
                    )
        return self

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def home_dir(self) -> Path:
        """Absolute TITANS_HOME (not created until something writes there)."""
        return self.home.expanduser().resolve()

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def tracking_uri(self) -> str:
        """MLflow tracking and registry URI: TITANS_TRACKING_URI or sqlite under home."""
        return self.tracking_uri_override or f"sqlite:///{self.home_dir / 'mlflow.db'}"

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def database_url(self) -> str:
        """Ops store URL: TITANS_DATABASE_URL or SQLite under home."""
        return self.database_url_override or f"sqlite:///{self.home_dir / 'titans.db'}"

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def artifact_root(self) -> Path:
        """Where MLflow artifacts live with the embedded store."""
        return self.home_dir / "mlartifacts"

    def registered_name(self, model_key: str) -> str:
        """Registered model name for one of the four models, e.g. ``titans-category``."""
        return f"{self.model_name_prefix}{model_key}"

    def ensure_home(self) -> Path:
        """Create TITANS_HOME and its data folder; return it."""
        (self.home_dir / "data").mkdir(parents=True, exist_ok=True)
        return self.home_dir


def get_settings() -> Settings:
    """Settings from the environment (fresh each call, so tests can change the environment)."""
    return Settings()
