"""Shared data for the model spec tests: one small generated ledger and the messy export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from titans.config import Settings
from titans.data.io import load_transactions
from titans.data.synth import generate
from titans.models.base import Evaluation, ModelSpec, TrainedModel, get_spec, model_names

ROWS = 8_000
SEED = 7
MESSY_EXPORT = Path(__file__).parents[1] / "fixtures" / "messy_export_120.csv"


@dataclass
class Fitted:
    """One spec trained on the shared ledger, with its holdout evaluation."""

    spec: ModelSpec
    train: pd.DataFrame
    test: pd.DataFrame
    model: TrainedModel
    evaluation: Evaluation


@pytest.fixture(scope="session")
def spec_settings() -> Settings:
    """Model settings (alert rate, horizon, min class examples) at their defaults."""
    return Settings(anomaly_alert_rate=0.01, forecast_horizon_days=30, min_class_examples=5)


@pytest.fixture(scope="session")
def ledger() -> pd.DataFrame:
    """A year of generated transactions (with is_anomaly labels)."""
    return generate(ROWS, seed=SEED)


@pytest.fixture(scope="session")
def fitted(ledger: pd.DataFrame, spec_settings: Settings) -> dict[str, Fitted]:
    """Every spec split, fitted and evaluated once on the shared ledger."""
    out = {}
    for key in model_names():
        spec = get_spec(key, spec_settings)
        train, test = spec.split(ledger)
        model = spec.fit(train, seed=SEED)
        out[key] = Fitted(spec, train, test, model, spec.evaluation(model, train, test))
    return out


@pytest.fixture(scope="session")
def messy() -> pd.DataFrame:
    """The 120-row messy export after validation (the rows that pass)."""
    return load_transactions(MESSY_EXPORT, max_bad_share=0.5)
