"""ModelValidationPipeline on models really trained, logged and registered in a temp MLflow store.

Broken models are trained through the same `train_models` path with a sabotaged `fit`, so the
artifacts that fail the checks are real logged models, not mocks of the checks.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression
from threadpoolctl import threadpool_limits

from titans.config import Settings
from titans.data.synth import generate
from titans.errors import InputError, ModelNotFoundError
from titans.models.amount import AmountSpec
from titans.models.base import TrainedModel
from titans.models.category import CategorySpec
from titans.models.train import TrainingResult, load_holdout, train_models
from titans.validation import REPORT_ARTIFACT, STATUS_TAG, ModelValidationPipeline

ROWS = 4_000
SEED = 21
_AMOUNT_FIT = AmountSpec.fit
_CATEGORY_FIT = CategorySpec.fit


def _nan_amount_fit(self: AmountSpec, train: pd.DataFrame, seed: int) -> TrainedModel:
    """The real amount model with its regressor swapped for one whose weights are NaN."""
    trained = _AMOUNT_FIT(self, train, seed)
    pipeline = trained.state["pipeline"]
    x = pipeline[0].transform(self.select(train).head(50))
    regressor = LinearRegression().fit(x, np.zeros(x.shape[0]))
    regressor.coef_ = np.full_like(regressor.coef_, np.nan)
    pipeline.steps[-1] = ("model", regressor)
    return trained


def _coin_flip_category_fit(self: CategorySpec, train: pd.DataFrame, seed: int) -> TrainedModel:
    """The real category pipeline ending in an unseeded random classifier (not reproducible)."""
    trained = _CATEGORY_FIT(self, train, seed)
    pipeline = trained.state["pipeline"]
    classes = np.asarray(pipeline.classes_, dtype=object)
    coin = DummyClassifier(strategy="stratified").fit(np.zeros((classes.size, 1)), classes)
    pipeline.steps[-1] = ("model", coin)
    return trained


def _scramble_training_amounts(frame: pd.DataFrame) -> pd.DataFrame:
    """Shuffle amounts within the first 70% of days, so a model learns nothing real from them
    while the latest period (the holdout) keeps its true amounts."""
    out = frame.copy()
    cut = out["date"].quantile(0.7)
    early = (out["date"] < cut) & out["type"].eq("Expense")
    rng = np.random.default_rng(0)
    out.loc[early, "amount"] = rng.permutation(out.loc[early, "amount"].to_numpy())
    return out


@dataclass
class World:
    settings: Settings
    frame: pd.DataFrame
    good: dict[str, TrainingResult]
    broken: dict[str, TrainingResult]
    weak_amount: TrainingResult


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    settings = Settings(home=tmp_path_factory.mktemp("validation-home"))
    frame = generate(ROWS, seed=SEED)
    # two shared cores: unbounded OpenMP threads make HistGradientBoosting ~15x slower under load
    with threadpool_limits(limits=1):
        good = {r.model_key: r for r in train_models(frame, seed=SEED, settings=settings)}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(AmountSpec, "fit", _nan_amount_fit)
            patch.setattr(CategorySpec, "fit", _coin_flip_category_fit)
            broken = train_models(
                frame, models=["amount", "category"], seed=SEED, settings=settings
            )
        weak = train_models(
            _scramble_training_amounts(frame), models=["amount"], seed=SEED, settings=settings
        )[0]
    return World(settings, frame, good, {r.model_key: r for r in broken}, weak)


@pytest.fixture(autouse=True)
def _one_thread_per_predict() -> Any:
    """HistGradientBoosting predicts tree by tree; OpenMP start-up per tree dominates on 2 busy
    cores (3.6 s vs 0.1 s for a 30-day forecast), so tests run each predict on one thread."""
    with threadpool_limits(limits=1):
        yield


def _pipeline(world: World, **validation: Any) -> ModelValidationPipeline:
    settings = world.settings.model_copy(
        update={"validation": world.settings.validation.model_validate(validation)}
    )
    return ModelValidationPipeline(settings if validation else world.settings)


# -- performance ---------------------------------------------------------------------------------


def test_good_model_passes_performance_re_evaluated_on_its_own_holdout(world: World) -> None:
    amount = world.good["amount"]
    pipeline = ModelValidationPipeline(world.settings)
    assert pipeline.validate_model_performance(amount.registry_uri)
    check = pipeline.last_report["checks"]["performance"]
    assert check["passed"] and check["reasons"] == []
    # the holdout is the training run's test period: the re-evaluated score is the logged one
    assert check["details"]["score"] == pytest.approx(amount.evaluation.score)
    assert check["details"]["holdout_rows"] == amount.test_rows
    assert check["details"]["baseline_score"] == pytest.approx(amount.evaluation.baseline_score)
    assert check["thresholds"]["direction"] == "min"
    assert pipeline.last_report["version"] == amount.version


def test_impossible_floor_or_margin_fails_with_the_reason_in_the_report(world: World) -> None:
    uri = world.good["amount"].registry_uri
    pipeline = _pipeline(world, amount={"primary_floor": 1.0})
    assert not pipeline.validate_model_performance(uri)
    check = pipeline.last_report["checks"]["performance"]
    assert check["thresholds"]["primary_floor"] == 1.0
    assert any("above the floor 1" in r for r in check["reasons"]), check["reasons"]

    pipeline = _pipeline(world, amount={"min_margin_over_baseline": 5.0})
    assert not pipeline.validate_model_performance(uri)
    reasons = pipeline.last_report["checks"]["performance"]["reasons"]
    assert any("less than the required 500.0%" in r for r in reasons), reasons


def test_challenger_worse_than_champion_on_the_same_holdout_fails(world: World) -> None:
    good, weak = world.good["amount"], world.weak_amount
    pipeline = _pipeline(world, amount={"champion_tolerance": 0.02})
    assert pipeline.validate_model_performance(good.registry_uri, champion_uri=good.registry_uri)
    assert not pipeline.validate_model_performance(
        weak.registry_uri, champion_uri=good.registry_uri
    )
    check = pipeline.last_report["checks"]["performance"]
    champion = check["details"]["champion"]
    assert champion["score"] < check["details"]["score"]  # the champion's MAE is lower
    assert any("worse than the champion" in r for r in check["reasons"]), check["reasons"]


def test_broken_model_fails_performance_instead_of_passing_on_nan(world: World) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    assert not pipeline.validate_model_performance(world.broken["amount"].registry_uri)
    assert "not a number" in pipeline.last_report["checks"]["performance"]["reasons"][0]


# -- stability -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["category", "amount", "anomaly", "cashflow"])
def test_trained_models_pass_stability(world: World, key: str) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    passed = pipeline.validate_model_stability(world.good[key].registry_uri)
    check = pipeline.last_report["checks"]["stability"]
    assert passed, check["reasons"]
    edge = check["details"]["edge_cases"]
    for name in (
        "zero_amount",
        "huge_amount",
        "wrongly_signed_amount",
        "5000_char_description",
        "unicode_description",
        "unseen_category",
        "missing_optional_fields",
        "date_far_past",
        "date_far_future",
        "no_rows",
    ):
        assert edge[name]["ok"], (name, edge[name])
    assert check["details"]["determinism"]["ok"]
    assert check["details"]["perturbation"]["ok"]


def test_stability_catches_a_model_that_returns_nan(world: World) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    assert not pipeline.validate_model_stability(world.broken["amount"].registry_uri)
    reasons = pipeline.last_report["checks"]["stability"]["reasons"]
    assert any("NaN/inf value(s) in 'prediction'" in r for r in reasons), reasons
    assert any(r.startswith("perturbation:") for r in reasons), reasons


def test_stability_catches_a_model_whose_predictions_are_not_reproducible(world: World) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    assert not pipeline.validate_model_stability(world.broken["category"].registry_uri)
    details = pipeline.last_report["checks"]["stability"]["details"]
    assert not details["determinism"]["ok"]
    assert any("predicted twice differ" in p for p in details["determinism"]["problems"])
    assert details["perturbation"]["flip_rate"] > 0.02


def test_edge_case_switches_choose_what_is_fed_to_the_model(world: World) -> None:
    pipeline = _pipeline(world, amount={"edge_cases": {"descriptions": False, "amounts": False}})
    pipeline.validate_model_stability(world.good["amount"].registry_uri)
    check = pipeline.last_report["checks"]["stability"]
    assert "5000_char_description" not in check["details"]["edge_cases"]
    assert "huge_amount" not in check["details"]["edge_cases"]
    assert "unseen_reference" in check["details"]["edge_cases"]
    assert check["thresholds"]["edge_cases"]["descriptions"] is False


# -- fairness ------------------------------------------------------------------------------------


def test_fairness_reports_every_segment_and_fails_under_a_tiny_gap_bound(world: World) -> None:
    category = world.good["category"]
    holdout = load_holdout(category.run_id, world.settings)
    expenses = CategorySpec(world.settings).select(holdout)

    relaxed = _pipeline(world, category={"max_fairness_gap": 1.0, "min_segment_rows": 1})
    assert relaxed.validate_model_fairness(category.registry_uri)
    details = relaxed.last_report["checks"]["fairness"]["details"]
    assert set(details["features"]) == {"payment_method", "type", "amount_band", "day_kind"}
    assert set(details["features"]["payment_method"]["segments"]) == set(
        expenses["payment_method"].dropna().unique()
    )
    assert set(details["features"]["day_kind"]["segments"]) == {"weekday", "weekend"}
    assert len(details["features"]["amount_band"]["segments"]) == 4
    rows = sum(s["rows"] for s in details["features"]["day_kind"]["segments"].values())
    assert rows == len(expenses)

    strict = _pipeline(world, category={"max_fairness_gap": 0.001, "min_segment_rows": 1})
    assert not strict.validate_model_fairness(category.registry_uri)
    reasons = strict.last_report["checks"]["fairness"]["reasons"]
    assert any("accuracy gap" in r and "exceeds 0.001" in r for r in reasons), reasons


def test_small_segments_are_skipped_and_reported(world: World) -> None:
    pipeline = _pipeline(world, category={"max_fairness_gap": 0.0, "min_segment_rows": 10**6})
    assert pipeline.validate_model_fairness(world.good["category"].registry_uri)
    check = pipeline.last_report["checks"]["fairness"]
    payment = check["details"]["features"]["payment_method"]
    assert payment["skipped"] == sorted(payment["segments"])
    assert any(n.startswith("payment_method: skipped") for n in check["notes"])


def test_anomaly_fairness_compares_recall_on_labelled_anomalies(world: World) -> None:
    anomaly = world.good["anomaly"]
    holdout = load_holdout(anomaly.run_id, world.settings)
    positives = int(holdout["is_anomaly"].sum())
    pipeline = _pipeline(world, anomaly={"min_segment_rows": 1, "max_fairness_gap": 1.0})
    assert pipeline.validate_model_fairness(anomaly.registry_uri)
    details = pipeline.last_report["checks"]["fairness"]["details"]
    assert details["metric"] == "recall"
    segments = details["features"]["type"]["segments"]
    assert sum(s["support"] for s in segments.values()) == positives
    # the default minimum counts positives: a few thousand rows hold too few to compare
    default = ModelValidationPipeline(world.settings)
    assert default.validate_model_fairness(anomaly.registry_uri)
    assert any("unassessed" in n for n in default.last_report["checks"]["fairness"]["notes"])


def test_fairness_does_not_apply_to_the_cashflow_forecast(world: World) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    assert pipeline.validate_model_fairness(world.good["cashflow"].registry_uri)
    assert "not applicable" in pipeline.last_report["checks"]["fairness"]["notes"][0]


# -- full run, report, registry tag, URIs --------------------------------------------------------


def test_full_validation_logs_the_report_and_tags_the_version(world: World) -> None:
    client = MlflowClient(world.settings.tracking_uri)
    pipeline = ModelValidationPipeline(world.settings)
    for result, expected in ((world.good["amount"], True), (world.broken["amount"], False)):
        verdicts = pipeline.run_full_validation(result.registry_uri)
        assert set(verdicts) == {"performance", "stability", "fairness", "passed"}
        assert verdicts["passed"] is expected
        local = client.download_artifacts(result.run_id, REPORT_ARTIFACT)
        report = json.loads(Path(local).read_text())
        assert report == json.loads(json.dumps(pipeline.last_report))  # the same, JSON-clean
        assert report["passed"] is expected and report["complete"]
        assert set(report["checks"]) == {"performance", "stability", "fairness"}
        assert report["thresholds"]["max_flip_rate"] == 0.02
        tags = client.get_model_version(result.registered_name, result.version).tags
        assert tags[STATUS_TAG] == ("passed" if expected else "failed")
    assert report["failed_checks"][:2] == ["performance", "stability"]


def test_alias_stage_run_and_logged_model_uris_resolve_to_the_same_model(world: World) -> None:
    cashflow = world.good["cashflow"]
    client = MlflowClient(world.settings.tracking_uri)
    client.set_registered_model_alias(cashflow.registered_name, "staging", cashflow.version)
    pipeline = ModelValidationPipeline(world.settings)
    for uri in (
        f"models:/{cashflow.registered_name}@staging",
        f"models:/{cashflow.registered_name}/Staging",
        f"models:/{cashflow.registered_name}/latest",
        f"runs:/{cashflow.run_id}/model",
        cashflow.model_uri,
    ):
        assert pipeline.validate_model_performance(uri), uri
        assert pipeline.last_report["run_id"] == cashflow.run_id
    assert pipeline.last_report["version"] is None  # a logged-model URI names no version


def test_unknown_or_unloadable_models_raise_one_clear_error(world: World) -> None:
    pipeline = ModelValidationPipeline(world.settings)
    with pytest.raises(ModelNotFoundError, match=r"titans-amount/999 does not exist.*titans"):
        pipeline.validate_model_performance("models:/titans-amount/999")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        pipeline.run_full_validation("models:/no-such-model@production")
    with pytest.raises(InputError, match="not a model URI"):
        pipeline.validate_model_stability("/tmp/some/model.pkl")
    client = MlflowClient(world.settings.tracking_uri)
    empty_run = client.create_run(client.get_experiment_by_name("titans-amount").experiment_id)
    with pytest.raises(ModelNotFoundError, match="could not load") as caught:
        pipeline.validate_model_fairness(f"runs:/{empty_run.info.run_id}/model")
    assert "\n" not in str(caught.value)


# -- CLI -----------------------------------------------------------------------------------------


def _cli(world: World, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from titans.cli import main

    monkeypatch.setenv("TITANS_HOME", str(world.settings.home))
    monkeypatch.delenv("TITANS_TRACKING_URI", raising=False)
    monkeypatch.setattr(sys, "argv", ["titans", *args])
    with pytest.raises(SystemExit) as exited:
        main()
        raise SystemExit(0)
    return int(exited.value.code or 0)


def test_cli_exit_codes_and_failed_checks(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(world, monkeypatch, "validate", world.good["cashflow"].registry_uri) == 0
    out = capsys.readouterr().out
    assert "performance" in out and "passed" in out

    assert _cli(world, monkeypatch, "validate", world.broken["amount"].registry_uri) == 1
    err = capsys.readouterr().err
    assert "validation failed:" in err and "performance" in err and "stability" in err

    assert _cli(world, monkeypatch, "validate", "models:/titans-amount/999") == 1
    assert "does not exist" in capsys.readouterr().err
    assert _cli(world, monkeypatch, "validate", "not-a-uri") == 2
