"""AutoRetrainingPipeline against a real MLflow registry and ops store: each trigger, the chain
to a staged challenger in an A/B test, refusals that move nothing, the lock, the decision, and
a retrain killed mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from _support.serving import RELAXED
from titans.config import MODEL_KEYS, RetrainingSettings, Settings, ValidationSettings
from titans.data.io import write_transactions
from titans.data.synth import generate
from titans.errors import InputError
from titans.experiments.ab_testing import ABTestingFramework
from titans.governance.audit import AuditLogger
from titans.models.train import train_models
from titans.registry.registry_manager import ModelRegistryManager
from titans.retraining.pipeline import AutoRetrainingPipeline
from titans.store import Store, acquire_lock
from titans.store.models import AuditEntryRow, Feedback, MonitorMetric, Prediction

#: auto-approve any version that passes validation (retrains of one distribution tie)
POLICY = (
    "version: 1\ndefault:\n  auto_approve:\n    enabled: true\n    requires_validation: true\n"
    "    min_primary_improvement: 0.0\n    first_version_auto_approve: true\n"
)


def _settings(home: Path, **overrides: Any) -> Settings:
    policy = home / "policy.yaml"
    home.mkdir(parents=True, exist_ok=True)
    policy.write_text(POLICY, encoding="utf-8")
    overrides.setdefault("retraining", RetrainingSettings(min_new_labels=1))
    return Settings(
        home=home,
        governance_policy_path=policy,
        validation=ValidationSettings.model_validate({key: RELAXED for key in MODEL_KEYS}),
        **overrides,
    )


def _base(seed: int, rows: int = 6_000) -> pd.DataFrame:
    """Generated transactions; the challenger's 6,000 rows beat the champion's 1,500."""
    return generate(rows, seed=seed, start="2024-01-01", days=120)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Category v1 trained and promoted to production."""
    home = tmp_path / "home"
    settings = _settings(home)
    (result,) = train_models(_base(5, 1_500), models=["category"], seed=5, settings=settings)
    registry = ModelRegistryManager(settings)
    for stage in ("Staging", "Production"):
        ok = registry.promote_model(result.registered_name, result.version, stage, "test")
        assert ok, registry.last_refusal
    return home


def _aliases(settings: Settings) -> dict[str, str | None]:
    registry = ModelRegistryManager(settings)
    return {a: registry.get_alias_version("titans-category", a) for a in ("production", "staging")}


def _actions(settings: Settings) -> list[str]:
    with Store(settings).session() as session:
        return list(session.scalars(select(AuditEntryRow.action).order_by(AuditEntryRow.seq)))


def _metric(settings: Settings, metric: str, value: float, verdict: str = "ok") -> None:
    now = datetime.now(UTC)
    with Store(settings).session() as session:
        session.add(
            MonitorMetric(
                ts=now,
                window_start=now - timedelta(hours=1),
                window_end=now,
                model_name="titans-category",
                model_version="1",
                kind="data_drift" if metric == "drift_share" else "performance",
                metric=metric,
                value=value,
                threshold=None,
                verdict=verdict,
            )
        )


def _labelled(
    settings: Settings,
    frame: pd.DataFrame,
    arms: list[str] | None = None,
    correct: list[bool] | None = None,
) -> None:
    """Logged predictions of ``frame`` with feedback (the true category)."""
    now = datetime.now(UTC)
    with Store(settings).session() as session:
        for i, row in enumerate(frame.to_dict("records")):
            pid = f"p{i}-{row['category']}-{np.random.default_rng(i).integers(1e9)}"
            arm = arms[i] if arms else None
            truth = str(row["category"]).lower()
            guess = truth if (correct is None or correct[i]) else "other"
            features = {
                "date": pd.Timestamp(row["date"]).date().isoformat(),
                "type": row["type"],
                "description": row["description"],
                "amount": float(row["amount"]),
                "payment_method": row["payment_method"],
                "reference": row["reference"],
                "status": row["status"],
                "category": None,
            }
            session.add(
                Prediction(
                    prediction_id=pid,
                    ts=now,
                    model_name="titans-category",
                    model_version="2" if arm == "B" else "1",
                    alias="production",
                    arm=arm,
                    features=features,
                    prediction={"prediction": guess, "probability": 0.9, "top_classes": []},
                    score=0.9,
                    latency_ms=1.0,
                )
            )
            session.flush()
            session.add(Feedback(prediction_id=pid, ts=now, actual={"category": row["category"]}))


# ---------------------------------------------------------------- triggers


def test_no_trigger_without_evidence_and_each_trigger_names_its_reason(home: Path) -> None:
    settings = _settings(home)
    pipeline = AutoRetrainingPipeline(settings)
    quiet = pipeline.check_triggers("category")
    assert not quiet.fire and quiet.reasons == []
    assert quiet.checks["production"] == "1"
    assert pipeline.check_retraining_triggers() is False

    expenses = _base(9)
    expenses = expenses[expenses["type"] == "Expense"].head(40)
    _labelled(settings, expenses)
    _metric(settings, "drift_share", 0.5)
    drift = pipeline.check_triggers("category")
    assert drift.fire and any(r.startswith("drift: 50%") for r in drift.reasons)

    _metric(settings, "estimated_accuracy", 0.10)
    performance = pipeline.check_triggers("category")
    assert any(
        r.startswith("performance: estimated_accuracy 0.1 below") for r in performance.reasons
    )
    assert pipeline.check_retraining_triggers("category") is True
    assert pipeline.last_check["titans-category"].reasons == performance.reasons

    old = AutoRetrainingPipeline(settings, clock=lambda: datetime.now(UTC) + timedelta(days=45))
    assert any(
        r.startswith("schedule: version 1 is 45") for r in old.check_triggers("category").reasons
    )

    # the business rule gates the others: with fewer new labels than asked, nothing fires
    strict = AutoRetrainingPipeline(
        _settings(home, retraining=RetrainingSettings(min_new_labels=1_000))
    )
    held = strict.check_triggers("category")
    assert not held.fire
    assert "only 40 labelled predictions" in held.checks["new_labels"]["gate"]
    # a verdict of "insufficient" (too few rows to judge) never triggers
    _metric(settings, "drift_share", 0.9, verdict="insufficient")
    _metric(settings, "estimated_accuracy", 0.99)
    assert not pipeline.check_triggers("category").fire


# ---------------------------------------------------------------- the chain


def test_retrain_registers_a_tagged_challenger_in_staging_and_starts_its_ab_test(
    home: Path,
) -> None:
    settings = _settings(home)
    pipeline = AutoRetrainingPipeline(settings)
    outcome = pipeline.trigger_retraining(
        "category", "drift: 60% of input features drifted", base_data=_base(6)
    )
    assert outcome.status == "ab_started", outcome.to_dict()
    assert [s.name for s in outcome.steps] == [
        "prepare data",
        "validate data",
        "version data",
        "retrain",
        "validate + approve + staging",
        "compare with production",
        "start A/B test",
    ]
    assert (outcome.parent_version, outcome.new_version) == ("1", "2")
    assert _aliases(settings) == {"production": "1", "staging": "2"}
    tags = ModelRegistryManager(settings).get_version("titans-category", "2")["tags"]
    assert tags["titans.trigger_reason"] == "drift: 60% of input features drifted"
    assert tags["titans.parent_version"] == "1"
    assert tags["titans.training_data_version"] == outcome.data_version
    assert (settings.home_dir / "data" / "versions" / str(outcome.data_version)).is_dir()
    framework = ABTestingFramework(settings, Store(settings))
    assert framework.running_test("titans-category") == outcome.ab_test == "retrain-category-v2"
    actions = _actions(settings)
    assert actions.index("retrain.started") < actions.index("retrain.completed")
    assert "ab.created" in actions
    assert AuditLogger(Store(settings)).verify().ok


def test_refused_training_data_moves_nothing(home: Path) -> None:
    settings = _settings(home)
    before = _aliases(settings)
    broken = _base(7, 3_000)
    broken["category"] = None  # no labels at all: nothing to learn the category from
    outcome = AutoRetrainingPipeline(settings).trigger_retraining(
        "category", "manual", base_data=broken
    )
    assert outcome.status == "refused"
    assert outcome.steps[-1].name == "validate data" and not outcome.steps[-1].ok
    assert "label" in outcome.detail
    assert _aliases(settings) == before
    assert len(ModelRegistryManager(settings).get_versions("titans-category")) == 1
    assert "retrain.refused" in _actions(settings)


def test_one_retrain_per_model_at_a_time(home: Path) -> None:
    settings = _settings(home)
    store = Store(settings)
    with acquire_lock(store, "retrain:titans-category", "someone-else", ttl_seconds=60):
        outcome = AutoRetrainingPipeline(settings, store=store).trigger_retraining(
            "category", "manual", base_data=_base(6)
        )
    assert outcome.status == "busy"
    assert "another retrain of titans-category is running" in outcome.detail
    assert outcome.steps == []
    assert len(ModelRegistryManager(settings).get_versions("titans-category")) == 1


def test_decide_promotes_a_winning_challenger_and_discards_a_losing_one(home: Path) -> None:
    settings = _settings(home)
    pipeline = AutoRetrainingPipeline(settings)
    assert pipeline.decide("category")["action"] == "none"
    outcome = pipeline.trigger_retraining("category", "manual", base_data=_base(6))
    assert outcome.status == "ab_started"
    assert pipeline.decide("category")["action"] == "continue"  # no outcomes yet

    rows = _base(11, 4_000)
    rows = rows[rows["type"] == "Expense"].head(1_200)
    arms = ["A" if i % 2 == 0 else "B" for i in range(len(rows))]
    rng = np.random.default_rng(0)
    correct = [bool(rng.random() < (0.70 if arm == "A" else 0.92)) for arm in arms]
    _labelled(settings, rows, arms, correct)
    decision = pipeline.decide("category")
    assert decision["decision"] == "promote_b", decision.get("reason")
    assert decision["action"] == "promoted v2 to production"
    assert _aliases(settings)["production"] == "2"
    assert "retrain.promoted" in _actions(settings)

    # the next challenger loses: discarded, v2 stays
    second = pipeline.trigger_retraining("category", "manual", base_data=_base(8))
    assert second.status == "ab_started" and second.new_version == "3"
    with Store(settings).session() as session:
        session.query(Feedback).delete()
        session.query(Prediction).delete()
    losing = [bool(rng.random() < (0.92 if arm == "A" else 0.60)) for arm in arms]
    _labelled(settings, rows, arms, losing)
    with Store(settings).session() as session:  # the B rows are version 3 now
        session.query(Prediction).filter(Prediction.arm == "B").update({"model_version": "3"})
        session.query(Prediction).filter(Prediction.arm == "A").update({"model_version": "2"})
    kept = pipeline.decide("category")
    assert kept["decision"] == "keep_a", kept.get("reason")
    assert kept["action"] == "discarded v3; v2 stays"
    assert _aliases(settings)["production"] == "2"


def test_schedules_are_cron_checked_saved_and_merged(home: Path) -> None:
    settings = _settings(home, retraining=RetrainingSettings(schedules={"amount": "0 4 * * *"}))
    pipeline = AutoRetrainingPipeline(settings)
    with pytest.raises(InputError, match="not a cron expression"):
        pipeline.schedule_retraining("category", "every day")
    saved = pipeline.schedule_retraining("category", "30 3 * * 1")
    assert len(saved["next"]) == 3 and all("T03:30:00" in n for n in saved["next"])
    assert pipeline.schedules() == {
        "titans-amount": "0 4 * * *",
        "titans-category": "30 3 * * 1",
    }
    assert "retrain.scheduled" in _actions(settings)


# ---------------------------------------------------------------- killed mid-training


@pytest.mark.integration
def test_a_retrain_killed_mid_training_leaves_everything_serving_as_it_was(
    home: Path, tmp_path: Path
) -> None:
    settings = _settings(home)
    before = _aliases(settings)
    base = write_transactions(_base(6, 40_000), tmp_path / "base.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TITANS_", "MLFLOW_"))}
    env.update(
        TITANS_HOME=str(home),
        TITANS_GOVERNANCE_POLICY_PATH=str(home / "policy.yaml"),
        TITANS_RETRAINING__LOCK_TTL_SECONDS="3",
    )
    titans = Path(sys.executable).with_name("titans")
    log = (tmp_path / "retrain.log").open("wb")
    proc = subprocess.Popen(
        [str(titans), "retrain", "run", "category", "--data", str(base), "--reason", "kill test"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "retrain.started" not in _actions(settings):
            assert proc.poll() is None, (tmp_path / "retrain.log").read_text()
            assert time.monotonic() < deadline, "the retrain never started"
            time.sleep(0.05)
        # into the chain: data prepared and validated, the model fitting on 40,000 rows
        time.sleep(2.0)
        assert proc.poll() is None, "the retrain finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    actions = _actions(settings)
    assert "retrain.completed" not in actions
    assert _aliases(settings) == before
    with Store(settings).session() as session:
        held = session.scalar(select(func.count()).select_from(AuditEntryRow))
    assert held  # the chain was audited up to the kill
    # a model store (what the API loads) started now serves exactly what served before
    from prometheus_client import CollectorRegistry

    from titans.serving.model_store import ModelStore

    serving = ModelStore(settings, ("category",), registry=CollectorRegistry())
    serving.refresh()
    loaded = serving.get("category")
    assert loaded is not None and loaded.version == before["production"]
    # the dead holder's lease expires; the next retrain takes the lock and completes
    time.sleep(3.5)
    outcome = AutoRetrainingPipeline(settings).trigger_retraining(
        "category", "after the kill", base_data=_base(6), start_ab_test=False
    )
    assert outcome.status == "staged", outcome.to_dict()
    assert _aliases(settings)["production"] == before["production"]


# ---------------------------------------------------------------- the CLI


def test_cli_check_run_status_and_scheduler_once(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from titans.cli import _register_groups, app

    _register_groups()
    runner = CliRunner()
    settings = _settings(home)
    monkeypatch.setenv("TITANS_HOME", str(home))
    monkeypatch.setenv("TITANS_GOVERNANCE_POLICY_PATH", str(home / "policy.yaml"))
    monkeypatch.setenv("TITANS_RETRAINING__MIN_NEW_LABELS", "1")
    monkeypatch.setenv("TITANS_VALIDATION", json.dumps({key: RELAXED for key in MODEL_KEYS}))

    quiet = runner.invoke(app, ["retrain", "check", "--model", "category"])
    assert quiet.exit_code == 0, quiet.output
    assert "titans-category: no trigger past its threshold" in quiet.output

    expenses = _base(9)
    _labelled(settings, expenses[expenses["type"] == "Expense"].head(40))
    _metric(settings, "drift_share", 0.5)
    fired = runner.invoke(app, ["retrain", "check", "--model", "category", "--json"])
    assert fired.exit_code == 0 and '"fire": true' in fired.output

    base = write_transactions(_base(6), home / "base.csv")
    monkeypatch.setenv("TITANS_RETRAINING__MIN_NEW_LABELS", "1000000")  # scheduler: no fire
    once = runner.invoke(app, ["scheduler", "--once"])
    assert once.exit_code == 0, once.output
    assert len(ModelRegistryManager(settings).get_versions("titans-category")) == 1

    monkeypatch.setenv("TITANS_RETRAINING__MIN_NEW_LABELS", "1")
    ran = runner.invoke(
        app, ["retrain", "run", "category", "--data", str(base), "--reason", "cli test"]
    )
    assert ran.exit_code == 0, ran.output
    assert "retrain titans-category: ab_started" in ran.output
    status = runner.invoke(app, ["retrain", "status"])
    assert status.exit_code == 0
    assert "retrain-category-v2" in status.output
    decided = runner.invoke(app, ["retrain", "decide", "category"])
    assert decided.exit_code == 0 and "continue" in decided.output
    scheduled = runner.invoke(app, ["retrain", "schedule", "category", "0 3 * * *"])
    assert scheduled.exit_code == 0 and "titans-category: 0 3 * * *" in scheduled.output
