"""The fast single-row predictors give what the batch path gives, row by row, messy rows too."""

from __future__ import annotations

import datetime as dt
import doctest
import math
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from titans.config import Settings
from titans.data.columns import EXPENSE_CATEGORIES, PAYMENT_METHODS, STATUSES
from titans.data.synth import generate
from titans.errors import InputError
from titans.models import fast
from titans.models.base import TrainedModel, get_spec
from titans.models.fast import AmountPredictor, CategoryPredictor, FastPredictor, fast_predictor
from titans.models.inputs import typed_frame

from .conftest import Fitted

KEYS = ("category", "amount", "anomaly")
CLEAN_ROWS = 2_600
MESSY_ROWS = 700
#: messy rows also checked one at a time through the literal single-row batch path
SINGLE_ROW_CHECKS = 60


def raw_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: ISO date text, None for missing, no label column."""
    frame = frame.drop(columns=["is_anomaly"], errors="ignore").copy()
    frame["date"] = frame["date"].dt.strftime("%Y-%m-%d")
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


MESSY_DATES: list[Any] = [
    "2024-02-29",  # leap day
    "2023-12-31",  # year end, a Sunday
    "2024-06-30",  # month end, a Sunday
    "2024-03-02",  # a Saturday
    "2024-04-30",
    "1970-01-01",
    "2100-12-31",
    dt.date(2024, 2, 29),
    "2024-02-29T13:45:00",  # not plain YYYY-MM-DD: typed by pandas
    "03/15/2024",
]
MESSY_AMOUNTS: list[Any] = [
    None, 0, 0.0, -0.0, 1e9, -1e9, 1e-9, -123456789.12, float("nan"), 500, -3, "$1,234.50",
    "(12.00)", "abc",
]  # fmt: skip
MESSY_TEXT: list[Any] = [None, "", "   "]


def messy_records(base: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` mutated copies of real rows: unseen, missing, blank, extreme and odd values."""
    rng = np.random.default_rng(seed)

    def pick(values: list[Any]) -> Any:
        return values[int(rng.integers(len(values)))]

    mutations = [
        lambda r, i: r.update(reference=f"Never Seen Vendor {i} GmbH", description=f"qzx{i} kit"),
        lambda r, i: r.update(reference=pick(MESSY_TEXT)),
        lambda r, i: r.update(payment_method=pick([*MESSY_TEXT, "crypto", " Credit_Card "])),
        lambda r, i: r.update(status=pick([*MESSY_TEXT, "disputed", "PAID"])),
        lambda r, i: [r.pop(k, None) for k in ("reference", "payment_method", "status")],
        lambda r, i: r.update(amount=pick(MESSY_AMOUNTS)),
        lambda r, i: r.update(date=pick(MESSY_DATES)),
        lambda r, i: r.update(category=pick([*MESSY_TEXT, "teleportation", " FOOD ", "Rent"])),
        lambda r, i: r.update(type=pick(["Income", "income", None, "EXPENSE"]), amount=4200.0),
        lambda r, i: r.update(description=pick([None, "", "x" * 3000, "café ☕ 東京", 12345])),
    ]
    out = []
    for i in range(n):
        record = dict(base[int(rng.integers(len(base)))])
        for k in rng.choice(len(mutations), size=int(rng.integers(1, 4)), replace=False):
            mutations[int(k)](record, i)
        out.append(record)
    return out


@pytest.fixture(scope="module")
def records(ledger: pd.DataFrame) -> list[dict[str, Any]]:
    """Real rows from across the year (income too), then messy variants of them."""
    clean = raw_records(ledger.iloc[:: max(1, len(ledger) // CLEAN_ROWS)].head(CLEAN_ROWS))
    return clean + messy_records(clean, MESSY_ROWS, seed=3)


@pytest.fixture(scope="module")
def predictors(fitted: dict[str, Fitted]) -> dict[str, FastPredictor]:
    out = {}
    for key in KEYS:
        predictor = fast_predictor(fitted[key].model)
        assert predictor is not None, key
        out[key] = predictor
    return out


def disagreements(
    key: str, model: TrainedModel, one: dict[str, Any], batch: dict[str, Any]
) -> list[str]:
    """How a fast output differs from the batch output beyond the agreed tolerances."""
    if list(one) != list(batch):
        return [f"columns {list(one)} != {list(batch)}"]
    problems = []
    for column, value in one.items():
        expected = batch[column]
        if column == "prediction" and key == "category":
            ok = type(value) is str and value == expected
        elif column == "is_anomaly":
            near = abs(one["score"] - model.state["threshold"]) <= 1e-9
            ok = type(value) is bool and (value == bool(expected) or near)
        elif key == "category":
            ok = type(value) is float and abs(value - expected) <= 1e-9
        else:
            ok = type(value) is float and math.isclose(value, expected, rel_tol=1e-9)
        if not ok:
            problems.append(f"{column}: fast {value!r}, batch {expected!r}")
    return problems


def assert_agree(
    key: str, model: TrainedModel, predictor: FastPredictor, rows: list[dict[str, Any]]
) -> None:
    batch = model.predict(typed_frame(pd.DataFrame(rows)))
    assert tuple(batch.columns) == predictor.columns
    failures = []
    for i, (record, expected) in enumerate(zip(rows, batch.to_dict("records"), strict=True)):
        problems = disagreements(key, model, predictor.predict_one(record), expected)
        if problems:
            failures.append(f"row {i} {record}: {problems}")
    assert not failures, f"{len(failures)} rows disagree, e.g.\n" + "\n".join(failures[:5])


# ----------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("key", KEYS)
def test_fast_path_agrees_with_batch_on_every_row(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    records: list[dict[str, Any]],
    key: str,
) -> None:
    assert len(records) >= 3_000
    assert_agree(key, fitted[key].model, predictors[key], records)


@pytest.mark.parametrize("key", KEYS)
def test_messy_rows_agree_with_the_single_row_batch_path(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    records: list[dict[str, Any]],
    key: str,
) -> None:
    model, predictor = fitted[key].model, predictors[key]
    for record in records[-SINGLE_ROW_CHECKS:]:
        batch = model.predict(typed_frame(pd.DataFrame([record]))).iloc[0].to_dict()
        assert not disagreements(key, model, predictor.predict_one(record), batch), record


def test_export_headers_are_read_as_the_batch_path_reads_them(
    fitted: dict[str, Fitted], predictors: dict[str, FastPredictor]
) -> None:
    record = {
        "Date": "2024-05-31",
        "Type": "Expense",
        "Description": "Diesel for company truck",
        "Amount": "-92.82",
        "Category": "fuel",
        "Payment Method": "credit_card",
        "Reference": "BP",
    }
    for key in KEYS:
        model = fitted[key].model
        batch = model.predict(typed_frame(pd.DataFrame([record]))).iloc[0].to_dict()
        assert not disagreements(key, model, predictors[key].predict_one(record), batch), key


def test_a_two_class_category_model_agrees_with_batch(
    ledger: pd.DataFrame, spec_settings: Settings, records: list[dict[str, Any]]
) -> None:
    two = ledger[ledger["category"].isin(["fuel", "rent"])]
    model = get_spec("category", spec_settings).fit(two, seed=1)
    assert model.params["n_classes"] == 2
    predictor = fast_predictor(model)
    assert predictor is not None
    assert predictor.columns == ("prediction", "probability", "proba_fuel", "proba_rent")
    assert_agree("category", model, predictor, records[:300] + records[-300:])


def test_entries_one_are_the_stored_entries_of_transform_one(
    fitted: dict[str, Fitted], records: list[dict[str, Any]]
) -> None:
    features = fitted["amount"].model.state["pipeline"][0]
    for record in records[::50]:
        typed = fast.typed_record(record)
        columns, values = features.entries_one(typed)
        row = features.transform_one(typed)
        assert columns == row.indices.tolist() and values == row.data.tolist()


@pytest.mark.parametrize("key", ["category", "amount"])
def test_linear_decisions_are_bitwise_those_of_sklearn(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    records: list[dict[str, Any]],
    key: str,
) -> None:
    """Exact, not merely close: a label can never flip between the paths at a near-tie."""
    pipeline = fitted[key].model.state["pipeline"]
    rows = records[:200] + records[-200:]
    matrix = pipeline[:-1].transform(typed_frame(pd.DataFrame(rows)))
    model = pipeline[-1]
    expected = model.decision_function(matrix) if key == "category" else model.predict(matrix)
    predictor = predictors[key]
    assert isinstance(predictor, CategoryPredictor | AmountPredictor)
    fast_rows = np.array([predictor.linear.decision(fast.typed_record(r)) for r in rows])
    assert np.array_equal(fast_rows.reshape(expected.shape), expected)


def _float32_boundary(forest: Any, row: np.ndarray) -> np.ndarray:
    """``row`` with one value just above a split threshold on its own path whose float32
    rounding falls at or below it: sklearn sends it left, a float64 comparison right."""
    for estimator in forest.estimators_:
        tree = estimator.tree_
        node = 0
        while tree.children_left[node] >= 0:
            feature, threshold = tree.feature[node], tree.threshold[node]
            above = np.nextafter(threshold, np.inf)
            if np.float32(above) <= threshold:
                out = row.copy()
                out[feature] = above
                return out
            left = np.float32(row[feature]) <= threshold
            node = tree.children_left[node] if left else tree.children_right[node]
    raise AssertionError("no split threshold rounds that way on the row's paths")


def test_forest_reads_rows_as_float32_and_missing_values_as_sklearn_does(
    fitted: dict[str, Fitted], predictors: dict[str, FastPredictor]
) -> None:
    features, forest = (step for _, step in fitted["anomaly"].model.state["pipeline"].steps)
    base = features.transform(fitted["anomaly"].train.head(1))[0]
    missing = base.copy()
    missing[[0, 3]] = np.nan
    for row in (base, _float32_boundary(forest, base), missing):
        expected = -forest.score_samples(row.reshape(1, -1))[0]
        assert predictors["anomaly"].forest.score(row) == expected, row


# ----------------------------------------------------------------------------- property


def _real_values(ledger: pd.DataFrame, column: str) -> list[str]:
    return sorted(ledger[column].dropna().astype(str).unique().tolist())[:40]


@pytest.fixture(scope="module")
def ledger_values(ledger: pd.DataFrame) -> dict[str, list[str]]:
    return {c: _real_values(ledger, c) for c in ("description", "reference")}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_random_records_agree_with_the_single_row_batch_path(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    ledger_values: dict[str, list[str]],
    data: st.DataObject,
) -> None:
    def text(known: list[str] | tuple[str, ...]) -> st.SearchStrategy[Any]:
        return st.one_of(st.none(), st.sampled_from(["", " ", *known]), st.text(max_size=30))

    day = data.draw(st.dates(dt.date(1970, 1, 1), dt.date(2100, 12, 31)))
    record = {
        "date": data.draw(st.sampled_from([day.isoformat(), day])),
        "type": data.draw(st.sampled_from(["Expense", "Income", "income", None])),
        "description": data.draw(text(ledger_values["description"])),
        "amount": data.draw(
            st.one_of(
                st.none(),
                st.floats(-1e9, 1e9, allow_nan=False),
                st.integers(-(10**6), 10**6),
                st.just(float("nan")),
            )
        ),
        "category": data.draw(text(EXPENSE_CATEGORIES)),
        "payment_method": data.draw(text(PAYMENT_METHODS)),
        "status": data.draw(text(STATUSES)),
        "reference": data.draw(text(ledger_values["reference"])),
    }
    for key in KEYS:
        model = fitted[key].model
        batch = model.predict(typed_frame(pd.DataFrame([record]))).iloc[0].to_dict()
        assert not disagreements(key, model, predictors[key].predict_one(record), batch), key


# ----------------------------------------------------------------------------- contract


@pytest.mark.parametrize("key", KEYS)
def test_columns_are_the_batch_output_columns(
    fitted: dict[str, Fitted], predictors: dict[str, FastPredictor], key: str
) -> None:
    model = fitted[key].model
    batch = model.predict(typed_frame(pd.DataFrame([{"date": "2024-03-01", "amount": -5.0}])))
    assert predictors[key].columns == tuple(batch.columns)
    assert tuple(predictors[key].predict_one({"date": "2024-03-01"})) == tuple(batch.columns)


@pytest.mark.parametrize(
    "record",
    [
        {"type": "Expense", "amount": -10.0},
        {"date": None, "amount": -10.0},
        {"date": "not a date", "amount": -10.0},
        {"date": "2024-02-30", "amount": -10.0},
    ],
    ids=["no date", "null date", "junk date", "impossible date"],
)
@pytest.mark.parametrize("key", KEYS)
def test_a_record_without_a_usable_date_is_an_input_error_as_in_batch(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    key: str,
    record: dict[str, Any],
) -> None:
    with pytest.raises(InputError):
        fitted[key].model.predict(typed_frame(pd.DataFrame([record])))
    with pytest.raises(InputError, match="date") as raised:
        predictors[key].predict_one(record)
    assert "\n" not in str(raised.value)


def test_pickled_model_gives_an_equal_predictor(
    fitted: dict[str, Fitted],
    predictors: dict[str, FastPredictor],
    records: list[dict[str, Any]],
) -> None:
    sample = records[::25]
    for key in KEYS:
        restored = fast_predictor(pickle.loads(pickle.dumps(fitted[key].model)))
        assert restored is not None and type(restored) is type(predictors[key])
        assert restored.columns == predictors[key].columns
        for record in sample:
            assert restored.predict_one(record) == predictors[key].predict_one(record), key


def test_no_fast_path_for_cashflow_one_class_or_unexpected_models(
    fitted: dict[str, Fitted], spec_settings: Settings
) -> None:
    assert fast_predictor(fitted["cashflow"].model) is None

    frame = generate(1_000, seed=2)
    one_class = get_spec("category", spec_settings).fit(frame[frame["category"] == "food"], 1)
    assert any("only one class" in w for w in one_class.warnings)
    assert fast_predictor(one_class) is None

    assert fast_predictor(TrainedModel("category", state={"pipeline": "not fitted"})) is None
    assert fast_predictor(TrainedModel("amount", state=None)) is None
    anomaly_state = dict(fitted["anomaly"].model.state)
    del anomaly_state["threshold"]
    assert fast_predictor(TrainedModel("anomaly", state=anomaly_state)) is None


def test_module_examples_hold() -> None:
    result = doctest.testmod(fast)
    assert result.attempted > 0 and result.failed == 0
