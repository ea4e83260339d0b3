"""AutoRetrainingPipeline: decide when a model needs retraining, retrain it, and let the
challenger earn production against the champion.

``trigger_retraining`` runs the chain prepare data → validate → version → retrain → register
(tags: trigger reason, parent version, data version) → validate + approve (the governance
policy may auto-approve) → ``staging`` → an A/B (or shadow) test against ``production``.
``decide`` reads the test's sequential analysis; when it says B is better the challenger is
promoted through every gate, when it says A, the challenger is discarded. Every step is on the
audit trail (``retrain.*``). One retrain per model runs at a time (a lock in the ops store). A
retrain that fails or is killed at any point before the A/B test has moved nothing: the
``staging`` alias moves only after the new version passed its gates, ``production`` only when
the test decided.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from titans.config import MODEL_KEYS, Settings
from titans.errors import InputError
from titans.store import LockTimeout, Store, acquire_lock
from titans.store.models import utcnow

#: the metric each model's realised / estimated performance is judged by, and its direction
PERFORMANCE_METRICS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    # (monitor metric, validation metric, higher is better)
    "category": (
        ("realised_accuracy", "accuracy", True),
        ("estimated_accuracy", "accuracy", True),
    ),
    "amount": (("realised_mae", "mae", False),),
    "anomaly": (),
    "cashflow": (),
}
SCHEDULES_FILE = "schedules.json"


@dataclass
class TriggerCheck:
    """Whether ``model_name`` should be retrained now, and why (or why not)."""

    model_name: str
    fire: bool
    reasons: list[str]
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "fire": self.fire,
            "reasons": self.reasons,
            "checks": self.checks,
        }


@dataclass
class StepRecord:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class RetrainOutcome:
    """What one ``trigger_retraining`` call did."""

    model_name: str
    trigger_reason: str
    status: str  # ab_started | staged | refused | failed | busy
    parent_version: str | None = None
    new_version: str | None = None
    data_version: str | None = None
    ab_test: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("ab_started", "staged")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "trigger_reason": self.trigger_reason,
            "status": self.status,
            "parent_version": self.parent_version,
            "new_version": self.new_version,
            "data_version": self.data_version,
            "ab_test": self.ab_test,
            "detail": self.detail,
            "steps": [s.__dict__ for s in self.steps],
        }


class _StepFailed(Exception):
    def __init__(self, status: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _key(settings: Settings, model_name: str) -> tuple[str, str]:
    for key in MODEL_KEYS:
        if model_name in (key, settings.registered_name(key)):
            return settings.registered_name(key), key
    raise InputError(
        f"unknown model {model_name!r}; use one of {', '.join(MODEL_KEYS)} "
        f"(or its registered name, e.g. {settings.registered_name('category')})"
    )


class AutoRetrainingPipeline:
    """Triggers, the retraining chain and the challenger's decision (see the module doc)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        clock: Callable[[], datetime] = utcnow,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.store = store if store is not None else Store(self.settings)
        self._clock = clock
        self._progress = progress or (lambda _msg: None)
        self.last_check: dict[str, TriggerCheck] = {}
        self._last_training: Any = None
        self._actor = "retraining"

    # ------------------------------------------------------------------ collaborators

    def _registry(self) -> Any:
        from titans.registry.registry_manager import ModelRegistryManager

        return ModelRegistryManager(self.settings)

    def _audit(
        self, action: str, actor: str, name: str, version: str | None, **details: Any
    ) -> None:
        from titans.governance.audit import AuditLogger

        AuditLogger(self.store).log(action, actor, name, version, details)

    # ------------------------------------------------------------------ triggers

    def check_retraining_triggers(self, model_name: str | None = None) -> bool:
        """True when any model (or ``model_name``) should be retrained; reasons in
        ``last_check[<registered name>].reasons``."""
        keys = [model_name] if model_name else [k for k in MODEL_KEYS if k != "cashflow"]
        return any([self.check_triggers(k).fire for k in keys])  # every model checked

    def check_triggers(self, model_name: str) -> TriggerCheck:
        """Performance past threshold (realised or estimated), data drift past threshold,
        model age past the maximum, and the business rule of enough new labels."""
        from titans.monitoring.model_monitor import ModelMonitor

        name, key = _key(self.settings, model_name)
        cfg = self.settings.retraining
        registry = self._registry()
        production = registry.get_alias_version(name, "production")
        if production is None:
            check = TriggerCheck(name, False, [], {"production": None})
            check.checks["note"] = "no production version: train and promote one first"
            self.last_check[name] = check
            return check
        monitor = ModelMonitor(self.settings, store=self.store)
        reference = monitor.reference(name, production)
        reasons: list[str] = []
        checks: dict[str, Any] = {"production": production}

        latest = self._latest_metrics(monitor, name, production)
        for metric, baseline_metric, higher in PERFORMANCE_METRICS[key]:
            row = latest.get(metric)
            baseline = reference.metrics.get(baseline_metric)
            if row is None or row["value"] is None or baseline is None:
                continue
            value = float(row["value"])
            limit = baseline * (1 - cfg.performance_drop if higher else 1 + cfg.performance_drop)
            past = value < limit if higher else value > limit
            checks[metric] = {"value": value, "limit": limit, "baseline": baseline, "past": past}
            if past and row["verdict"] in ("ok", "breach"):
                word = "below" if higher else "above"
                reasons.append(
                    f"performance: {metric} {value:.4g} {word} {limit:.4g} "
                    f"({cfg.performance_drop:.0%} past the validation {baseline_metric} "
                    f"{baseline:.4g})"
                )
        drift = latest.get("drift_share")
        if drift is not None and drift["value"] is not None:
            share = float(drift["value"])
            checks["drift_share"] = {"value": share, "limit": cfg.drift_share}
            if share >= cfg.drift_share and drift["verdict"] in ("ok", "breach"):
                reasons.append(
                    f"drift: {share:.0%} of input features drifted (limit {cfg.drift_share:.0%})"
                )
        created = pd.Timestamp(registry.get_version(name, production)["created"]).to_pydatetime()
        age_days = (self._clock() - created).total_seconds() / 86_400
        checks["age_days"] = {"value": age_days, "limit": cfg.max_model_age_days}
        if age_days > cfg.max_model_age_days:
            reasons.append(
                f"schedule: version {production} is {age_days:.1f} days old "
                f"(maximum {cfg.max_model_age_days:g})"
            )
        new_labels = self._labels_since(name, created)
        checks["new_labels"] = {"value": new_labels, "limit": cfg.min_new_labels}
        if new_labels >= cfg.min_new_labels and reasons:
            # the business rule gates the others: retrain only with enough new labelled rows
            checks["new_labels"]["gate"] = "met"
        elif reasons:
            reasons = []
            checks["new_labels"]["gate"] = (
                f"held back: only {new_labels} labelled predictions since version {production} "
                f"(the rule asks for {cfg.min_new_labels})"
            )
        check = TriggerCheck(name, bool(reasons), reasons, checks)
        self.last_check[name] = check
        return check

    def _latest_metrics(self, monitor: Any, name: str, version: str) -> dict[str, dict[str, Any]]:
        rows = monitor.history(name)
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:  # oldest first: the last one wins
            if row["version"] == version:
                latest[row["metric"]] = row
        return latest

    def _labels_since(self, name: str, since: datetime) -> int:
        from sqlalchemy import func, select

        from titans.store.models import Feedback, Prediction

        with self.store.session() as session:
            count = session.scalar(
                select(func.count())
                .select_from(Feedback)
                .join(Prediction, Prediction.prediction_id == Feedback.prediction_id)
                .where(Prediction.model_name == name, Feedback.ts >= since)
            )
        return int(count or 0)

    # ------------------------------------------------------------------ the chain

    def retrain_model(self, model_name: str, config: dict[str, Any] | None = None) -> str:
        """Train and register one new version on ``config["data"]`` (a transactions frame);
        returns its ``models:/<name>/<version>`` URI. ``config`` may set ``seed`` and
        ``tags`` (added to the version's tags)."""
        from titans.models.train import train_models

        name, key = _key(self.settings, model_name)
        config = dict(config or {})
        data = config.get("data")
        if not isinstance(data, pd.DataFrame) or data.empty:
            raise InputError(
                "retrain_model needs config['data']: a non-empty transactions DataFrame "
                "(TrainingDataManager.prepare_training_data gives one)"
            )
        frame = data.drop(columns=["split"], errors="ignore")
        (result,) = train_models(
            frame,
            models=[key],
            seed=config.get("seed"),
            settings=self.settings,
            data_source=str(config.get("data_source", "retraining")),
            extra_tags={str(k): str(v) for k, v in dict(config.get("tags", {})).items()},
            progress=lambda _key_, step: self._progress(f"train {key}: {step}"),
        )
        self._last_training = result
        return f"models:/{name}/{result.version}"

    def trigger_retraining(
        self,
        model_name: str,
        trigger_reason: str,
        *,
        base_data: pd.DataFrame | None = None,
        cutoff_date: datetime | date | str | None = None,
        actor: str = "retraining",
        start_ab_test: bool = True,
    ) -> RetrainOutcome:
        """Run the chain once for ``model_name`` (see the module doc); never raises for a step
        that fails: the outcome says which step and why, and what serves is untouched."""
        name, key = _key(self.settings, model_name)
        if not trigger_reason or not str(trigger_reason).strip():
            raise InputError("say why the model is retrained: pass a non-empty trigger_reason")
        outcome = RetrainOutcome(name, str(trigger_reason), "failed")
        holder = f"{socket.gethostname()}:{os.getpid()}"
        try:
            with acquire_lock(
                self.store,
                f"retrain:{name}",
                holder,
                ttl_seconds=self.settings.retraining.lock_ttl_seconds,
                timeout_seconds=0.5,
            ):
                self._chain(outcome, key, actor, base_data, cutoff_date, start_ab_test)
        except LockTimeout:
            outcome.status = "busy"
            outcome.detail = f"another retrain of {name} is running; this one did nothing"
            return outcome
        except _StepFailed as failed:
            outcome.status = failed.status
            outcome.detail = failed.detail
            self._audit(
                "retrain.failed" if failed.status == "failed" else "retrain.refused",
                actor,
                name,
                outcome.new_version,
                reason=outcome.trigger_reason,
                step=outcome.steps[-1].name if outcome.steps else None,
                detail=failed.detail,
            )
        return outcome

    def _step(self, outcome: RetrainOutcome, name: str, work: Callable[[], str]) -> None:
        self._progress(f"{outcome.model_name}: {name}")
        started = time.perf_counter()
        try:
            detail = work()
        except _StepFailed as failed:
            outcome.steps.append(
                StepRecord(name, False, failed.detail, time.perf_counter() - started)
            )
            raise
        except Exception as exc:  # a step's own error: recorded, the chain stops
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            outcome.steps.append(StepRecord(name, False, message, time.perf_counter() - started))
            raise _StepFailed("failed", f"{name}: {message}") from exc
        outcome.steps.append(StepRecord(name, True, detail, time.perf_counter() - started))
        self._audit(
            "retrain.step",
            self._actor,
            outcome.model_name,
            outcome.new_version,
            step=name,
            detail=detail[:500],
        )

    def _chain(
        self,
        outcome: RetrainOutcome,
        key: str,
        actor: str,
        base_data: pd.DataFrame | None,
        cutoff_date: datetime | date | str | None,
        start_ab_test: bool,
    ) -> None:
        from titans.retraining.data_manager import TrainingDataManager

        name = outcome.model_name
        self._actor = actor
        registry = self._registry()
        outcome.parent_version = registry.get_alias_version(name, "production")
        self._audit(
            "retrain.started",
            actor,
            name,
            outcome.parent_version,
            reason=outcome.trigger_reason,
            pid=os.getpid(),
        )
        manager = TrainingDataManager(self.settings, store=self.store)
        state: dict[str, Any] = {}

        def prepare() -> str:
            data = manager.prepare_training_data(key, cutoff_date, base_data=base_data)
            state["data"] = data
            train = int((data["split"] == "train").sum())
            return f"{len(data):,} rows ({train:,} train, {len(data) - train:,} validation)"

        def validate() -> str:
            if not manager.validate_training_data(state["data"], model_name=key):
                failures = manager.last_check.failures if manager.last_check else []
                raise _StepFailed("refused", "training data refused: " + "; ".join(failures))
            return "schema, completeness, labels and distribution checks passed"

        def version() -> str:
            info = manager.manage_data_versions(state["data"])
            outcome.data_version = info.version
            return f"data version {info.version} → {info.path}"

        def retrain() -> str:
            uri = self.retrain_model(
                key,
                {
                    "data": state["data"],
                    "data_source": f"data-version:{outcome.data_version}",
                    "tags": {
                        "titans.trigger_reason": outcome.trigger_reason[:500],
                        "titans.parent_version": outcome.parent_version or "",
                        "titans.training_data_version": outcome.data_version or "",
                        "titans.actor": actor,
                    },
                },
            )
            outcome.new_version = uri.rsplit("/", 1)[1]
            result = self._last_training
            return (
                f"{uri}: {result.evaluation.primary_metric} {result.evaluation.score:.4f} "
                f"(baseline {result.evaluation.baseline_score:.4f})"
            )

        def stage() -> str:
            version_ = str(outcome.new_version)  # set by retrain
            if not registry.promote_model(name, version_, "Staging", actor):
                refusal = registry.last_refusal
                raise _StepFailed("refused", f"staging refused: {refusal}")
            return f"version {version_} passed validation and approval, now staging"

        def compare() -> str:
            if outcome.parent_version is None:
                return "no production version to compare with"
            report = registry.compare_models(name, outcome.parent_version, outcome.new_version)
            primary = report["primary"]
            state["comparison"] = primary
            return (
                f"on the new holdout: {report['primary_metric']} v{outcome.parent_version} "
                f"{primary['version1']:.4f} vs v{outcome.new_version} {primary['version2']:.4f}"
            )

        def ab_test() -> str:
            from titans.experiments.ab_testing import ABTestingFramework

            framework = ABTestingFramework(self.settings, self.store)
            running = framework.running_test(name)
            if running is not None:
                framework.stop_test(running, f"superseded by retrain v{outcome.new_version}")
            test_name = f"retrain-{key}-v{outcome.new_version}"
            cfg = self.settings.retraining
            framework.setup_ab_test(
                test_name,
                (name, str(outcome.parent_version)),
                (name, str(outcome.new_version)),
                cfg.ab_traffic_split,
                cfg.ab_mode,
                actor=actor,
            )
            outcome.ab_test = test_name
            return f"{test_name}: {cfg.ab_mode}, {cfg.ab_traffic_split:.0%} of traffic to B"

        self._step(outcome, "prepare data", prepare)
        self._step(outcome, "validate data", validate)
        self._step(outcome, "version data", version)
        self._step(outcome, "retrain", retrain)
        self._step(outcome, "validate + approve + staging", stage)
        self._step(outcome, "compare with production", compare)
        if start_ab_test and outcome.parent_version is not None:
            self._step(outcome, "start A/B test", ab_test)
            outcome.status = "ab_started"
        else:
            outcome.status = "staged"
        self._audit(
            "retrain.completed",
            actor,
            name,
            outcome.new_version,
            reason=outcome.trigger_reason,
            parent_version=outcome.parent_version,
            data_version=outcome.data_version,
            ab_test=outcome.ab_test,
            status=outcome.status,
        )

    # ------------------------------------------------------------------ the decision

    def decide(self, model_name: str, *, actor: str = "retraining") -> dict[str, Any]:
        """Analyse the model's running retrain A/B test; promote B if it won, discard it if A
        did; ``continue`` otherwise. Returns the analysis with ``action`` taken."""
        from titans.experiments.ab_testing import ABTestingFramework

        name, _ = _key(self.settings, model_name)
        framework = ABTestingFramework(self.settings, self.store)
        test_name = framework.running_test(name)
        if test_name is None:
            return {"decision": None, "action": "none", "reason": f"no running A/B test of {name}"}
        analysis = framework.analyze_ab_results(test_name, actor=actor)
        test = framework.get_test(test_name)
        analysis["test"] = test_name
        analysis["model_b_version"] = test.model_b_version
        analysis["model_a_version"] = test.model_a_version
        decision = analysis["decision"]
        if decision == "promote_b":
            registry = self._registry()
            if registry.promote_model(name, test.model_b_version, "Production", actor):
                analysis["action"] = f"promoted v{test.model_b_version} to production"
                self._audit("retrain.promoted", actor, name, test.model_b_version, test=test_name)
            else:
                analysis["action"] = f"B won but its promotion was refused: {registry.last_refusal}"
        elif decision == "keep_a":
            analysis["action"] = f"discarded v{test.model_b_version}; v{test.model_a_version} stays"
            self._audit("retrain.discarded", actor, name, test.model_b_version, test=test_name)
        else:
            analysis["action"] = "continue"
        return analysis

    # ------------------------------------------------------------------ schedules

    @property
    def schedules_path(self) -> Path:
        return self.settings.home_dir / "retraining" / SCHEDULES_FILE

    def schedules(self) -> dict[str, str]:
        """Cron schedules per registered name: the settings' plus those saved by
        ``schedule_retraining`` (saved ones win)."""
        saved: dict[str, str] = {}
        if self.schedules_path.is_file():
            saved = json.loads(self.schedules_path.read_text(encoding="utf-8"))
        merged = {
            _key(self.settings, k)[0]: v for k, v in self.settings.retraining.schedules.items()
        }
        merged.update(saved)
        return merged

    def schedule_retraining(self, model_name: str, schedule: str) -> dict[str, Any]:
        """Save a cron schedule (``m h dom mon dow``) for ``model_name``; returns the next runs."""
        from apscheduler.triggers.cron import CronTrigger

        name, _ = _key(self.settings, model_name)
        try:
            trigger = CronTrigger.from_crontab(schedule, timezone=UTC)
        except ValueError as exc:
            raise InputError(
                f"schedule {schedule!r} is not a cron expression ({exc}); use five fields, "
                "e.g. '0 3 * * *' for 03:00 UTC daily"
            ) from exc
        current = self.schedules()
        current[name] = schedule
        self.schedules_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.schedules_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True), encoding="utf-8")
        tmp.replace(self.schedules_path)
        self._audit("retrain.scheduled", "retraining", name, None, schedule=schedule)
        return {"model": name, "schedule": schedule, "next": list(_next_runs(trigger, 3))}

    def status(self) -> list[dict[str, Any]]:
        """Per model: production and staging versions, a retrain lock if held, the running test."""
        from sqlalchemy import select

        from titans.experiments.ab_testing import ABTestingFramework
        from titans.store.models import Lock

        registry = self._registry()
        framework = ABTestingFramework(self.settings, self.store)
        with self.store.session() as session:
            locks = {row.name: row for row in session.scalars(select(Lock)).all()}
            holders = {
                name: (row.holder, row.expires_at.isoformat()) for name, row in locks.items()
            }
        out = []
        schedules = self.schedules()
        for key in MODEL_KEYS:
            name = self.settings.registered_name(key)
            out.append(
                {
                    "model": name,
                    "production": registry.get_alias_version(name, "production"),
                    "staging": registry.get_alias_version(name, "staging"),
                    "retrain_lock": holders.get(f"retrain:{name}"),
                    "ab_test": framework.running_test(name),
                    "schedule": schedules.get(name),
                }
            )
        return out


def _next_runs(trigger: Any, count: int) -> Iterator[str]:
    previous = None
    now = datetime.now(UTC)
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, previous or now)
        if fire is None:
            return
        yield fire.isoformat()
        previous = fire + timedelta(seconds=1)
