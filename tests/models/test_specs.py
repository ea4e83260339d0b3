"""The four model specs: they beat their baselines, repeat themselves, and survive messy data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from titans.config import Settings
from titans.data.columns import EXPENSE_CATEGORIES
from titans.data.synth import generate
from titans.errors import InputError
from titans.models.base import get_spec, model_names

from .conftest import SEED, Fitted

KEYS = model_names()


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Metric dicts equal, NaN equal to NaN."""
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a
    )


def _odd_rows(template: pd.DataFrame) -> pd.DataFrame:
    """Rows a model never saw: unknown and misspelt values, blanks, a missing amount."""
    rows = template.head(6).copy().reset_index(drop=True)
    rows.loc[0, ["reference", "description"]] = ["Zyxwv Never Seen GmbH", "qqq zzz 123"]
    rows.loc[1, ["payment_method", "category", "status"]] = ["credit_car", "teleportation", "??"]
    rows.loc[2, ["description", "reference", "payment_method"]] = [None, None, None]
    rows.loc[3, "amount"] = np.nan
    rows.loc[4, "date"] = pd.NaT
    rows.loc[5, "type"] = None
    return rows


# ----------------------------------------------------------------------------- every spec


@pytest.mark.parametrize("key", KEYS)
def test_model_beats_its_baseline(fitted: dict[str, Fitted], key: str) -> None:
    evaluation = fitted[key].evaluation
    assert evaluation.primary_metric in evaluation.metrics
    assert evaluation.primary_metric in evaluation.baseline_metrics
    assert evaluation.beats_baseline, evaluation.to_dict()


def test_split_trains_on_the_past_and_tests_on_the_latest_period(
    fitted: dict[str, Fitted],
) -> None:
    for key, f in fitted.items():
        assert len(f.train) and len(f.test), key
        assert f.train["date"].max() < f.test["date"].min(), key


def test_same_data_and_seed_give_identical_metrics(spec_settings: Settings) -> None:
    frame = generate(3_000, seed=5)
    for key in KEYS:
        spec = get_spec(key, spec_settings)
        train, test = spec.split(frame)
        first = spec.evaluation(spec.fit(train, seed=3), train, test)
        second = spec.evaluation(spec.fit(train, seed=3), train, test)
        assert _same(first.metrics, second.metrics), key
        assert _same(first.baseline_metrics, second.baseline_metrics), key


@pytest.mark.parametrize("key", KEYS)
def test_messy_export_trains_and_predicts(
    messy: pd.DataFrame, spec_settings: Settings, key: str
) -> None:
    spec = get_spec(key, spec_settings)
    train, test = spec.split(messy)
    model = spec.fit(train, seed=SEED)
    evaluation = spec.evaluation(model, train, test)
    assert spec.primary_metric in evaluation.metrics
    out = spec.predict(model, messy)
    assert len(out) == (30 if key == "cashflow" else len(messy))


def test_messy_export_reports_the_categories_merged_into_other(
    messy: pd.DataFrame, spec_settings: Settings
) -> None:
    spec = get_spec("category", spec_settings)
    train, test = spec.split(messy)
    model = spec.fit(train, seed=SEED)
    counts = spec.select(train)["category"].value_counts()
    rare = sorted(set(counts[counts < spec_settings.min_class_examples].index) - {"other"})
    assert rare, "the fixture should hold categories with too few examples"
    (warning,) = [w for w in model.warnings if "merged into 'other'" in w]
    assert all(category in warning for category in rare)
    predicted = set(spec.predict(model, messy)["prediction"])
    assert not predicted & set(rare)
    assert spec.evaluation(model, train, test).report["merged_into_other"]


@pytest.mark.parametrize("key", ["category", "amount", "anomaly"])
def test_unseen_and_missing_values_predict_finite_values(
    fitted: dict[str, Fitted], ledger: pd.DataFrame, key: str
) -> None:
    f = fitted[key]
    odd = _odd_rows(f.spec.select(ledger))
    out = f.spec.predict(f.model, odd)
    assert len(out) == len(odd)
    assert list(out.index) == list(odd.index)
    numeric = out.select_dtypes("number").to_numpy(dtype=np.float64)
    assert numeric.shape[1] > 0 and np.isfinite(numeric).all()


@pytest.mark.parametrize("key", ["category", "amount", "anomaly"])
def test_predict_on_no_rows_gives_no_rows(fitted: dict[str, Fitted], key: str) -> None:
    f = fitted[key]
    assert len(f.spec.predict(f.model, f.test.iloc[:0])) == 0


# ----------------------------------------------------------------------------- category


def test_category_predicts_a_known_category_with_probabilities(
    fitted: dict[str, Fitted], ledger: pd.DataFrame
) -> None:
    f = fitted["category"]
    out = f.spec.predict(f.model, pd.concat([f.test.head(50), _odd_rows(ledger)]))
    assert set(out["prediction"]) <= set(EXPENSE_CATEGORIES)
    probas = out.filter(like="proba_")
    assert probas.shape[1] == f.model.params["n_classes"]
    np.testing.assert_allclose(probas.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["probability"], probas.max(axis=1))


def test_category_reports_both_baselines_and_per_class_scores(fitted: dict[str, Fitted]) -> None:
    evaluation = fitted["category"].evaluation
    base = evaluation.baseline_metrics
    assert base["macro_f1"] == max(base["majority_macro_f1"], base["reference_macro_f1"])
    assert base["reference_macro_f1"] > base["majority_macro_f1"]
    per_class = evaluation.report["per_class"]
    assert {"food", "rent", "macro avg"} <= set(per_class)
    assert 0 <= evaluation.metrics["accuracy"] <= 1


def test_category_with_one_class_still_trains(spec_settings: Settings) -> None:
    frame = generate(2_000, seed=2)
    only_food = frame[frame["category"] == "food"]
    spec = get_spec("category", spec_settings)
    model = spec.fit(only_food, seed=1)
    assert any("only one class" in w for w in model.warnings)
    assert set(spec.predict(model, frame.head(20))["prediction"]) == {"food"}


# ----------------------------------------------------------------------------- amount


def test_amount_predicts_positive_amounts_inside_their_interval(fitted: dict[str, Fitted]) -> None:
    f = fitted["amount"]
    out = f.spec.predict(f.model, f.test)
    assert (out["prediction"] > 0).all()
    assert (out["lower"] <= out["prediction"]).all() and (out["prediction"] <= out["upper"]).all()
    coverage = f.evaluation.metrics["interval_coverage"]
    assert 0.6 < coverage < 0.95  # an 80% interval, measured on unseen rows


# ----------------------------------------------------------------------------- anomaly


def test_anomaly_flags_the_alert_rate_share_and_ranks_a_spike_above_the_original(
    fitted: dict[str, Fitted], spec_settings: Settings
) -> None:
    f = fitted["anomaly"]
    train_flags = f.spec.predict(f.model, f.train)["is_anomaly"]
    assert train_flags.mean() == pytest.approx(spec_settings.anomaly_alert_rate, abs=0.005)

    normal = f.test[(f.test["type"] == "Expense") & ~f.test["is_anomaly"]].head(200)
    spiked = normal.assign(amount=normal["amount"] * 30)
    before = f.spec.predict(f.model, normal)["score"].to_numpy()
    after = f.spec.predict(f.model, spiked)["score"].to_numpy()
    assert (after > before).mean() > 0.9
    assert f.spec.predict(f.model, spiked)["is_anomaly"].mean() > 0.5


def test_anomaly_without_labels_reports_nan_and_says_why(
    fitted: dict[str, Fitted],
) -> None:
    f = fitted["anomaly"]
    unlabelled = f.test.drop(columns="is_anomaly")
    evaluation = f.spec.evaluation(f.model, f.train.drop(columns="is_anomaly"), unlabelled)
    assert math.isnan(evaluation.metrics["pr_auc"])
    assert not evaluation.beats_baseline
    assert 0 <= evaluation.metrics["flagged_share"] <= 1
    assert "labels" in evaluation.report["warnings"][0]


# ----------------------------------------------------------------------------- cashflow


def test_cashflow_forecasts_the_30_days_after_the_history(fitted: dict[str, Fitted]) -> None:
    f = fitted["cashflow"]
    history = f.test
    out = f.spec.predict(f.model, history)
    expected = pd.date_range(history["date"].max() + pd.Timedelta(days=1), periods=30, freq="D")
    assert list(out.columns) == ["date", "prediction", "lower", "upper"]
    assert list(out["date"]) == list(expected)
    values = out[["prediction", "lower", "upper"]].to_numpy()
    assert np.isfinite(values).all()
    assert (out["lower"] <= out["prediction"]).all() and (out["prediction"] <= out["upper"]).all()


def test_cashflow_forecasts_from_a_tiny_or_empty_history(fitted: dict[str, Fitted]) -> None:
    f = fitted["cashflow"]
    tiny = f.test.head(3)
    assert len(f.spec.predict(f.model, tiny)) == 30
    after_training = f.spec.predict(f.model, f.test.iloc[:0])
    assert after_training["date"].iloc[0] == f.train["date"].max() + pd.Timedelta(days=1)


def test_cashflow_history_without_amounts_is_refused(fitted: dict[str, Fitted]) -> None:
    f = fitted["cashflow"]
    with pytest.raises(InputError, match="amount"):
        f.spec.predict(f.model, f.test[["date", "type"]])


def test_cashflow_test_period_is_the_last_30_days(fitted: dict[str, Fitted]) -> None:
    f = fitted["cashflow"]
    days = f.test["date"].dt.normalize()
    assert (days.max() - days.min()).days == 29
    assert f.evaluation.metrics["horizon_days"] == 30


def test_anomaly_features_of_one_record_match_the_batch_path(
    fitted: dict[str, Fitted], ledger: pd.DataFrame
) -> None:
    features = fitted["anomaly"].model.state["pipeline"][0]
    rows = pd.concat([ledger.head(20), _odd_rows(ledger)]).drop(columns="is_anomaly")
    batch = features.transform(rows)
    for i, record in enumerate(rows.to_dict("records")):
        np.testing.assert_allclose(features.transform_one(record)[0], batch[i], rtol=1e-9)
