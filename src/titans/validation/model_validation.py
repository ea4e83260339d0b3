"""ModelValidationPipeline: performance, stability and fairness gates on a model's own holdout."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import titans
from titans.config import Settings, ValidationThresholds
from titans.errors import InputError, TitansError
from titans.models.base import ModelSpec, get_spec
from titans.models.train import configure_mlflow
from titans.validation.fairness import check_fairness
from titans.validation.performance import check_performance
from titans.validation.resolve import (
    LoadedModel,
    load_model,
    load_trained_model,
)
from titans.validation.result import CheckResult, json_safe
from titans.validation.stability import check_stability

#: where the JSON report lands in the validated model's run
REPORT_ARTIFACT = "validation/validation_report.json"
#: model version tag the registry's rollback reads ("passed validation before")
STATUS_TAG = "validation_status"
CHECKS: tuple[str, ...] = ("performance", "stability", "fairness")


class ModelValidationPipeline:
    """Validate a logged Titans model on the held-out rows of the run that trained it.

    Each ``validate_*`` method returns a bool and records its full result in ``last_report``;
    ``run_full_validation`` runs all three, logs the report to the model's run as
    ``validation/validation_report.json`` and tags a registered version
    ``validation_status=passed|failed``.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.last_report: dict[str, Any] = {}

    # -- the task list's API ----------------------------------------------------------------

    def validate_model_performance(self, model_uri: str, champion_uri: str | None = None) -> bool:
        """Primary metric on the holdout clears the floor, beats the baseline by the margin and,
        with ``champion_uri``, is not worse than the champion on the same rows beyond tolerance.
        """
        return self._performance(self._load(model_uri), champion_uri).passed

    def validate_model_stability(self, model_uri: str) -> bool:
        """Edge cases give valid outputs; predictions are deterministic; +-1 % noise is absorbed."""
        return self._stability(self._load(model_uri)).passed

    def validate_model_fairness(self, model_uri: str) -> bool:
        """The model's metric per segment; fails when the largest gap exceeds the bound."""
        return self._fairness(self._load(model_uri)).passed

    def run_full_validation(
        self, model_uri: str, champion_uri: str | None = None
    ) -> dict[str, bool]:
        """All three checks, the JSON report logged to the run, the version tagged.

        Returns ``{"performance": .., "stability": .., "fairness": .., "passed": ..}``.
        """
        loaded = self._load(model_uri, fresh_report=True)
        verdicts = {
            "performance": self._performance(loaded, champion_uri).passed,
            "stability": self._stability(loaded).passed,
            "fairness": self._fairness(loaded).passed,
        }
        verdicts["passed"] = all(verdicts.values())
        self._publish(loaded)
        return verdicts

    # -- one check each -----------------------------------------------------------------------

    def _performance(self, loaded: LoadedModel, champion_uri: str | None) -> CheckResult:
        spec = self._spec(loaded)
        champion = champion_notes = None
        if champion_uri is not None:
            champion_loaded = self._champion(champion_uri, spec)
            champion = champion_loaded.trained
            champion_notes = self._overlap_notes(champion_loaded, loaded.holdout)
        return self._run(
            loaded,
            "performance",
            lambda: check_performance(
                spec,
                loaded.trained,
                loaded.holdout,
                logged_baseline=self._logged_baseline(loaded, spec),
                thresholds=self._thresholds(spec),
                champion=champion,
                champion_uri=champion_uri,
                champion_notes=champion_notes,
            ),
        )

    def _stability(self, loaded: LoadedModel) -> CheckResult:
        spec = self._spec(loaded)
        reloaded = load_trained_model(loaded.resolved.load_uri)
        return self._run(
            loaded,
            "stability",
            lambda: check_stability(
                spec,
                loaded.trained,
                reloaded,
                loaded.holdout,
                self._thresholds(spec),
                seed=self.settings.seed,
            ),
        )

    def _fairness(self, loaded: LoadedModel) -> CheckResult:
        spec = self._spec(loaded)
        return self._run(
            loaded,
            "fairness",
            lambda: check_fairness(
                spec,
                loaded.trained,
                loaded.holdout,
                self._thresholds(spec),
                amount_bands=self.settings.validation.amount_bands,
            ),
        )

    # -- plumbing -----------------------------------------------------------------------------

    def _load(self, model_uri: str, fresh_report: bool = False) -> LoadedModel:
        loaded = load_model(model_uri, self.settings)
        spec = self._spec(loaded)
        if fresh_report or self.last_report.get("model_uri") != loaded.resolved.uri:
            self.last_report = {
                **loaded.resolved.to_dict(),
                "model": spec.name,
                "task": spec.task,
                "primary_metric": spec.primary_metric,
                "direction": spec.direction,
                "holdout_rows": len(loaded.holdout),
                "thresholds": {
                    **self._thresholds(spec).model_dump(),
                    "amount_bands": self.settings.validation.amount_bands,
                },
                "checks": {},
                "passed": None,
                "failed_checks": [],
            }
        return loaded

    def _spec(self, loaded: LoadedModel) -> ModelSpec:
        return get_spec(loaded.trained.spec_name, self.settings)

    def _thresholds(self, spec: ModelSpec) -> ValidationThresholds:
        return self.settings.validation.for_model(spec.name)

    def _run(self, loaded: LoadedModel, name: str, check: Callable[[], CheckResult]) -> CheckResult:
        started = time.perf_counter()
        try:
            result = check()
        except InputError:
            raise  # a bad setting or argument: the user fixes it, there is no verdict to record
        except Exception as exc:  # a model that breaks the check fails it, with the reason kept
            result = CheckResult(name)
            message = " ".join(str(exc).split())[:300]
            result.fail(f"the check could not run: {type(exc).__name__}: {message}")
        result.details["seconds"] = round(time.perf_counter() - started, 3)
        checks = self.last_report.setdefault("checks", {})
        checks[name] = result.to_dict()
        done = [c for c in CHECKS if c in checks]
        self.last_report["failed_checks"] = [c for c in done if not checks[c]["passed"]]
        self.last_report["passed"] = all(checks[c]["passed"] for c in done)
        self.last_report["complete"] = len(done) == len(CHECKS)
        self.last_report["validated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.last_report["titans_version"] = titans.__version__
        return result

    def _client(self) -> MlflowClient:
        return configure_mlflow(self.settings)

    def _logged_baseline(self, loaded: LoadedModel, spec: ModelSpec) -> float | None:
        run = self._client().get_run(loaded.resolved.run_id)
        value = run.data.metrics.get(f"baseline_{spec.primary_metric}")
        return None if value is None or not math.isfinite(value) else float(value)

    def _champion(self, champion_uri: str, spec: ModelSpec) -> LoadedModel:
        champion = load_model(champion_uri, self.settings)
        if champion.trained.spec_name != spec.name:
            raise InputError(
                f"champion {champion_uri} is a {champion.trained.spec_name} model, not "
                f"{spec.name}; compare versions of the same model"
            )
        return champion

    def _overlap_notes(self, champion: LoadedModel, holdout: pd.DataFrame) -> list[str]:
        """Warn when the champion was trained on days inside this holdout (its score flatters)."""
        params = self._client().get_run(champion.resolved.run_id).data.params
        train_end = params.get("train_end")
        if not train_end or holdout.empty:
            return []
        start = pd.Timestamp(holdout["date"].min()).normalize()
        if pd.Timestamp(train_end) >= start:
            return [
                f"the champion was trained on data up to {train_end}, overlapping this holdout "
                f"(from {start.date()}): its score here may be optimistic"
            ]
        return []

    def _publish(self, loaded: LoadedModel) -> None:
        """Log the report to the model's run; tag the run and the registered version."""
        resolved = loaded.resolved
        status = "passed" if self.last_report.get("passed") else "failed"
        client = self._client()
        text = json.dumps(json_safe(self.last_report), indent=2, sort_keys=False)
        try:
            client.log_text(resolved.run_id, text, REPORT_ARTIFACT)
            client.set_tag(resolved.run_id, f"titans.{STATUS_TAG}", status)
            if resolved.registered_name is not None and resolved.version is not None:
                name, version = resolved.registered_name, resolved.version
                client.set_model_version_tag(name, version, STATUS_TAG, status)
                client.set_model_version_tag(
                    name, version, "validation_report", f"runs:/{resolved.run_id}/{REPORT_ARTIFACT}"
                )
                client.set_model_version_tag(
                    name, version, "validated_at", str(self.last_report.get("validated_at"))
                )
        except MlflowException as exc:
            raise TitansError(
                f"validation of {resolved.uri} finished ({status}) but its report could not be "
                f"logged to run {resolved.run_id}: {str(exc).splitlines()[0]}; "
                "check the tracking server and rerun"
            ) from exc
