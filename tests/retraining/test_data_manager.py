"""TrainingDataManager against a real ops store and a real MLflow registry in a temp home:
labelled rows from the prediction log, the training frame and its time split, the checks
that refuse bad training data, and content-addressed data versions (atomic, pruned, logged)."""

from __future__ import annotations

import doctest
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from titans.config import RetrainingSettings, Settings
from titans.data.synth import generate
from titans.data.versions import data_version, read_manifest
from titans.errors import InputError
from titans.retraining import data_manager as data_manager_module
from titans.retraining.data_manager import TrainingDataManager
from titans.serving.schemas import Transaction
from titans.store import Store
from titans.store.models import Feedback, Prediction

T0 = datetime(2024, 5, 1, tzinfo=UTC)
CATEGORY, AMOUNT, ANOMALY = "titans-category", "titans-amount", "titans-anomaly"
KEY = ["date", "description", "amount", "reference"]

TXNS = generate(500, seed=14, start="2024-01-01", days=120)
BASE = TXNS[TXNS["date"] < "2024-03-01"].reset_index(drop=True)
LATER = TXNS[TXNS["date"] >= "2024-03-01"].reset_index(drop=True)
LATER_EXPENSES = LATER[LATER["type"] == "Expense"].reset_index(drop=True)
LATER_INCOME = LATER[LATER["type"] == "Income"].reset_index(drop=True)
BASE_EXPENSE = BASE[BASE["type"] == "Expense"].iloc[[3]].reset_index(drop=True)


def _api_features(row: pd.Series, **override: Any) -> dict[str, Any]:
    """The transaction's fields as the API logs them (Transaction.model_dump(mode="json"))."""
    fields = {
        c: (None if pd.isna(row[c]) else row[c])
        for c in ("type", "description", "amount", "category", "payment_method", "reference")
    }
    fields.update(
        status=None if pd.isna(row["status"]) else row["status"],
        receipt_url=None if pd.isna(row["receipt_url"]) else row["receipt_url"],
        date=row["date"].strftime("%Y-%m-%d"),
        entity_id="customer-1",
    )
    fields.update(override)
    return Transaction(**fields).model_dump(mode="json")


def _spoken(category: str) -> str:
    """A category as a person types it in feedback ('office_supplies' -> 'Office Supplies')."""
    return category.replace("_", " ").title()


@dataclass
class Logged:
    """What the prediction log holds, for the assertions."""

    category_rows: pd.DataFrame  # transactions with category feedback (row 0 relabelled)
    relabelled: str  # row 0's label from its second, later prediction
    since: datetime  # feedback time of category row 40
    until: datetime  # feedback time of category row 90
    cutoff: pd.Timestamp  # a transaction date in the middle of the labelled rows


class PredictionLog:
    """Writes predictions and their feedback straight into the ops store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.minute = 0

    def add(
        self,
        prediction_id: str,
        model_name: str,
        features: dict[str, Any],
        actual: dict[str, Any] | None,
        *,
        arm: str | None = None,
        feedback_at: datetime | None = None,
    ) -> datetime:
        self.minute += 1
        ts = T0 + timedelta(minutes=self.minute)
        given = feedback_at or ts + timedelta(seconds=30)
        with self.store.session() as session:
            session.add(
                Prediction(
                    prediction_id=prediction_id,
                    ts=ts,
                    model_name=model_name,
                    model_version="1",
                    arm=arm,
                    features=features,
                    prediction={"prediction": "x"},
                    latency_ms=1.0,
                )
            )
            session.flush()
            if actual is not None:
                session.add(Feedback(prediction_id=prediction_id, ts=given, actual=actual))
        return given


def _fill_log(store: Store) -> Logged:
    log = PredictionLog(store)
    times = []
    labelled = LATER_EXPENSES.iloc[:120]
    for i, row in labelled.iterrows():
        # the category model is asked without a category; the feedback names it
        features = _api_features(row, category=None)
        times.append(log.add(f"c-{i}", CATEGORY, features, {"category": _spoken(row["category"])}))
    for i, row in LATER_EXPENSES.iloc[120:140].iterrows():  # never labelled
        log.add(f"c-nofeedback-{i}", CATEGORY, _api_features(row, category=None), None)
    first = LATER_EXPENSES.iloc[0]
    relabelled = "travel" if first["category"] != "travel" else "fuel"
    log.add(  # the same transaction asked again; its later feedback wins
        "c-again",
        CATEGORY,
        _api_features(first, category=None),
        {"category": relabelled},
        feedback_at=T0 + timedelta(days=2),
    )
    log.add(  # and again, with feedback that names no category: not a label, changes nothing
        "c-again-unlabelled",
        CATEGORY,
        _api_features(first, category=None),
        {"comment": "wrong"},
        feedback_at=T0 + timedelta(days=3),
    )
    # shadow predictions are not what the client got: never labels
    shadow = LATER_EXPENSES.iloc[140]
    log.add(
        "c-shadow",
        CATEGORY,
        _api_features(shadow, category=None),
        {"category": "rent"},
        arm="shadow",
    )
    b_shadow = LATER_EXPENSES.iloc[141]
    log.add(
        "c-141:shadow",
        CATEGORY,
        _api_features(b_shadow, category=None),
        {"category": "rent"},
        arm="B",
    )
    # a transaction the base data already holds, labelled the same
    known = BASE_EXPENSE.iloc[0]
    log.add(
        "c-known", CATEGORY, _api_features(known, category=None), {"category": known["category"]}
    )
    # other models' feedback
    for i, row in pd.concat([LATER_EXPENSES.iloc[150:170], LATER_INCOME.iloc[:3]]).iterrows():
        log.add(
            f"a-{i}-{row['type']}",
            AMOUNT,
            _api_features(row, amount=0.0),
            {"amount": abs(row["amount"])},
        )
    flags: list[Any] = [True, "false", 1, False, "TRUE"]
    for i, row in LATER_EXPENSES.iloc[170:175].iterrows():
        log.add(f"n-{i}", ANOMALY, _api_features(row), {"is_anomaly": flags[i - 170]})
    log.add("n-nolabel", ANOMALY, _api_features(LATER_EXPENSES.iloc[175]), {"note": "looked odd"})

    rows = pd.concat([labelled, BASE_EXPENSE]).drop(columns="is_anomaly").reset_index(drop=True)
    rows.loc[0, "category"] = relabelled
    return Logged(
        category_rows=rows,
        relabelled=relabelled,
        since=times[40],
        until=times[90],
        cutoff=pd.Timestamp(labelled["date"].iloc[60]),
    )


# `settings` (a temp TITANS_HOME) and `store` (a migrated ops store: SQLite, and Postgres when
# TITANS_TEST_POSTGRES_URL is set) come from tests/conftest.py


@pytest.fixture
def logged(store: Store) -> Logged:
    return _fill_log(store)


@pytest.fixture
def manager(settings: Settings, store: Store) -> TrainingDataManager:
    return TrainingDataManager(settings, store=store)


def _by_content(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


def _register(settings: Settings, name: str, data_version_id: str, alias: str | None = None) -> str:
    """A registered model version (no artifact needed) tagged with the data it learned from."""
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    mv = client.create_model_version(
        name,
        source=str(settings.home_dir / "no-artifact"),
        tags={"titans.data_version": data_version_id},
    )
    if alias is not None:
        client.set_registered_model_alias(name, alias, mv.version)
    return str(mv.version)


# --------------------------------------------------------------------------- labelled rows


def test_labelled_rows_hold_each_labelled_transaction_once_with_its_latest_label(
    manager: TrainingDataManager, logged: Logged
) -> None:
    rows = manager.labelled_rows("category")

    expected = logged.category_rows
    assert len(rows) == len(expected) == 121
    pd.testing.assert_frame_equal(
        _by_content(rows), _by_content(expected), check_dtype=False, check_exact=True
    )
    assert str(rows["date"].dtype) == "datetime64[ns]" and rows["amount"].dtype == np.float64
    assert rows["date"].is_monotonic_increasing
    # spoken feedback ("Office Supplies") is stored as the vocabulary spells it
    assert set(rows["category"]) <= set(TXNS["category"].dropna())
    first = rows[
        (rows["description"] == LATER_EXPENSES["description"][0])
        & (rows["date"] == LATER_EXPENSES["date"][0])
    ]
    assert first["category"].tolist() == [logged.relabelled]
    # shadow rows, unlabelled predictions and other models' feedback stay out
    outside = pd.concat([LATER_EXPENSES.iloc[120:142], LATER_EXPENSES.iloc[150:176]])
    merged = rows.merge(outside[KEY], on=KEY)
    assert merged.empty
    # the registered name works as well as the key
    assert len(manager.labelled_rows(CATEGORY)) == 121


def test_labelled_rows_put_amount_and_anomaly_labels_in_their_columns(
    manager: TrainingDataManager, logged: Logged
) -> None:
    amounts = manager.labelled_rows("amount")
    truth = pd.concat([LATER_EXPENSES.iloc[150:170], LATER_INCOME.iloc[:3]])
    assert len(amounts) == 23
    got = _by_content(amounts)["amount"].to_numpy()
    # logged with amount 0.0; the absolute amount fed back is signed by type again
    assert np.array_equal(got, _by_content(truth)["amount"].to_numpy())
    assert (amounts.loc[amounts["type"] == "Income", "amount"] > 0).sum() == 3
    assert (amounts.loc[amounts["type"] == "Expense", "amount"] < 0).sum() == 20

    anomalies = manager.labelled_rows("anomaly")
    assert anomalies["is_anomaly"].dtype == bool
    truth_flags = LATER_EXPENSES.iloc[170:175][KEY].assign(flag=[True, False, True, False, True])
    joined = anomalies.merge(truth_flags, on=KEY, how="outer", indicator=True)
    assert (joined["_merge"] == "both").all()
    assert joined["is_anomaly"].tolist() == joined["flag"].tolist()
    assert len(anomalies) == 5  # the feedback without an is_anomaly field is no label
    assert manager.labelled_rows("cashflow").empty


def test_labelled_rows_since_until_bound_the_feedback_time(
    manager: TrainingDataManager, logged: Logged
) -> None:
    window = manager.labelled_rows("category", since=logged.since, until=logged.until)
    expected = LATER_EXPENSES.iloc[40:90].drop(columns="is_anomaly")
    assert len(window) == 50
    pd.testing.assert_frame_equal(_by_content(window), _by_content(expected), check_dtype=False)
    # from row 90 on, plus the two labelled later (row 0 again, the base's transaction)
    assert len(manager.labelled_rows("category", since=logged.until)) == 30 + 2
    with pytest.raises(InputError, match="timezone-aware"):
        manager.labelled_rows("category", since=datetime(2024, 5, 1))
    with pytest.raises(InputError, match="unknown model"):
        manager.labelled_rows("forecast")


# --------------------------------------------------------------------------- the training frame


def test_prepare_joins_base_and_labelled_rows_once_each_split_by_time(
    manager: TrainingDataManager, logged: Logged
) -> None:
    data = manager.prepare_training_data("category", base_data=BASE)

    # the labelled copy of a base transaction is not added again
    assert len(data) == len(BASE) + 120
    assert not data.drop(columns="split").duplicated().any()
    assert data["date"].is_monotonic_increasing
    content = data.drop(columns="split")
    base_part = content.merge(BASE.drop(columns="is_anomaly"), on=list(BASE.columns[:-1]))
    assert len(base_part) == len(BASE)

    validation = data[data["split"] == "validation"]
    train = data[data["split"] == "train"]
    assert len(validation) == round(0.2 * len(data))
    assert validation.index.min() == len(train)  # the newest rows, never shuffled
    assert validation["date"].min() >= train["date"].max()


def test_prepare_respects_the_cutoff_and_the_validation_fraction(
    titans_home: Path, store: Store, logged: Logged
) -> None:
    settings = Settings(home=titans_home, retraining=RetrainingSettings(validation_fraction=0.3))
    manager = TrainingDataManager(settings, store=store)
    cutoff = logged.cutoff
    # base rows after the cutoff stay: the cutoff bounds the labels, not what was learned before
    late_base = LATER_INCOME[LATER_INCOME["date"] > cutoff].iloc[3:6]
    base = pd.concat([BASE, late_base])
    data = manager.prepare_training_data("category", cutoff.strftime("%Y-%m-%d"), base_data=base)

    new_before_cutoff = int((logged.category_rows["date"] <= cutoff).sum()) - 1  # less the known
    assert len(late_base) == 3
    assert len(data) == len(BASE) + 3 + new_before_cutoff
    after = data[data["date"] > cutoff].drop(columns="split")
    pd.testing.assert_frame_equal(
        _by_content(after), _by_content(late_base), check_dtype=False, check_exact=True
    )
    assert (data["split"] == "validation").sum() == round(0.3 * len(data))
    same = manager.prepare_training_data("category", cutoff.to_pydatetime(), base_data=base)
    pd.testing.assert_frame_equal(same, data)
    with pytest.raises(InputError, match="cutoff_date"):
        manager.prepare_training_data("category", "not a date", base_data=BASE)


def test_prepare_without_base_data_reads_the_production_version_data(
    settings: Settings, manager: TrainingDataManager, logged: Logged
) -> None:
    with pytest.raises(InputError, match="base_data"):
        manager.prepare_training_data("category")  # no production version yet

    _register(settings, CATEGORY, "0123456789abcdef", alias="production")
    with pytest.raises(InputError, match=r"0123456789abcdef .*not stored.*base_data"):
        manager.prepare_training_data("category")

    stored = manager.manage_data_versions(BASE)
    _register(settings, CATEGORY, stored.version, alias="production")
    data = manager.prepare_training_data("category")
    pd.testing.assert_frame_equal(data, manager.prepare_training_data("category", base_data=BASE))
    # the distribution check compares with that same data by default
    assert manager.validate_training_data(data, model_name="category")
    assert stored.version in manager.last_check.checks["distribution"]["previous"]


# --------------------------------------------------------------------------- checks


@pytest.fixture
def prepared(manager: TrainingDataManager, logged: Logged) -> pd.DataFrame:
    return manager.prepare_training_data("category", base_data=BASE)


def _failed(manager: TrainingDataManager) -> list[str]:
    assert manager.last_check is not None
    return sorted({line.split(":", 1)[0] for line in manager.last_check.failures})


def test_clean_training_data_passes_every_check(
    manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    assert manager.validate_training_data(prepared, model_name="category", previous=BASE)
    check = manager.last_check
    assert check is not None and check.passed and check.failures == []
    assert check.checks["labels"]["coverage"] == 1.0
    assert check.checks["split"]["validation"] == round(0.2 * len(prepared))
    assert max(check.checks["distribution"]["scores"].values()) < 0.5


def test_rows_breaking_the_schema_beyond_the_limit_fail(
    manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    broken = prepared.copy()
    expenses = broken.index[broken["type"] == "Expense"]
    broken.loc[expenses[:8], "payment_method"] = "bitcoin"  # ~2.5 %: within the 5 % allowed
    assert manager.validate_training_data(broken, model_name="category", previous=BASE)
    assert manager.last_check.checks["schema"]["rejected_rows"] == 8

    broken.loc[expenses[:40], "payment_method"] = "bitcoin"  # ~12 %
    assert not manager.validate_training_data(broken, model_name="category", previous=BASE)
    assert _failed(manager) == ["schema"]
    (line,) = manager.last_check.failures
    assert "40 of" in line and "payment_method 40" in line and "above the allowed 5.0%" in line


def test_missing_labels_fail(manager: TrainingDataManager, logged: Logged) -> None:
    data = manager.prepare_training_data("anomaly", base_data=BASE)
    assert manager.validate_training_data(data, model_name="anomaly", previous=BASE)
    unlabelled = data.copy()
    unlabelled["is_anomaly"] = unlabelled["is_anomaly"].astype("boolean")
    unlabelled.loc[unlabelled.index[::4], "is_anomaly"] = pd.NA  # 25 % without a label
    assert not manager.validate_training_data(unlabelled, model_name="anomaly", previous=BASE)
    assert _failed(manager) == ["labels"]
    assert "below the required 90%" in manager.last_check.failures[0]
    assert manager.last_check.checks["labels"]["coverage"] == pytest.approx(0.75, abs=0.01)


def test_unknown_categories_fail_both_schema_and_labels(
    manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    wrong = prepared.copy()
    expenses = wrong.index[wrong["type"] == "Expense"]
    wrong.loc[expenses[: len(expenses) // 8], "category"] = "snacks"
    assert not manager.validate_training_data(wrong, model_name="category", previous=BASE)
    assert _failed(manager) == ["labels", "schema"]
    labels = next(f for f in manager.last_check.failures if f.startswith("labels"))
    assert "carry a known category" in labels


def test_an_empty_split_fails(manager: TrainingDataManager, prepared: pd.DataFrame) -> None:
    all_train = prepared.assign(split="train")
    assert not manager.validate_training_data(all_train, model_name="category", previous=BASE)
    assert _failed(manager) == ["split"]
    assert "the validation split is empty" in manager.last_check.failures[0]
    assert not manager.validate_training_data(prepared.drop(columns="split"), previous=BASE)
    assert _failed(manager) == ["split"]


def test_a_strong_distribution_shift_fails_naming_the_columns(
    manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    inflated = prepared.assign(amount=prepared["amount"] * 5)
    assert not manager.validate_training_data(inflated, model_name="category", previous=BASE)
    assert _failed(manager) == ["distribution"]
    moved = manager.last_check.checks["distribution"]["moved"]
    assert set(moved) == {"amount", "log_abs_amount"}
    assert "amount wasserstein" in manager.last_check.failures[0]


def test_missing_columns_and_empty_frames_fail(manager: TrainingDataManager) -> None:
    assert not manager.validate_training_data(BASE.drop(columns=["reference"]))
    assert manager.last_check.failures[0].startswith("completeness: columns reference")
    assert not manager.validate_training_data(BASE.iloc[:0].assign(split="train"))
    assert _failed(manager) == ["rows"]


# --------------------------------------------------------------------------- versions


def test_same_content_gives_the_same_version_written_once(
    manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    info = manager.manage_data_versions(prepared)
    assert info.created
    assert info.version == data_version(prepared.drop(columns="split"))
    assert info.path == manager.versions_dir / info.version / "data.parquet"
    assert info.path.is_file() and info.manifest_path.is_file()
    manifest = read_manifest(info.manifest_path)
    assert (manifest.version, manifest.rows) == (info.version, len(prepared))
    assert "split" not in manifest.columns
    stored = pd.read_parquet(info.path)
    assert data_version(stored) == info.version
    assert read_manifest(manager.versions_dir / f"{info.version}.json").version == info.version

    shuffled = prepared.sample(frac=1.0, random_state=1).assign(split="validation")
    again = manager.manage_data_versions(shuffled, version=info.version)
    assert (again.version, again.created, again.rows) == (info.version, False, len(prepared))
    assert [v.version for v in manager.list_versions()] == [info.version]
    with pytest.raises(InputError, match="does not match the content hash"):
        manager.manage_data_versions(prepared, version="0" * 16)


def test_a_crash_mid_write_leaves_no_version(
    manager: TrainingDataManager, prepared: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(self: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full_disk)
    with pytest.raises(OSError, match="No space left"):
        manager.manage_data_versions(prepared)
    assert list(manager.versions_dir.iterdir()) == []
    assert manager.list_versions() == []

    monkeypatch.undo()
    assert manager.manage_data_versions(prepared).created  # nothing half-written in the way


def test_pruning_keeps_the_newest_and_every_version_a_model_used(
    titans_home: Path, store: Store
) -> None:
    settings = Settings(home=titans_home, retraining=RetrainingSettings(data_retention=2))
    manager = TrainingDataManager(settings, store=store)
    first, second, third, fourth = (
        manager.manage_data_versions(TXNS.iloc[: 100 + 10 * k]) for k in range(4)
    )
    assert [v.version for v in manager.list_versions()] == [
        fourth.version,
        third.version,
    ]  # no model used the first two: pruned as the newer ones came

    fifth = manager.manage_data_versions(TXNS.iloc[:200])
    _register(settings, CATEGORY, fifth.version)
    _register(settings, "other-model", fourth.version)  # not a titans-* model: protects nothing
    sixth = manager.manage_data_versions(TXNS.iloc[:210])
    seventh = manager.manage_data_versions(TXNS.iloc[:220])
    assert [v.version for v in manager.list_versions()] == [
        seventh.version,
        sixth.version,
        fifth.version,
    ]
    for gone in (first, second, third, fourth):
        assert not (manager.versions_dir / gone.version).exists()
        assert not (manager.versions_dir / f"{gone.version}.json").exists()
    assert pd.read_parquet(fifth.path).shape[0] == 200


def test_nothing_is_pruned_when_the_registry_cannot_be_read(
    titans_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=titans_home, retraining=RetrainingSettings(data_retention=1))
    manager = TrainingDataManager(settings, store=store)

    def outage(self: TrainingDataManager) -> set[str]:
        raise ConnectionError("registry down")

    monkeypatch.setattr(TrainingDataManager, "registered_data_versions", outage)
    for k in range(3):
        manager.manage_data_versions(TXNS.iloc[: 100 + k])
    assert len(manager.list_versions()) == 3


def test_inside_an_mlflow_run_the_version_is_logged_as_the_training_input(
    settings: Settings, manager: TrainingDataManager, prepared: pd.DataFrame
) -> None:
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        with mlflow.start_run() as run:
            info = manager.manage_data_versions(prepared)
        inputs = MlflowClient(settings.tracking_uri).get_run(run.info.run_id).inputs
    finally:
        mlflow.set_tracking_uri(previous_uri)
    (logged_input,) = inputs.dataset_inputs
    assert logged_input.dataset.name == f"training-{info.version}"
    assert logged_input.dataset.digest == info.version
    assert {t.key: t.value for t in logged_input.tags}["mlflow.data.context"] == "training"
    assert str(info.path) in logged_input.dataset.source


def test_docstring_examples() -> None:
    result = doctest.testmod(data_manager_module)
    assert result.attempted >= 3 and result.failed == 0
