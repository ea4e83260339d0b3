"""A registry shared by the optimisation tests: two category versions, one amount, one anomaly.

Trained once per session (small generated ledgers); each test works on its own copy of the
registry database (artifacts shared, read-only) with its own ops store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from _support.serving import copy_registry, serving_settings
from titans.config import Settings
from titans.data.synth import generate
from titans.models.train import train_models

ROWS = 3_000


def optimization_settings(home: Path) -> Settings:
    """Serving settings (human approvals, relaxed gates, no API key) under ``home``."""
    return serving_settings(home, [])


@dataclass(frozen=True)
class Template:
    home: Path


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """titans-category versions 1 (seed 1) and 2 (seed 2); titans-amount and titans-anomaly 1."""
    home = tmp_path_factory.mktemp("optimization")
    s = optimization_settings(home)
    ledger = generate(ROWS, seed=1)
    train_models(ledger, models=["category", "amount", "anomaly"], seed=1, settings=s)
    train_models(ledger, models=["category"], seed=2, settings=s)
    return Template(home)


@pytest.fixture
def opt_settings(template: Template, tmp_path: Path) -> Settings:
    """Settings on a fresh copy of the template registry."""
    return optimization_settings(copy_registry(template.home, tmp_path / "home"))
