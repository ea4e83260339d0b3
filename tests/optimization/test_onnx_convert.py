"""ONNX conversion without the registry: what converts, what is refused, float16 weights."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from titans.config import Settings
from titans.data.synth import generate
from titans.models.base import TrainedModel, get_spec
from titans.optimization import OptimizationError
from titans.optimization.onnx_convert import convert, with_float16_weights

SEED = 5


class Doubler(TransformerMixin, BaseEstimator):
    """A custom step skl2onnx has never heard of."""

    def fit(self, x, y=None):  # type: ignore[no-untyped-def]
        return self

    def transform(self, x):  # type: ignore[no-untyped-def]
        return x * 2


@pytest.fixture(scope="module")
def ledger() -> pd.DataFrame:
    return generate(1_500, seed=SEED)


@pytest.fixture(scope="module")
def category(ledger: pd.DataFrame) -> tuple[TrainedModel, pd.DataFrame]:
    spec = get_spec("category", Settings(min_class_examples=5))
    train, test = spec.split(ledger)
    return spec.fit(train, SEED), spec.select(test)


def test_a_custom_transformer_is_named_in_the_error(
    category: tuple[TrainedModel, pd.DataFrame],
) -> None:
    model, _ = category
    features, scaler, classifier = (step for _, step in model.state["pipeline"].steps)
    custom = TrainedModel(
        spec_name="category",
        state={
            "pipeline": Pipeline(
                [("features", features), ("scale", scaler), ("double", Doubler()),
                 ("model", classifier)]
            )
        },
    )  # fmt: skip
    with pytest.raises(OptimizationError, match=r"no converter for double \(.*Doubler\)"):
        convert(custom)


def test_the_cashflow_forecaster_is_refused_with_what_it_holds(ledger: pd.DataFrame) -> None:
    spec = get_spec("cashflow", Settings(forecast_horizon_days=14))
    train, _ = spec.split(ledger)
    with pytest.raises(OptimizationError, match="no scikit-learn Pipeline to convert"):
        convert(spec.fit(train, SEED))


def test_float16_weights_halve_the_coefficients_and_keep_the_answers(
    category: tuple[TrainedModel, pd.DataFrame],
) -> None:
    model, rows = category
    onnx = convert(model)
    half, converted = with_float16_weights(onnx)
    assert converted == 1  # the coefficient matrix; the small vectors stay float32
    assert half.precision == "float16 weights"
    coef_bytes = 4 * onnx.n_features * len(onnx.classes)
    assert len(onnx.onnx_bytes) - len(half.onnx_bytes) >= 0.45 * coef_bytes
    full_proba, half_proba = onnx.predict_proba(rows), half.predict_proba(rows)
    sklearn_proba = model.state["pipeline"].predict_proba(rows)
    assert np.abs(full_proba - sklearn_proba).max() < 1e-5
    assert np.abs(half_proba - sklearn_proba).max() < 1e-2
    agree = (half_proba.argmax(axis=1) == sklearn_proba.argmax(axis=1)).mean()
    assert agree >= 0.995
