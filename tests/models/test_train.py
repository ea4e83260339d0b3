"""Training end to end on the embedded stores: MLflow runs, registered versions, artifacts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from titans.config import Settings
from titans.data.synth import generate
from titans.data.versions import data_version
from titans.models.train import TrainingResult, train_models
from titans.monitoring.profile import PROFILE_FILENAME, ReferenceProfile

ROWS = 6_000


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Settings, pd.DataFrame, list[TrainingResult]]:
    home = tmp_path_factory.mktemp("train-home")
    settings = Settings(home=home)
    frame = generate(ROWS, seed=11)
    return settings, frame, train_models(frame, seed=11, settings=settings)


def test_every_model_is_registered_with_tags_and_beats_its_baseline(trained) -> None:
    settings, frame, results = trained
    client = MlflowClient(settings.tracking_uri)
    assert [r.model_key for r in results] == ["category", "amount", "anomaly", "cashflow"]
    for r in results:
        assert r.evaluation.beats_baseline, (r.model_key, r.evaluation.to_dict())
        mv = client.get_model_version(r.registered_name, r.version)
        assert mv.tags["stage"] == "None"
        assert mv.tags["titans.data_version"] == data_version(frame)
        assert mv.tags["titans.seed"] == "11"
        assert r.evaluation.primary_metric in mv.tags["titans.metrics"]
        run = client.get_run(r.run_id)
        assert f"baseline_{r.evaluation.primary_metric}" in run.data.metrics
        assert "margin_over_baseline" in run.data.metrics
        assert run.data.params["seed"] == "11"
        digests = [d.dataset.digest for d in run.inputs.dataset_inputs]
        assert digests == [data_version(frame)[:36]]


def test_reference_profile_travels_with_the_model_and_is_compact(trained) -> None:
    settings, _frame, results = trained
    client = MlflowClient(settings.tracking_uri)
    for r in results:
        local = Path(client.download_artifacts(r.run_id, PROFILE_FILENAME))
        assert local.stat().st_size < 400_000
        profile = ReferenceProfile.load(local)
        assert profile.columns["amount"].count > 0
        assert len(profile.columns["amount"].quantiles) == 1001
        if r.model_key != "cashflow":
            assert "prediction" in profile.columns


def test_logged_category_model_predicts_raw_export_rows_in_a_fresh_process(trained) -> None:
    settings, _frame, results = trained
    version = next(r.version for r in results if r.model_key == "category")
    script = textwrap.dedent(
        f"""
        import json, mlflow, pandas as pd
        mlflow.set_tracking_uri({settings.tracking_uri!r})
        model = mlflow.pyfunc.load_model("models:/titans-category/{version}")
        df = pd.DataFrame({{
            "Date": ["2024-05-02", "2024-05-03"],
            "Type": ["Expense", "Expense"],
            "Description": ["Adobe Creative Cloud monthly subscription", "Shell fuel station"],
            "Amount": ["-54.99", -80],
            "Payment Method": ["credit_card", None],
            "Status": ["paid", "paid"],
            "Reference": ["Adobe", "Shell"],
        }})
        print(json.dumps(model.predict(df)["prediction"].tolist()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    predictions = json.loads(out.stdout.strip().splitlines()[-1])
    from titans.data.columns import EXPENSE_CATEGORIES

    assert len(predictions) == 2
    assert all(p in EXPENSE_CATEGORIES for p in predictions)


def test_same_data_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    frame = generate(3_000, seed=5)
    first = train_models(
        frame, models=["amount", "category"], seed=3, settings=Settings(home=tmp_path / "a")
    )
    second = train_models(
        frame, models=["amount", "category"], seed=3, settings=Settings(home=tmp_path / "b")
    )
    assert [r.evaluation.metrics for r in first] == [r.evaluation.metrics for r in second]


def test_messy_120_row_export_trains_all_four(tmp_path: Path) -> None:
    from titans.data.io import load_transactions

    fixture = Path(__file__).parents[1] / "fixtures" / "messy_export_120.csv"
    frame = load_transactions(fixture, max_bad_share=0.5)
    results = train_models(frame, seed=1, settings=Settings(home=tmp_path))
    assert len(results) == 4
    category = next(r for r in results if r.model_key == "category")
    assert any("other" in w for w in category.warnings), category.warnings
