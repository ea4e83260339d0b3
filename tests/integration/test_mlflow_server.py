"""ExperimentManager against a real `mlflow server` on loopback (REST store, proxied artifacts)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from titans.config import Settings
from titans.errors import ExperimentNotFoundError, RunNotFoundError
from titans.experiments.experiment_manager import ExperimentManager

pytestmark = pytest.mark.integration


def test_experiment_manager_round_trip_on_a_real_server(mlflow_server: str, tmp_path: Path) -> None:
    manager = ExperimentManager(Settings(home=tmp_path, TITANS_TRACKING_URI=mlflow_server))
    assert manager.tracking_uri == mlflow_server
    name = f"server-{uuid.uuid4().hex[:8]}"

    experiment_id = manager.create_experiment(name, "category model tuning", tags={"team": "ml"})
    assert manager.create_experiment(name, "ignored on the second call") == experiment_id
    experiment = manager.client.get_experiment(experiment_id)
    assert experiment.tags["mlflow.note.content"] == "category model tuning"
    assert experiment.tags["team"] == "ml"
    # the server chose the artifact root (its proxy), not a folder on the client's disk
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    report = tmp_path / "report.md"
    report.write_text("# eval\n")
    run_ids = {
        depth: manager.log_experiment_run(
            experiment_id,
            f"depth-{depth}",
            {"max_depth": depth},
            {"macro_f1": f1, "mae": mae},
            {"report": report, "config": {"max_depth": depth}},
        )
        for depth, f1, mae in [(3, 0.71, 12.0), (6, 0.88, 15.0), (9, 0.83, 9.5)]
    }

    frame = manager.compare_experiments([name])
    assert len(frame) == 3
    assert set(frame["run_id"]) == set(run_ids.values())
    assert frame.sort_values("metrics.mae")["params.max_depth"].tolist() == ["9", "3", "6"]

    assert manager.get_best_run(experiment_id, "macro_f1").info.run_id == run_ids[6]
    assert manager.get_best_run(experiment_id, "mae").info.run_id == run_ids[9]
    with pytest.raises(RunNotFoundError, match="pr_auc"):
        manager.get_best_run(experiment_id, "pr_auc")
    with pytest.raises(ExperimentNotFoundError):
        manager.compare_experiments([f"{name}-missing"])

    # artifacts went through the server's proxy and come back byte for byte
    best = run_ids[9]
    listed = {f.path for f in manager.client.list_artifacts(best)}
    assert listed == {"config.json", "report"}
    downloaded = Path(manager.client.download_artifacts(best, "", str(tmp_path / "dl")))
    assert (downloaded / "report" / "report.md").read_text() == "# eval\n"
    assert json.loads((downloaded / "config.json").read_text()) == {"max_depth": 9}
