"""DataQualityMonitor on generated transactions: clean data scores high, injected faults lower the
score and are named, and a report over logged predictions is built from the ops store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeRegressor
from sqlalchemy import insert, select

from titans.data.synth import generate
from titans.errors import InputError
from titans.monitoring.data_quality import DataQualityMonitor
from titans.monitoring.profile import ReferenceProfile, monitored_view
from titans.serving.prediction_log import PredictionRecord
from titans.store import Store
from titans.store.models import Prediction


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate(4000, seed=11)


@pytest.fixture(scope="module")
def faulty() -> pd.DataFrame:
    return generate(4000, seed=11, drifts=["quality_faults@2024-01-01:0.3"])


def _faulty_columns(result: dict[str, Any]) -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for fault in result["faults"]:
        named.setdefault(fault["check"], set()).add(fault["column"])
    return named


def test_clean_generated_data_scores_high(clean: pd.DataFrame) -> None:
    result = DataQualityMonitor().monitor_input_quality(clean)

    assert result["rows"] == 4000
    assert result["quality_score"] >= 0.95
    assert result["unknown_categories"] == {}
    assert result["completeness"]["description"] == 1.0
    assert result["ranges"]["sign_for_type"] == 0
    assert result["thresholds"]["outlier_robust_z"] == 3.5


def test_quality_faults_lower_the_score_and_name_the_columns(
    clean: pd.DataFrame, faulty: pd.DataFrame
) -> None:
    monitor = DataQualityMonitor()
    good = monitor.monitor_input_quality(clean)
    bad = monitor.monitor_input_quality(faulty)

    assert bad["quality_score"] < good["quality_score"] - 0.01
    named = _faulty_columns(bad)
    assert named["missing"] == {"description", "payment_method"}
    assert named["unknown_category"] == {"category", "payment_method"}
    assert "amount" in named["sign_for_type"] and "amount" in named["outlier"]
    for check in ("completeness", "ranges", "outliers", "categories"):
        assert bad["breakdown"][check] < good["breakdown"][check], check
    assert bad["completeness"]["description"] < 1.0
    assert good["alert_metrics"] == {"missing_share": 0.0, "bad_row_share": 0.0}
    # 30 % of expense rows get one fault each; all but absurd amounts break the schema
    expense_share = float((faulty["type"] == "Expense").mean())
    assert bad["alert_metrics"]["bad_row_share"] == pytest.approx(
        0.3 * expense_share * 5 / 6, abs=0.02
    )


def test_unknown_categories_are_listed_with_counts(faulty: pd.DataFrame) -> None:
    result = DataQualityMonitor().monitor_input_quality(faulty)

    unknown = result["unknown_categories"]
    truncated = {"credit_car", "debit_car", "bank_transfe", "cas", "chec", "paypa"}
    assert set(unknown["payment_method"]) <= truncated and unknown["payment_method"]
    expected = (faulty["payment_method"].isin(list(truncated))).sum()
    assert sum(unknown["payment_method"].values()) == expected
    assert "sofware" in unknown["category"] or "maintainance" in unknown["category"]


def test_duplicates_are_counted(clean: pd.DataFrame) -> None:
    monitor = DataQualityMonitor()
    before = monitor.monitor_input_quality(clean)["duplicates"]
    doubled = pd.concat([clean, clean.iloc[:25]], ignore_index=True)

    result = monitor.monitor_input_quality(doubled)

    assert result["duplicates"] == before + 25
    assert result["breakdown"]["duplicates"] < 1.0


def test_amounts_outside_the_reference_range_are_reported(clean: pd.DataFrame) -> None:
    profile = ReferenceProfile.from_frame(monitored_view(clean))
    current = clean.copy()
    expense = current.index[current["type"] == "Expense"][:7]
    current.loc[expense, "amount"] = -1e9

    result = DataQualityMonitor(reference_profile=profile).monitor_input_quality(current)

    assert result["ranges"]["out_of_reference_range"] == 7
    assert "amount" in _faulty_columns(result)["out_of_reference_range"]


def test_export_headers_are_accepted_and_a_frame_without_required_columns_is_refused(
    clean: pd.DataFrame,
) -> None:
    headers = clean.rename(columns={"payment_method": "Payment Method", "amount": "Amount"})
    assert DataQualityMonitor().monitor_input_quality(headers)["quality_score"] >= 0.95
    with pytest.raises(InputError, match="amount"):
        DataQualityMonitor().monitor_input_quality(clean.drop(columns=["amount"]))


def _numeric_features(frame: pd.DataFrame) -> pd.DataFrame:
    view = monitored_view(frame)
    return view[["log_abs_amount", "day_of_month", "description_length"]].fillna(0.0)


def test_feature_quality_reports_missing_correlation_change_and_importance_drift(
    clean: pd.DataFrame,
) -> None:
    reference = _numeric_features(clean)
    rng = np.random.default_rng(0)
    target_ref = reference["log_abs_amount"] * 2.0 + rng.normal(0, 0.1, len(reference))
    model = DecisionTreeRegressor(max_depth=5, random_state=0).fit(reference, target_ref)
    current = reference.copy()
    # the amount no longer explains the target: its importance collapses
    target_now = pd.Series(rng.normal(0, 1, len(current)), index=current.index)
    current["day_of_month"] = current["log_abs_amount"] * 3.0  # a new strong correlation
    current.loc[current.index[:40], "description_length"] = np.nan

    monitor = DataQualityMonitor(reference_features=reference)
    result = monitor.monitor_feature_quality(
        current, model=model, target=target_now, reference_target=target_ref
    )

    assert result["missing"]["description_length"] == pytest.approx(40 / len(current))
    assert "log_abs_amount~day_of_month" in result["correlation"]["changed_pairs"]
    assert "log_abs_amount" in result["importance_drift"]["dropped_features"]
    assert result["distribution"]["log_abs_amount"]["50%"] > 0

    without_model = monitor.monitor_feature_quality(current)
    assert "no model" in without_model["importance_drift"]["skipped"]


def _log(store: Store, frame: pd.DataFrame, model: str, ts: datetime) -> None:
    records = (
        frame.drop(columns=["is_anomaly"])
        .assign(date=frame["date"].dt.strftime("%Y-%m-%d"))
        .astype(object)
        .where(frame.drop(columns=["is_anomaly"]).notna(), None)
        .to_dict("records")
    )
    rows = [
        PredictionRecord(
            model_name=model,
            model_version="1",
            features=features,
            prediction={"value": 0},
            latency_ms=1.0,
            ts=ts + timedelta(seconds=i),
        ).to_row()
        for i, features in enumerate(records)
    ]
    with store.session() as session:
        session.execute(insert(Prediction), rows)


def test_report_reads_logged_predictions_of_the_period_and_writes_html(
    tmp_path: Path, clean: pd.DataFrame, faulty: pd.DataFrame
) -> None:
    store = Store(url=f"sqlite:///{tmp_path / 'titans.db'}")
    start = datetime(2026, 11, 1, tzinfo=UTC)
    _log(store, clean.iloc[:150], "category", start)
    _log(store, faulty.iloc[-120:], "amount", start + timedelta(hours=1))
    _log(store, faulty.iloc[:50], "category", start + timedelta(days=3))  # outside the period
    with store.session() as session:  # a shadow score re-reads a served input: not counted
        served = session.scalars(
            select(Prediction).where(Prediction.ts < start + timedelta(hours=1))
        )
        first = next(iter(served))
        session.add(
            Prediction(
                prediction_id=f"{first.prediction_id}:shadow",
                ts=first.ts,
                model_name=first.model_name,
                model_version="2",
                arm="B",
                features=first.features,
                prediction=first.prediction,
                latency_ms=1.0,
            )
        )
    html = tmp_path / "reports" / "quality.html"

    report = DataQualityMonitor(store=store).generate_quality_report(
        (start, start + timedelta(days=1)), html_path=html
    )

    assert report["predictions"] == 270
    assert report["predictions_by_model"] == {"category": 150, "amount": 120}
    assert report["input_quality"]["rows"] == 270
    assert report["input_quality"]["quality_score"] < 1.0
    page = html.read_text(encoding="utf-8")
    for title in ("Summary", "Score breakdown", "Faults", "Completeness", "Thresholds"):
        assert f"<h2>{title}</h2>" in page
    assert "http://" not in page and "https://" not in page.split("<body>")[0]

    only_amount = DataQualityMonitor(store=store).generate_quality_report(
        (start, start + timedelta(days=1)), model_name="amount"
    )
    assert only_amount["predictions"] == 120
    empty = DataQualityMonitor(store=store).generate_quality_report(
        (start - timedelta(days=9), start - timedelta(days=8))
    )
    assert empty["predictions"] == 0 and empty["input_quality"]["rows"] == 0
    with pytest.raises(InputError, match="swap"):
        DataQualityMonitor(store=store).generate_quality_report((start, start))
    with pytest.raises(InputError, match="timezone"):
        DataQualityMonitor(store=store).generate_quality_report(
            (datetime(2026, 11, 1), datetime(2026, 11, 2))
        )
