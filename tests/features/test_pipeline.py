"""FeaturePipeline: one row through the serving path equals the same row of the batch path."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score
from sklearn.utils.validation import check_is_fitted

from titans.data.synth import generate
from titans.errors import InputError, NotFittedError
from titans.features import FeaturePipeline

COMBOS: list[dict[str, Any]] = [
    {},
    {"output": "dense", "n_text_features": 512, "use_category": True},
    {"output": "dense", "categorical_encoding": "ordinal", "text": "none", "use_category": True},
    {"categorical_encoding": "ordinal", "use_amount": False, "n_text_features": 1024},
    {"text": "none", "use_amount": False, "max_references": 0},
]


def messy_records() -> list[dict[str, Any]]:
    """Transactions a client could send: unseen, missing, blank, odd and extreme values."""
    return [
        {
            "date": "2024-03-05",
            "type": "Expense",
            "description": "Fuel at Shell",
            "amount": -54.3,
            "category": "fuel",
            "payment_method": "credit_card",
            "status": "paid",
            "reference": "Shell",
        },
        {"date": "2024-03-05"},
        {
            "date": dt.date(2024, 2, 29),
            "type": None,
            "description": None,
            "amount": None,
            "category": None,
            "payment_method": None,
            "status": None,
            "reference": None,
            "receipt_url": None,
        },
        {
            "date": dt.datetime(2024, 12, 31, 23, 59),
            "type": "",
            "description": "",
            "amount": 0,
            "category": "",
            "payment_method": "",
            "status": "",
            "reference": "   ",
        },
        {
            "date": "2024-06-15T10:30:00",
            "type": "income",
            "amount": 1200,
            "category": "brand_new_category",
            "payment_method": "crypto",
            "status": "disputed",
            "reference": "Never Seen Before GmbH",
        },
        {"date": "0001-01-01", "amount": 1e308, "description": "x" * 5000, "reference": "R" * 500},
        {
            "date": "9999-12-31",
            "amount": -1e-300,
            "description": "café ☕ ÜBER 東京 مرحبا \U0001f600",
        },
        {"date": "2024-02-30", "amount": float("inf"), "description": "bad date, infinite amount"},
        {"date": "not a date", "amount": float("nan"), "description": "dash \u2014 and nbsp\xa0"},
        {"date": "2024-01-31", "type": "Expense", "amount": 99999999.0, "reference": " SHELL "},
        {"date": "2024-01-31", "type": "Income", "amount": -250.0, "status": "PAID"},
        {"date": "2024-05-01", "amount": 10**400, "payment_method": "Credit_Card"},
        {"date": "2024-05-01", "amount": "12.5", "description": 12345, "reference": 42},
        {"date": "2024-05-01", "amount": -0.0, "description": "tab\tand\nnewline  spaces"},
        {"date": None, "amount": -10.0},
    ]


def with_messy_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The typed frame (datetime64 dates) plus messy rows with valid dates."""
    messy = pd.DataFrame(messy_records()[:5])
    messy["date"] = pd.to_datetime(messy["date"].astype(str), format="mixed")
    data = pd.concat([frame, messy], ignore_index=True)
    assert pd.api.types.is_datetime64_dtype(data["date"])
    return data


def combo_id(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(2_000, seed=3)


def assert_same(one: Any, batch_row: Any) -> None:
    """Same type, dtype, shape and values; sparse rows also have the same stored entries."""
    assert sp.issparse(one) == sp.issparse(batch_row)
    assert one.dtype == batch_row.dtype == np.float64
    assert one.shape == batch_row.shape
    if sp.issparse(one):
        assert np.array_equal(one.indices, batch_row.indices)
        assert np.array_equal(one.data, batch_row.data)
    else:
        assert np.array_equal(one, batch_row)


@pytest.mark.parametrize("params", COMBOS, ids=combo_id)
def test_serving_row_equals_batch_row_for_every_row(frame: pd.DataFrame, params: dict) -> None:
    data = with_messy_rows(frame)
    pipe = FeaturePipeline(**params).fit(data)
    batch = pipe.transform(data)
    assert batch.shape == (len(data), len(pipe.get_feature_names_out()))
    for i, record in enumerate(data.to_dict("records")):
        assert_same(pipe.transform_one(record), batch[i : i + 1])


@pytest.mark.parametrize("params", COMBOS, ids=combo_id)
def test_client_records_match_batch_of_the_same_records(frame: pd.DataFrame, params: dict) -> None:
    pipe = FeaturePipeline(**params).fit(frame)
    records = messy_records()
    batch = pipe.transform(pd.DataFrame(records))
    as_objects = pipe.transform(pd.DataFrame(records, dtype=object))
    for i, record in enumerate(records):
        one = pipe.transform_one(record)
        assert_same(one, batch[i : i + 1])
        assert_same(one, as_objects[i : i + 1])
        assert_same(one, pipe.transform(pd.DataFrame([record])))


@pytest.fixture(scope="module")
def fitted_pipelines(frame: pd.DataFrame) -> list[FeaturePipeline]:
    return [FeaturePipeline(**params).fit(frame) for params in COMBOS[:3]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    date=st.one_of(st.dates(), st.datetimes(), st.text(max_size=12), st.none()),
    description=st.one_of(st.text(max_size=80), st.none()),
    reference=st.one_of(st.text(max_size=20), st.none()),
    amount=st.one_of(st.floats(), st.integers(-(10**12), 10**12), st.none()),
    payment_method=st.one_of(st.sampled_from(["cash", "CASH ", "", "paypal"]), st.text()),
)
def test_any_record_gives_the_batch_row_and_finite_features(
    fitted_pipelines: list[FeaturePipeline], **record: Any
) -> None:
    for pipe in fitted_pipelines:
        one = pipe.transform_one(record)
        assert_same(one, pipe.transform(pd.DataFrame([record], dtype=object)))
        assert_same(one, pipe.transform(pd.DataFrame([record])))
        assert np.isfinite(one.data if sp.issparse(one) else one).all()


def test_lone_surrogates_from_json_do_not_break_hashing(frame: pd.DataFrame) -> None:
    # "\ud800" is valid JSON but not UTF-8; pandas 3 cannot even build a str column from it
    pipe = FeaturePipeline().fit(frame)
    record = {"date": "2024-01-01", "description": "bad \ud800 text", "reference": "x\udfff"}
    one = pipe.transform_one(record)
    assert np.isfinite(one.data).all()
    assert_same(one, pipe.transform(pd.DataFrame([record], dtype=object)))


@pytest.mark.parametrize("params", COMBOS, ids=combo_id)
def test_unseen_and_missing_values_give_finite_features(frame: pd.DataFrame, params: dict) -> None:
    pipe = FeaturePipeline(**params).fit(frame)
    batch = pipe.transform(pd.DataFrame(messy_records()))
    values = batch.toarray() if sp.issparse(batch) else batch
    assert np.isfinite(values).all()


@pytest.mark.parametrize("params", COMBOS, ids=combo_id)
def test_empty_frame_gives_zero_rows(frame: pd.DataFrame, params: dict) -> None:
    pipe = FeaturePipeline(**params).fit(frame)
    width = len(pipe.get_feature_names_out())
    assert pipe.transform(frame.iloc[:0]).shape == (0, width)
    assert pipe.transform(pd.DataFrame({"date": []})).shape == (0, width)


def test_unseen_and_missing_values_land_in_their_own_columns(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline(text="none", output="dense", use_category=True).fit(frame)
    names = list(pipe.get_feature_names_out())

    def features(record: dict) -> dict[str, float]:
        return dict(zip(names, pipe.transform_one(record)[0].tolist(), strict=True))

    unseen = features(messy_records()[4])
    assert unseen["payment_method=__other__"] == 1.0
    assert unseen["category=__other__"] == 1.0
    assert unseen["reference=__other__"] == 1.0
    assert unseen["reference_frequency"] == 0.0
    assert unseen["is_income"] == 1.0
    blank = features(messy_records()[3])
    assert blank["payment_method=__missing__"] == blank["reference=__missing__"] == 1.0
    bad = features(messy_records()[8])
    assert bad["date_missing"] == bad["amount_missing"] == 1.0
    assert bad["amount_bin=__missing__"] == 1.0
    # categorical values compare case- and whitespace-insensitively
    known = features({"date": "2024-01-31", "payment_method": " Credit_Card ", "status": "PAID"})
    assert known["payment_method=credit_card"] == known["status=paid"] == 1.0


def test_date_features_follow_the_calendar(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline(text="none", output="dense").fit(frame)
    names = list(pipe.get_feature_names_out())
    rows = pipe.transform(pd.DataFrame({"date": ["2024-02-29", "2024-03-02", "2023-02-28"]}))
    got = pd.DataFrame(rows, columns=names)
    assert got["is_month_end"].tolist() == [1.0, 0.0, 1.0]  # 2024 is a leap year
    assert got["is_weekend"].tolist() == [0.0, 1.0, 0.0]  # 2 March 2024 was a Saturday
    assert got["days_to_month_end"].tolist() == [0.0, 29 / 30, 0.0]


def test_missing_date_raises_input_error(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline().fit(frame)
    with pytest.raises(InputError, match="date"):
        pipe.transform_one({"amount": -5.0, "description": "no date"})
    with pytest.raises(InputError, match="date"):
        pipe.transform(frame.drop(columns="date"))
    with pytest.raises(InputError, match="date"):
        FeaturePipeline().fit(frame.drop(columns="date"))


def test_unfitted_pipeline_raises_a_clear_not_fitted_error(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline()
    for use in (
        lambda: pipe.transform(frame),
        lambda: pipe.transform_one({"date": "2024-01-01"}),
        pipe.get_feature_names_out,
    ):
        with pytest.raises(NotFittedError, match="fit") as caught:
            use()
        assert isinstance(caught.value, ValueError)
        assert isinstance(caught.value, SklearnNotFittedError)
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(pipe)
    check_is_fitted(pipe.fit(frame))


def test_invalid_hyperparameters_are_refused(frame: pd.DataFrame) -> None:
    for params in ({"text": "tfidf"}, {"n_text_features": 0}, {"output": "csc"}):
        with pytest.raises(InputError, match="FeaturePipeline"):
            FeaturePipeline(**params).fit(frame)


def test_fitted_state_ends_in_underscore(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline(use_category=True)
    before = set(vars(pipe))
    assert before == set(pipe.get_params())
    pipe.fit(frame)
    pipe.transform_one(frame.iloc[0].to_dict())  # may add a serving cache
    learned = set(vars(pipe)) - before
    assert learned and all(name.endswith("_") for name in learned)


@pytest.mark.parametrize("params", COMBOS[:3], ids=["default", "dense", "ordinal"])
def test_clone_and_pickle_round_trip_give_identical_transforms(
    frame: pd.DataFrame, params: dict
) -> None:
    pipe = FeaturePipeline(**params).fit(frame)
    expected = pipe.transform(frame)
    record = frame.iloc[10].to_dict()
    pipe.transform_one(record)  # a warm serving cache is not part of the pickle
    restored = pickle.loads(pickle.dumps(pipe))
    refitted = clone(pipe).fit(frame)
    assert "_text_cache_" not in vars(restored)
    for other in (restored, refitted):
        assert_same(other.transform(frame), expected)
        assert_same(other.transform_one(record), pipe.transform_one(record))
        assert list(other.get_feature_names_out()) == list(pipe.get_feature_names_out())
    assert clone(pipe).get_params() == pipe.get_params()


@pytest.mark.parametrize("params", COMBOS, ids=combo_id)
def test_feature_names_describe_every_column(frame: pd.DataFrame, params: dict) -> None:
    pipe = FeaturePipeline(**params).fit(frame)
    names = pipe.get_feature_names_out()
    assert pipe.transform(frame.head(50)).shape[1] == len(names) == len(set(names))
    assert len(pipe.categorical_feature_mask_) == len(names)


def test_a_fitted_pipeline_can_switch_to_dense_rows_for_serving(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline(n_text_features=1024).fit(frame)
    sparse_rows = pipe.transform(frame.head(100)).toarray()
    record = frame.iloc[3].to_dict()
    sparse_one = pipe.transform_one(record).toarray()
    pipe.set_params(output="dense")
    assert np.array_equal(pipe.transform(frame.head(100)), sparse_rows)
    assert np.array_equal(pipe.transform_one(record), sparse_one)


def test_category_model_features_do_not_depend_on_the_category(frame: pd.DataFrame) -> None:
    pipe = FeaturePipeline(use_category=False, output="dense", n_text_features=256).fit(frame)
    shuffled = frame.assign(category=frame["category"].sample(frac=1.0, random_state=0).values)
    assert np.array_equal(pipe.transform(frame), pipe.transform(shuffled))
    assert not any("category" in name for name in pipe.get_feature_names_out())


def test_string_dtype_extra_columns_and_row_order_do_not_change_features(
    frame: pd.DataFrame,
) -> None:
    pipe = FeaturePipeline(output="dense", n_text_features=256).fit(frame)
    expected = pipe.transform(frame)
    as_object = frame.astype({c: object for c in ("description", "reference", "status")})
    with_extras = as_object.assign(row_number=np.arange(len(frame)), is_anomaly=True)
    assert np.array_equal(pipe.transform(with_extras), expected)
    # fit learns the same state whatever the row order
    refit = FeaturePipeline(output="dense", n_text_features=256).fit(frame.iloc[::-1])
    assert np.array_equal(refit.transform(frame), expected)


def test_amount_z_score_flags_an_unusual_amount_for_its_reference() -> None:
    rng = np.random.default_rng(0)
    n = 400
    train = pd.DataFrame({
        "date": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"),
        "type": "Expense",
        "amount": -np.exp(rng.normal(np.log(40.0), 0.2, n)),
        "reference": rng.choice(["Coffee Corner", "Cloud Host"], n),
    })  # fmt: skip
    train.loc[train["reference"] == "Cloud Host", "amount"] *= 100
    pipe = FeaturePipeline(text="none", output="dense").fit(train)
    column = list(pipe.get_feature_names_out()).index("amount_z_reference")
    z = {
        amount: pipe.transform_one({"date": "2024-04-01", "amount": amount,
                                    "reference": "Coffee Corner"})[0, column]
        for amount in (-40.0, -4000.0)
    }  # fmt: skip
    assert abs(z[-40.0]) < 0.1
    assert z[-4000.0] == 1.0  # clipped at 10 robust standard deviations, scaled to 1


def test_ordinal_codes_feed_histgradientboosting_categorical_features(
    frame: pd.DataFrame,
) -> None:
    pipe = FeaturePipeline(
        categorical_encoding="ordinal", output="dense", text="none", use_category=True
    ).fit(frame)
    x = pipe.transform(frame)
    mask = pipe.categorical_feature_mask_
    assert mask.sum() == 4 and x[:, mask].max() < 255
    model = HistGradientBoostingClassifier(categorical_features=mask, max_iter=20)
    model.fit(x, frame["type"])  # codes must be < 255 and integral or this raises
    assert model.score(x, frame["type"]) > 0.95


def test_features_let_a_linear_model_learn_the_category() -> None:
    data = generate(4_000, seed=11)
    data = data[data["type"] == "Expense"].dropna(subset=["category"])
    train, test = (
        data[data["date"] < data["date"].quantile(0.8)],
        data[data["date"] >= data["date"].quantile(0.8)],
    )
    pipe = FeaturePipeline().fit(train)
    model = SGDClassifier(loss="log_loss", alpha=1e-5, random_state=0)
    model.fit(pipe.transform(train), train["category"])
    predicted = model.predict(pipe.transform(test))
    majority = train["category"].mode()[0]
    assert f1_score(test["category"], predicted, average="macro") > 0.6
    assert (predicted == test["category"]).mean() > 3 * (test["category"] == majority).mean()
