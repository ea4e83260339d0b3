"""ExperimentManager on the embedded sqlite store, and `titans experiments` on top of it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from titans.cli import _common
from titans.cli import experiments as experiments_cli
from titans.config import Settings
from titans.errors import ExperimentNotFoundError, InputError, RunNotFoundError
from titans.experiments.experiment_manager import (
    METRIC_DIRECTIONS,
    ExperimentManager,
    metric_direction,
)

# One store for the module: creating an MLflow sqlite database costs ~3 s. Each test uses
# experiments with its own unique names, so tests stay independent.


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("titans-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TITANS_HOME", str(home))
        for var in ("TITANS_TRACKING_URI", "MLFLOW_TRACKING_URI"):
            mp.delenv(var, raising=False)
        yield home


@pytest.fixture(scope="module")
def manager(home: Path) -> ExperimentManager:
    return ExperimentManager(Settings(home=home))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def log_runs(
    manager: ExperimentManager, experiment_id: str, runs: list[tuple[str, dict, dict]]
) -> dict[str, str]:
    return {
        name: manager.log_experiment_run(experiment_id, name, params, metrics, {})
        for name, params, metrics in runs
    }


# ---------------------------------------------------------------- experiments


def test_create_experiment_is_idempotent_and_keeps_the_description(
    manager: ExperimentManager,
) -> None:
    name = unique("category")
    first = manager.create_experiment(name, "tuning the category model", tags={"owner": "ml"})
    assert manager.create_experiment(name, "a different description") == first
    experiment = manager.get_experiment(name)
    assert experiment.experiment_id == first
    assert experiment.tags["mlflow.note.content"] == "tuning the category model"
    assert experiment.tags["owner"] == "ml"
    assert manager.get_experiment(first).name == name  # by id as well as by name

    manager.client.delete_experiment(first)
    with pytest.raises(ExperimentNotFoundError):
        manager.get_experiment(name)
    assert manager.create_experiment(name, "back") == first  # a deleted name is restored
    assert manager.get_experiment(name).lifecycle_stage == "active"


def test_artifacts_live_under_titans_home_not_the_working_directory(
    manager: ExperimentManager, home: Path, tmp_path: Path
) -> None:
    experiment_id = manager.create_experiment(unique("artifacts"), "where files go")
    source = tmp_path / "report.md"
    source.write_text("# evaluation\n")
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    run_id = manager.log_experiment_run(
        experiment_id,
        "with-artifacts",
        {"alpha": 0.5},
        {"mae": 3.0},
        {
            "report": source,
            "plots": str(folder),
            "config": {"alpha": 0.5, "features": ["amount"]},
            "notes": "trained on the CI data set",
            "profile.yaml": {"rows": 10},
        },
    )
    run = manager.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"alpha": "0.5"}
    assert run.data.metrics == {"mae": 3.0}
    assert run.info.artifact_uri.startswith((home / "mlartifacts").as_uri())

    listed = {f.path for f in manager.client.list_artifacts(run_id)}
    assert listed == {"report", "plots", "config.json", "notes.txt", "profile.yaml"}
    stored = Path(manager.client.download_artifacts(run_id, "", str(tmp_path / "dl")))
    assert (stored / "report" / "report.md").read_text() == "# evaluation\n"
    assert (stored / "plots" / "a.txt").read_text() == "a"
    assert json.loads((stored / "config.json").read_text()) == {
        "alpha": 0.5,
        "features": ["amount"],
    }
    assert (stored / "notes.txt").read_text() == "trained on the CI data set"
    assert "rows: 10" in (stored / "profile.yaml").read_text()


def test_bad_run_input_is_refused_before_any_run_exists(
    manager: ExperimentManager, tmp_path: Path
) -> None:
    experiment_id = manager.create_experiment(unique("bad-input"), "refusals")
    with pytest.raises(InputError, match="'mae' has value 'low'"):
        manager.log_experiment_run(experiment_id, "r", {}, {"mae": "low"}, {})
    with pytest.raises(InputError, match="does not exist"):
        manager.log_experiment_run(experiment_id, "r", {}, {"mae": 1.0}, {"x": tmp_path / "no"})
    with pytest.raises(InputError, match="relative name"):
        manager.log_experiment_run(experiment_id, "r", {}, {"mae": 1.0}, {"../up": "text"})
    with pytest.raises(ExperimentNotFoundError, match="not found"):
        manager.log_experiment_run("987654", "r", {}, {"mae": 1.0}, {})
    assert manager.compare_experiments([experiment_id]).empty


# ---------------------------------------------------------------- compare


def test_compare_experiments_gives_one_row_per_run_with_params_and_metrics(
    manager: ExperimentManager,
) -> None:
    first = manager.create_experiment(unique("cmp-a"), "first")
    second = manager.create_experiment(unique("cmp-b"), "second")
    log_runs(
        manager,
        first,
        [
            ("a1", {"depth": 3}, {"mae": 12.0, "r2": 0.5}),
            ("a2", {"depth": 6}, {"mae": 9.0, "r2": 0.7}),
            ("a3", {"depth": 9}, {"mae": 10.5}),
        ],
    )
    log_runs(
        manager,
        second,
        [("b1", {"lr": 0.1}, {"mae": 8.0}), ("b2", {"lr": 0.01}, {"mae": 11.0})],
    )

    frame = manager.compare_experiments([first, second])

    assert frame.shape[0] == 5
    assert set(frame["experiment_id"]) == {first, second}
    assert frame["run_id"].is_unique
    for column in ("run_id", "run_name", "experiment_name", "status", "start_time", "end_time"):
        assert column in frame.columns
    assert [c for c in frame.columns if c.startswith(("params.", "metrics."))] == [
        "params.depth",
        "params.lr",
        "metrics.mae",
        "metrics.r2",
    ]
    assert frame["metrics.mae"].dtype == "float64"
    assert pd.api.types.is_datetime64_any_dtype(frame["start_time"])
    # newest first, and runs that did not log a metric or param hold NaN / None
    assert frame["start_time"].is_monotonic_decreasing
    by_name = frame.set_index("run_name")
    assert math.isnan(by_name.loc["a3", "metrics.r2"])
    assert pd.isna(by_name.loc["b1", "params.depth"])
    assert by_name.loc["a2", "params.depth"] == "6"
    assert frame.sort_values("metrics.mae")["run_name"].tolist() == ["b1", "a2", "a3", "b2", "a1"]


def test_compare_refuses_nothing_and_unknown_experiments(manager: ExperimentManager) -> None:
    with pytest.raises(InputError, match="no experiment given"):
        manager.compare_experiments([])
    with pytest.raises(ExperimentNotFoundError, match="no-such-experiment"):
        manager.compare_experiments(["no-such-experiment"])


# ---------------------------------------------------------------- best run


@pytest.fixture(scope="module")
def scored(manager: ExperimentManager) -> tuple[str, dict[str, str]]:
    name = unique("scored")
    experiment_id = manager.create_experiment(name, "runs with opposite metric directions")
    run_ids = log_runs(
        manager,
        experiment_id,
        [
            ("low-f1-low-mae", {}, {"macro_f1": 0.61, "mae": 7.0, "mae_margin": 0.1}),
            ("high-f1-high-mae", {}, {"macro_f1": 0.92, "mae": 14.0, "mae_margin": 0.4}),
            ("middle", {}, {"macro_f1": 0.80, "mae": 9.0, "mae_margin": 0.2}),
            ("nan-mae", {}, {"macro_f1": 0.70, "mae": float("nan")}),
            ("f1-only", {}, {"macro_f1": 0.75}),
        ],
    )
    return experiment_id, run_ids


def test_best_run_takes_the_lowest_mae(
    manager: ExperimentManager, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, run_ids = scored
    best = manager.get_best_run(experiment_id, "mae")
    assert best.info.run_id == run_ids["low-f1-low-mae"]  # NaN and missing values never win


def test_best_run_takes_the_highest_f1(
    manager: ExperimentManager, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, run_ids = scored
    assert (
        manager.get_best_run(experiment_id, "macro_f1").info.run_id == run_ids["high-f1-high-mae"]
    )
    # a margin over a baseline grows when the model improves, even in MAE units
    assert (
        manager.get_best_run(experiment_id, "mae_margin").info.run_id == run_ids["high-f1-high-mae"]
    )


def test_explicit_direction_overrides_the_inferred_one(
    manager: ExperimentManager, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, run_ids = scored
    assert (
        manager.get_best_run(experiment_id, "macro_f1", direction="min").info.run_id
        == run_ids["low-f1-low-mae"]
    )
    assert (
        manager.get_best_run(experiment_id, "mae", direction="max").info.run_id
        == run_ids["high-f1-high-mae"]
    )
    with pytest.raises(InputError, match="'min' or 'max'"):
        manager.get_best_run(experiment_id, "mae", direction="lowest")


def test_best_run_ties_go_to_the_most_recent_run(manager: ExperimentManager) -> None:
    experiment_id = manager.create_experiment(unique("ties"), "equal scores")
    run_ids = log_runs(
        manager, experiment_id, [("older", {}, {"mae": 5.0}), ("newer", {}, {"mae": 5.0})]
    )
    assert manager.get_best_run(experiment_id, "mae").info.run_id == run_ids["newer"]


def test_unknown_metric_names_the_metrics_that_exist(
    manager: ExperimentManager, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, _ = scored
    with pytest.raises(RunNotFoundError, match=r"'pr_auc'.*macro_f1, mae, mae_margin"):
        manager.get_best_run(experiment_id, "pr_auc")
    with pytest.raises(ExperimentNotFoundError):
        manager.get_best_run("no-such-experiment", "mae")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mae", "min"),
        ("test_rmse", "min"),
        ("cashflow.smape", "min"),
        ("val/loss", "min"),
        ("max_error", "min"),
        ("p95_latency_ms", "min"),
        ("macro_f1", "max"),
        ("accuracy", "max"),
        ("pr_auc", "max"),
        ("recall_at_alert_rate", "max"),
        ("mae_improvement", "max"),
        ("throughput", "max"),
    ],
)
def test_metric_direction_rules(name: str, expected: str) -> None:
    assert metric_direction(name) == expected


def test_metric_direction_registry_can_be_extended(
    manager: ExperimentManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert metric_direction("drift_share") == "max"
    monkeypatch.setitem(METRIC_DIRECTIONS, "drift_share", "min")
    assert metric_direction("drift_share") == "min"
    experiment_id = manager.create_experiment(unique("registry"), "custom direction")
    run_ids = log_runs(
        manager,
        experiment_id,
        [("calm", {}, {"drift_share": 0.1}), ("wild", {}, {"drift_share": 0.6})],
    )
    assert manager.get_best_run(experiment_id, "drift_share").info.run_id == run_ids["calm"]


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(_common.console, "width", 200)  # keep table cells on one line
    return CliRunner()


def test_cli_list_compare_and_best(
    cli: CliRunner, manager: ExperimentManager, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, run_ids = scored
    name = manager.get_experiment(experiment_id).name

    listed = cli.invoke(experiments_cli.app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert name in listed.output
    assert "runs with opposite metric directions" in listed.output

    compared = cli.invoke(experiments_cli.app, ["compare", name, "--sort", "mae"])
    assert compared.exit_code == 0, compared.output
    lines = compared.output.splitlines()
    order = [
        next(i for i, line in enumerate(lines) if run in line)
        for run in ("low-f1-low-mae", "middle", "high-f1-high-mae")
    ]
    assert order == sorted(order)  # lowest MAE first

    best = cli.invoke(experiments_cli.app, ["best", name, "--metric", "macro_f1"])
    assert best.exit_code == 0, best.output
    assert "high-f1-high-mae" in best.output
    assert run_ids["high-f1-high-mae"] in best.output
    assert "highest is best" in best.output

    lowest = cli.invoke(experiments_cli.app, ["best", name, "-m", "macro_f1", "--direction", "min"])
    assert "low-f1-low-mae" in lowest.output


def test_cli_compare_writes_every_run_to_csv(
    cli: CliRunner, manager: ExperimentManager, scored: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    experiment_id, run_ids = scored
    out = tmp_path / "runs.csv"
    result = cli.invoke(
        experiments_cli.app, ["compare", experiment_id, "--limit", "1", "--csv", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = pd.read_csv(out)
    assert set(written["run_id"]) == set(run_ids.values())
    assert "metrics.macro_f1" in written.columns


def test_cli_unknown_metric_is_one_red_line_and_exit_2(
    home: Path, scored: tuple[str, dict[str, str]]
) -> None:
    experiment_id, _ = scored
    titans = Path(sys.executable).with_name("titans")
    done = subprocess.run(  # the real entry point, so error handling is what a user sees
        [str(titans), "experiments", "best", experiment_id, "--metric", "pr_auc"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "no run in experiment" in done.stderr
    assert "Traceback" not in done.stderr
