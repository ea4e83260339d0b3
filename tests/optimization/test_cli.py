"""`titans optimize` through Typer's CliRunner on its own app (as a user runs it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from _support.serving import copy_registry
from titans.cli.optimize import app
from titans.config import Settings
from titans.optimization import OptimizationError

runner = CliRunner()


@pytest.fixture
def cli_home(template: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TITANS_HOME on a copy of the shared registry, as the CLI reads it from the env."""
    home = copy_registry(template.home, tmp_path / "home")
    monkeypatch.setenv("TITANS_HOME", str(home))
    for var in ("TITANS_TRACKING_URI", "TITANS_DATABASE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_size_registers_an_onnx_version_and_prints_its_uri(cli_home: Path) -> None:
    result = runner.invoke(app, ["size", "models:/titans-amount/1"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "models:/titans-amount/2"
    assert "MaxAbsScaler -> Ridge" in result.output
    client = MlflowClient(tracking_uri=Settings().tracking_uri)
    tags = client.get_model_version("titans-amount", "2").tags
    assert tags["titans.optimization.source"] == "models:/titans-amount/1"


def test_benchmark_json_has_the_measures(cli_home: Path) -> None:
    result = runner.invoke(app, ["benchmark", "models:/titans-amount/1", "--json"])
    assert result.exit_code == 0, result.output
    measured = json.loads(result.output)
    assert measured["model_uri"] == "models:/titans-amount/1"
    assert measured["flavour"] == "sklearn"
    assert measured["single_row_p50_us"] > 0 and measured["batch_1000_rows_per_s"] > 0


def test_an_ensemble_of_one_is_refused_with_a_titans_error(cli_home: Path) -> None:
    result = runner.invoke(app, ["ensemble", "models:/titans-category/1"])
    assert result.exit_code == 1
    assert isinstance(result.exception, OptimizationError)
    assert "at least two" in str(result.exception)
