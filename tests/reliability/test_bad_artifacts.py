"""Bad artifacts: a version whose artifact is corrupted, missing, or whose predictions hold NaN.
Promotion refuses each with a reason naming the gate, and what serves does not change — not
even when the alias is moved to it behind the registry manager's back."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

from _support.figures import Figures
from _support.serving import serving_settings, train_version
from titans.governance.governance import ModelGovernanceManager
from titans.models.train import configure_mlflow
from titans.registry.registry_manager import ModelRegistryManager
from titans.serving.model_store import ModelStore

pytestmark = [pytest.mark.slow]

AMOUNT = "titans-amount"


def _artifact(client: object, version: str) -> Path:
    """The pickled TrainedModel file of ``titans-amount`` ``version`` on local disk."""
    uri = client.get_model_version_download_uri(AMOUNT, version)  # type: ignore[attr-defined]
    root = Path(urlparse(uri).path) if "://" in uri else Path(uri)
    (found,) = root.rglob("trained_model.pkl")
    return found


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x80\x05 not a pickle: the disk lied" + bytes(range(256)))


def _missing(path: Path) -> None:
    path.unlink()


def _nan(path: Path) -> None:
    """Same model, but its interval is NaN: every prediction carries NaN bounds."""
    trained = pickle.loads(path.read_bytes())
    trained.state["log_interval"] = (math.nan, math.nan)
    path.write_bytes(pickle.dumps(trained))


BREAKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupted": (_corrupt, "artifact"),
    "missing": (_missing, "artifact"),
    "nan predictions": (_nan, "validation"),
}


def test_bad_artifacts_are_refused_and_serving_is_unchanged(
    registry_copy: Callable[[str], Path], figures: Figures
) -> None:
    home = registry_copy("bad-artifacts")
    settings = serving_settings(home, [])
    client = configure_mlflow(settings)
    manager = ModelRegistryManager(settings)
    governance = ModelGovernanceManager(settings, manager.store)
    serving = ModelStore(settings, ["amount"], client=client)
    serving.refresh()
    assert serving.get("amount").version == "1"  # type: ignore[union-attr]
    refusals: dict[str, tuple[str, str]] = {}
    for seed, (label, (breakage, _)) in enumerate(BREAKAGES.items(), start=11):
        version = train_version(settings, "amount", rows=2_000, seed=seed)
        breakage(_artifact(client, version))
        request = governance.request_model_approval(f"models:/{AMOUNT}/{version}", "t", "ann")
        governance.approve(request, "bob", "approved before the artifact broke")
        assert not manager.promote_model(AMOUNT, version, "production", actor="ann")
        refusal = manager.last_refusal
        assert refusal is not None
        refusals[label] = (refusal.gate, refusal.reason)
        assert manager.get_alias_version(AMOUNT, "production") == "1"
        # moved out of band anyway: the API keeps the last good model and says why
        client.set_registered_model_alias(AMOUNT, "production", version)
        outcome = serving.refresh()
        assert outcome["amount"].startswith("failed"), outcome
        assert serving.get("amount").version == "1"  # type: ignore[union-attr]
        status = serving.status()
        assert status.status == "degraded" and "still serving version 1" in status.reasons[0]
        client.set_registered_model_alias(AMOUNT, "production", "1")
        serving.refresh()
        assert serving.status().status == "ok"
        figures.record("bad artifacts", f"{label}: refused at gate", refusal.gate)
    figures.record("bad artifacts", "serving version throughout", "1")
    for label, (gate, reason) in refusals.items():
        assert gate == BREAKAGES[label][1], (label, gate, reason)
        assert reason and "\n" not in reason
    assert "does not load" in refusals["corrupted"][1]
    assert "does not load" in refusals["missing"][1]
    assert "NaN" in refusals["nan predictions"][1], refusals["nan predictions"]
