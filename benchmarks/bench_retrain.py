"""Retrain end to end: ``AutoRetrainingPipeline.trigger_retraining`` from trigger to a challenger
registered, validated, approved, in ``staging`` and in an A/B test against production.

In a throw-away TITANS_HOME: the category model is trained on ``champion_rows`` generated rows and
promoted to production (a policy that auto-approves a version that passed validation; the
validation gates relaxed so that a small champion passes them). Then one retrain is timed on
``rows`` fresh generated rows, the chain the ``titans retrain run`` command calls. The anchor is
the chain's own "retrain" step (training, logging and registering the challenger), so the ratio
says what the rest of the chain (data checks, versioning, validation, approval, A/B) adds.

Usage: python benchmarks/bench_retrain.py [ROWS] [--champion-rows 1500]   (prints JSON)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_serving import RELAXED_GATES, PromotedModel  # noqa: E402

#: auto-approve a version that passed validation (as tests/retraining/test_pipeline.py does)
POLICY = (
    "version: 1\ndefault:\n  auto_approve:\n    enabled: true\n    requires_validation: true\n"
    "    min_primary_improvement: 0.0\n    first_version_auto_approve: true\n"
)


def run(
    rows: int | None = None,
    champion_rows: int = 1_500,
    seed: int = 7,
    model: PromotedModel | None = None,
) -> dict[str, Any]:
    """Time one trigger_retraining on ``rows`` rows (default ci_rows) of the category model in
    production: ``model``'s (its registry gains a challenger in staging and an A/B test), or a
    champion trained here on ``champion_rows`` rows."""
    from titans.config import Settings

    if model is None:
        with tempfile.TemporaryDirectory(prefix="titans-bench-retrain-") as tmp:
            home = Path(tmp) / "home"
            home.mkdir()
            settings = _settings(home, Path(tmp) / "policy.yaml")
            t0 = time.perf_counter()
            _champion(settings, champion_rows, seed)
            setup_s = time.perf_counter() - t0
            return _retrain(settings, rows, seed, champion_rows, round(setup_s, 1))
    with tempfile.TemporaryDirectory(prefix="titans-bench-retrain-") as tmp:
        settings = _settings(model.home, Path(tmp) / "policy.yaml")
        rows = Settings().ci_rows if rows is None else rows
        return _retrain(settings, rows, seed + 1, model.rows, model.train_seconds)


def _settings(home: Path, policy: Path) -> Any:
    from titans.config import MODEL_KEYS, RetrainingSettings, Settings, ValidationSettings

    policy.write_text(POLICY, encoding="utf-8")
    return Settings(
        home=home,
        governance_policy_path=policy,
        validation=ValidationSettings.model_validate({key: RELAXED_GATES for key in MODEL_KEYS}),
        retraining=RetrainingSettings(min_new_labels=1),
    )


def _champion(settings: Any, rows: int, seed: int) -> None:
    """The category model on ``rows`` generated rows, promoted to production."""
    from titans.data.synth import generate
    from titans.models.train import train_models
    from titans.registry.registry_manager import ModelRegistryManager

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (champion,) = train_models(
            generate(rows, seed=seed), models=["category"], seed=seed, settings=settings
        )
    registry = ModelRegistryManager(settings)
    for stage in ("Staging", "Production"):
        if not registry.promote_model(champion.registered_name, champion.version, stage, "bench"):
            raise RuntimeError(f"could not promote the champion: {registry.last_refusal}")


def _retrain(
    settings: Any, rows: int | None, seed: int, champion_rows: int, setup_s: float
) -> dict[str, Any]:
    from titans.data.synth import generate
    from titans.registry.registry_manager import ModelRegistryManager
    from titans.retraining.pipeline import AutoRetrainingPipeline

    rows = settings.ci_rows if rows is None else rows
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    name = settings.registered_name("category")
    base = generate(rows, seed=seed + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipeline = AutoRetrainingPipeline(settings)
        started = time.perf_counter()
        outcome = pipeline.trigger_retraining(
            "category", "benchmark: retrain end to end", base_data=base
        )
        seconds = time.perf_counter() - started
    registry = ModelRegistryManager(settings)
    staging = registry.get_alias_version(name, "staging")
    production = registry.get_alias_version(name, "production")
    steps = {s.name: round(s.seconds, 2) for s in outcome.steps}
    training = steps.get("retrain")
    return {
        "rows": rows,
        "champion_rows": champion_rows,
        "champion_setup_seconds": setup_s,
        "seconds": round(seconds, 2),
        "retrain_step_seconds": training,
        "ratio_to_training": round(seconds / training, 2) if training else None,
        "status": outcome.status,
        "ok": outcome.ok,
        "parent_version": outcome.parent_version,
        "new_version": outcome.new_version,
        "staging_alias": staging,
        "production_alias": production,
        # the challenger in staging and under test, production untouched
        "challenger_staged": outcome.ok
        and staging == outcome.new_version
        and production == outcome.parent_version,
        "ab_test": outcome.ab_test,
        "steps": steps,
        "detail": outcome.detail,
        "command": f"python benchmarks/bench_retrain.py {rows} --champion-rows {champion_rows}"
        " (make bench: the champion is the model the serving benchmark served)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=None)
    parser.add_argument("--champion-rows", type=int, default=1_500)
    args = parser.parse_args()
    print(json.dumps(run(args.rows, args.champion_rows), indent=1))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
