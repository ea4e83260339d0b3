"""ModelRegistryManager: register, compare, promote and roll back model versions, with gates.

MLflow 3 retires stages, so the task list's stages None -> Staging -> Production -> Archived are
the aliases ``staging`` and ``production`` plus a ``stage`` tag on each version.
:meth:`ModelRegistryManager.promote_model` is the only path that moves those aliases; it runs
its gates (artifact loads, validation, approval) under a per-model lock in the ops store, so two
promotions of one model are serialised, and every move or refusal is an audit entry.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from titans.config import Settings
from titans.errors import InputError, ModelNotFoundError, TitansError
from titans.governance.audit import AuditEntry, AuditLogger
from titans.models.base import ModelSpec, TrainedModel, get_spec
from titans.models.pyfunc import load_trained
from titans.models.train import configure_mlflow, load_holdout
from titans.notifications import Notifier
from titans.store import HeldLock, LockTimeout, Store, acquire_lock
from titans.validation.performance import improvement, relative_improvement
from titans.validation.result import json_safe

log = logging.getLogger(__name__)

#: the stages a promotion can target, by lower-case name -> the ``stage`` tag value
STAGES: dict[str, str] = {"staging": "Staging", "production": "Production"}
STAGE_TAG = "stage"
ARCHIVED = "Archived"
NO_STAGE = "None"
VALIDATION_STATUS_TAG = "validation_status"
#: audit actions that record an alias move (their details hold ``alias`` and ``to_version``)
ALIAS_MOVES = frozenset({"registry.promoted", "registry.rolled_back"})
#: segmentations compare_models reports deltas for
COMPARE_SEGMENTS: tuple[str, ...] = ("payment_method", "type", "amount_band")
#: numeric predictions "agree" when within this relative tolerance of each other
AGREEMENT_RTOL = 0.05
#: tag keys copied from the training run onto a version by register_model
_RUN_TAGS_COPIED = (
    "titans.model",
    "titans.data_version",
    "titans.git_commit",
    "titans.package_version",
    "titans.seed",
    "titans.data_source",
)


class Validator(Protocol):
    """What promotion needs of titans.validation.ModelValidationPipeline."""

    last_report: dict[str, Any]

    def run_full_validation(
        self, model_uri: str, champion_uri: str | None = None
    ) -> dict[str, bool]: ...


class Governance(Protocol):
    """What promotion needs of titans.governance.ModelGovernanceManager."""

    def is_approved(self, model_name: str, version: str) -> bool: ...

    def evaluate_policy(
        self, model_name: str, validation_passed: bool, primary_improvement: float | None
    ) -> Any: ...

    def auto_approve_if_allowed(
        self, model_uri: str, validation_passed: bool, primary_improvement: float | None
    ) -> str | None: ...


@dataclass(frozen=True)
class PromotionRefusal:
    """Why a promotion or rollback did not happen: the gate that refused, and its reason."""

    gate: str
    reason: str
    model: str
    version: str
    stage: str | None = None
    action: str = "promote"
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        target = f" to {self.stage}" if self.stage else ""
        what = "promotion" if self.action == "promote" else self.action
        return (
            f"{what} of {self.model} version {self.version}{target} refused at the "
            f"{self.gate} gate: {self.reason}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Refused(Exception):
    """Internal: a gate said no (turned into a PromotionRefusal, audited, False returned)."""

    def __init__(self, gate: str, reason: str) -> None:
        super().__init__(reason)
        self.gate = gate
        self.reason = reason


def normalize_stage(stage: str) -> str:
    """``Staging`` or ``Production`` from any casing; anything else is an InputError.

    >>> normalize_stage("PRODUCTION")
    'Production'
    >>> normalize_stage("archived")
    Traceback (most recent call last):
    ...
    titans.errors.InputError: stage 'archived' cannot be promoted to; use Staging or Production \
(roll back with `titans registry rollback`)
    """
    key = str(stage).strip().lower()
    if key not in STAGES:
        raise InputError(
            f"stage {stage!r} cannot be promoted to; use Staging or Production "
            "(roll back with `titans registry rollback`)"
        )
    return STAGES[key]


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _not_found(exc: MlflowException) -> bool:
    return exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}


class ModelRegistryManager:
    """The registry workflow of the Titans models on MLflow, governed and audited.

    ``store`` is the ops store (locks, audit, approvals, alerts); ``validator``, ``governance``
    and ``notifier`` default to the platform's own (ModelValidationPipeline,
    ModelGovernanceManager, Notifier) built from the same settings and store.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        store: Store | None = None,
        validator: Validator | None = None,
        governance: Governance | None = None,
        notifier: Notifier | None = None,
        *,
        lock_ttl_seconds: float = 900.0,
        lock_timeout_seconds: float = 600.0,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.store = store if store is not None else Store(self.settings)
        self._validator = validator
        self._governance = governance
        self.notifier = notifier if notifier is not None else Notifier(self.settings, self.store)
        self.audit = AuditLogger(self.store)
        self.client: MlflowClient = configure_mlflow(self.settings)
        self.lock_ttl_seconds = lock_ttl_seconds
        self.lock_timeout_seconds = lock_timeout_seconds
        #: why the last promote_model / rollback_model call of this manager said no (or None)
        self.last_refusal: PromotionRefusal | None = None

    # ------------------------------------------------------------------ collaborators

    @property
    def validator(self) -> Validator:
        if self._validator is None:
            from titans.validation.model_validation import ModelValidationPipeline

            self._validator = ModelValidationPipeline(self.settings)
        return self._validator

    @property
    def governance(self) -> Governance:
        if self._governance is None:
            from titans.governance.governance import ModelGovernanceManager

            self._governance = ModelGovernanceManager(self.settings, self.store)
        return self._governance

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[dict[str, Any]]:
        """Every registered model: name, description, latest version and its aliases."""
        out = []
        for rm in self._registered_models():
            versions = [int(v.version) for v in (rm.latest_versions or [])]
            out.append(
                {
                    "name": rm.name,
                    "description": rm.description or "",
                    "latest_version": str(max(versions)) if versions else None,
                    "aliases": {a: str(v) for a, v in sorted((rm.aliases or {}).items())},
                }
            )
        return sorted(out, key=lambda m: m["name"])

    def _registered_models(self) -> Iterator[Any]:
        token = None
        for _ in range(10_000):  # bounded: 1M models at 100 per page
            page = self.client.search_registered_models(max_results=100, page_token=token)
            yield from page
            token = page.token
            if not token:
                return

    def get_versions(self, model_name: str) -> list[dict[str, Any]]:
        """Every version of ``model_name``, oldest first, with its aliases, stage and metrics.

        Aliases are read from the registered model (``search_model_versions`` leaves them empty
        on the sqlite store).
        """
        aliases = self._aliases(model_name)
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(version, []).append(alias)
        versions = self.client.search_model_versions(f"name = '{_quote(model_name)}'")
        rows = [
            self._version_row(mv, sorted(by_version.get(str(mv.version), []))) for mv in versions
        ]
        return sorted(rows, key=lambda r: int(r["version"]))

    def get_version(self, model_name: str, version: str | int) -> dict[str, Any]:
        """One version as :meth:`get_versions` describes it (with every tag and description)."""
        mv = self._model_version(model_name, str(version))
        aliases = sorted(a for a, v in self._aliases(model_name).items() if v == str(mv.version))
        row = self._version_row(mv, aliases)
        row["tags"] = dict(mv.tags or {})
        return row

    @staticmethod
    def _version_row(mv: ModelVersion, aliases: list[str]) -> dict[str, Any]:
        tags = dict(mv.tags or {})
        return {
            "name": mv.name,
            "version": str(mv.version),
            "aliases": aliases,
            "stage": tags.get(STAGE_TAG, NO_STAGE),
            "validation_status": tags.get(VALIDATION_STATUS_TAG),
            "primary_metric": tags.get("titans.primary_metric"),
            "primary_score": tags.get("titans.primary_score"),
            "data_version": tags.get("titans.data_version"),
            "git_commit": tags.get("titans.git_commit"),
            "parent_version": tags.get("titans.parent_version"),
            "run_id": mv.run_id,
            "source": mv.source,
            "created": pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC").isoformat(),
            "description": mv.description or "",
        }

    def _aliases(self, model_name: str) -> dict[str, str]:
        try:
            rm = self.client.get_registered_model(model_name)
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(
                    f"no registered model named {model_name!r}; list them with "
                    "`titans registry list` or train one with `titans train`"
                ) from exc
            raise
        return {a: str(v) for a, v in (rm.aliases or {}).items()}

    def get_alias_version(self, model_name: str, alias: str) -> str | None:
        """The version ``alias`` names, or None when the alias (or the model) does not exist."""
        try:
            return str(self.client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise

    def get_production_model(self, model_name: str) -> str:
        """``models:/<name>/<version>`` of the version the ``production`` alias names."""
        version = self.get_alias_version(model_name, "production")
        if version is None:
            raise ModelNotFoundError(
                f"{model_name} has no production version; promote one with "
                "`titans registry promote`"
            )
        return f"models:/{model_name}/{version}"

    def _model_version(self, model_name: str, version: str) -> ModelVersion:
        try:
            return self.client.get_model_version(model_name, version)
        except MlflowException as exc:
            if _not_found(exc):
                raise ModelNotFoundError(
                    f"{model_name} has no version {version!r}; list versions with "
                    f"`titans registry show {model_name}`"
                ) from exc
            raise

    # ------------------------------------------------------------------ registering

    def register_model(
        self,
        model_uri: str,
        model_name: str,
        version_description: str | None = None,
        *,
        actor: str = "system",
    ) -> ModelVersion:
        """Register a logged model as a new version of ``model_name``, tagged and described.

        The version gets the training run's data version, code version, seed and metrics
        summary as tags, ``stage=None``, and ``version_description`` as its description.
        """
        if not model_name or not model_name.strip():
            raise InputError("a registered model name is required, e.g. titans-category")
        import mlflow

        try:
            # MLflow eprints "Successfully registered model" to stderr; library code stays quiet.
            with contextlib.redirect_stderr(io.StringIO()):
                mv = mlflow.register_model(model_uri, model_name.strip())
        except MlflowException as exc:
            raise ModelNotFoundError(
                f"could not register {model_uri} as {model_name} ({_first_line(exc)}); "
                "pass a logged model URI such as models:/m-<id> or runs:/<run_id>/model"
            ) from exc
        name, version = mv.name, str(mv.version)
        tags = self._tags_from_run(mv.run_id)
        tags[STAGE_TAG] = NO_STAGE
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, value)
        if version_description:
            self.client.update_model_version(name, version, description=version_description)
        self.audit.log(
            "registry.registered",
            actor=actor,
            model_name=name,
            model_version=version,
            details={
                "model_uri": model_uri,
                "run_id": mv.run_id,
                "data_version": tags.get("titans.data_version"),
                "git_commit": tags.get("titans.git_commit"),
                "description": version_description or "",
            },
        )
        return self.client.get_model_version(name, version)

    def _tags_from_run(self, run_id: str | None) -> dict[str, str]:
        """Data version, code version, seed and a metrics summary from the training run."""
        if not run_id:
            return {}
        run = self.client.get_run(run_id)
        tags = {k: run.data.tags[k] for k in _RUN_TAGS_COPIED if k in run.data.tags}
        metrics = {
            k: v
            for k, v in sorted(run.data.metrics.items())
            if not k.startswith("baseline_") and math.isfinite(v)
        }
        if metrics:
            tags["titans.metrics"] = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        key = tags.get("titans.model")
        if key:
            spec = get_spec(key, self.settings)
            score = run.data.metrics.get(spec.primary_metric)
            baseline = run.data.metrics.get(f"baseline_{spec.primary_metric}")
            tags["titans.primary_metric"] = spec.primary_metric
            if score is not None:
                tags["titans.primary_score"] = f"{score:.6g}"
            if baseline is not None:
                tags["titans.baseline_score"] = f"{baseline:.6g}"
        return tags

    # ------------------------------------------------------------------ promotion

    def promote_model(
        self, model_name: str, version: str | int, stage: str, actor: str = "system"
    ) -> bool:
        """Move the ``staging`` or ``production`` alias to ``version`` if every gate passes.

        Gates, in order, under the model's lock: the version exists and its artifact loads;
        validation passes (for Production also: not worse than the current production on the
        same holdout beyond the tolerance); an approval is granted or the policy auto-approves.
        Then the alias moves, the version is tagged with its stage, the previous production
        version is tagged Archived, an audit entry is written and an ``info`` notification
        sent. A refusal returns False, moves nothing, is audited and kept in ``last_refusal``.
        A stage other than Staging/Production raises InputError (after auditing the refusal).
        """
        version = str(version).strip()
        self.last_refusal = None
        try:
            stage_name = normalize_stage(stage)
        except InputError as exc:
            self._refuse("promote", model_name, version, str(stage), "stage", str(exc), actor, {})
            raise
        alias = stage_name.lower()
        gates: dict[str, Any] = {}
        try:
            with self._lock(model_name, actor) as held:
                try:
                    moved = self._promote_locked(
                        model_name, version, stage_name, alias, actor, gates, held
                    )
                except _Refused as refused:
                    self._refuse(
                        "promote", model_name, version, stage_name, refused.gate,
                        refused.reason, actor, gates,
                    )  # fmt: skip
                    return False
        except LockTimeout as exc:
            self._refuse("promote", model_name, version, stage_name, "lock", str(exc), actor, gates)
            return False
        self.notifier.notify(
            "info",
            f"{model_name} version {version} promoted to {stage_name}",
            {
                "model_name": model_name,
                "version": version,
                "stage": stage_name,
                "previous_version": moved.get("from_version"),
                "actor": actor,
            },
        )
        return True

    def _promote_locked(
        self,
        name: str,
        version: str,
        stage_name: str,
        alias: str,
        actor: str,
        gates: dict[str, Any],
        held: HeldLock,
    ) -> dict[str, Any]:
        # gate 1: the version exists and its artifact loads
        mv = self._existing_version(name, version)
        current = self.get_alias_version(name, alias)
        production = self.get_alias_version(name, "production")
        if current == version:
            raise _Refused("stage", f"version {version} is already {stage_name}; nothing to move")
        if alias == "staging" and production == version:
            raise _Refused(
                "stage",
                f"version {version} is in Production; promote a newer version to Staging, "
                "or move production with `titans registry rollback`",
            )
        uri = f"models:/{name}/{version}"
        trained = self._load_artifact(uri)
        gates["artifact"] = {"loaded": True, "model": trained.spec_name}
        held.extend(self.lock_ttl_seconds)

        # gate 2: validation (against the current production for a Production promotion)
        champion_uri = (
            f"models:/{name}/{production}"
            if alias == "production" and production is not None
            else None
        )
        try:
            verdicts = self.validator.run_full_validation(uri, champion_uri=champion_uri)
        except TitansError as exc:
            gates["validation"] = {"passed": False, "error": str(exc)}
            raise _Refused("validation", f"validation could not run: {exc}") from exc
        report = getattr(self.validator, "last_report", {}) or {}
        gates["validation"] = {**{k: bool(v) for k, v in verdicts.items()}}
        if champion_uri is not None:
            gates["validation"]["champion_uri"] = champion_uri
        if not verdicts.get("passed", False):
            raise _Refused("validation", _validation_reasons(verdicts, report))
        held.extend(self.lock_ttl_seconds)

        # gate 3: approval (a human's, or the policy's on the measured improvement)
        gain = self._improvement(name, mv, trained, production)
        gates["improvement"] = gain
        try:
            gates["approval"] = self._approval(name, version, uri, gain["policy_improvement"])
        except TitansError as exc:  # a broken policy file, an unknown identity, ...
            gates["approval"] = {"granted_by": None, "error": str(exc)}
            raise _Refused("approval", f"the approval check failed: {exc}") from exc

        # the move
        moved = self._move(name, version, stage_name, alias, current, production)
        self._audit_move(
            "registry.promoted", name, version, actor, moved, json_safe({**moved, "gates": gates})
        )
        return moved

    def _approval(
        self, name: str, version: str, uri: str, policy_gain: float | None
    ) -> dict[str, Any]:
        """A person's granted approval, else the policy's; _Refused when neither."""
        governance = self.governance
        if governance.is_approved(name, version):
            return {"granted_by": "approval request"}
        request_id = governance.auto_approve_if_allowed(uri, True, policy_gain)
        if request_id is not None:
            return {"granted_by": "policy", "request_id": request_id}
        decision = governance.evaluate_policy(name, True, policy_gain)
        reason = getattr(decision, "reason", str(decision))
        raise _Refused(
            "approval",
            f"no approval granted and the policy does not auto-approve ({reason}); request one "
            f"with `titans governance request {uri}`",
        )

    def _existing_version(self, name: str, version: str) -> ModelVersion:
        try:
            return self._model_version(name, version)
        except ModelNotFoundError as exc:
            raise _Refused("exists", str(exc)) from exc

    def _load_artifact(self, uri: str) -> TrainedModel:
        try:
            return load_trained(uri)
        except Exception as exc:  # MLflow, pickle and I/O all fail differently
            raise _Refused(
                "artifact",
                f"the artifact of {uri} does not load ({type(exc).__name__}: "
                f"{_first_line(exc)}); re-log the model with `titans train`",
            ) from exc

    def _improvement(
        self, name: str, mv: ModelVersion, trained: TrainedModel, production: str | None
    ) -> dict[str, Any]:
        """The candidate's primary metric vs the current production's, both re-evaluated on
        the candidate's holdout; direction-aware, in the metric's units (positive = better).

        ``policy_improvement`` is what the governance policy judges: None when nothing else
        is in production (a first version), NaN when a score cannot be measured.
        """
        spec = get_spec(trained.spec_name, self.settings)
        holdout = load_holdout(str(mv.run_id), self.settings)
        score = float(spec.evaluate(trained, holdout).get(spec.primary_metric, math.nan))
        out: dict[str, Any] = {
            "metric": spec.primary_metric,
            "direction": spec.direction,
            "score": score,
            "holdout_rows": len(holdout),
            "production_version": None,
            "production_score": None,
            "policy_improvement": None,
        }
        if production is None or production == str(mv.version):
            baseline = _float_or_nan((mv.tags or {}).get("titans.baseline_score"))
            if math.isfinite(score) and math.isfinite(baseline):
                out["baseline_score"] = baseline
                out["improvement_over_baseline"] = improvement(score, baseline, spec.direction)
            return out
        champion = self._load_artifact(f"models:/{name}/{production}")
        reference = float(spec.evaluate(champion, holdout).get(spec.primary_metric, math.nan))
        gain = (
            improvement(score, reference, spec.direction)
            if math.isfinite(score) and math.isfinite(reference)
            else math.nan
        )
        out.update(production_version=production, production_score=reference)
        out["policy_improvement"] = gain
        if math.isfinite(gain):
            out["relative_improvement"] = relative_improvement(score, reference, spec.direction)
        return out

    def _move(
        self,
        name: str,
        version: str,
        stage_name: str,
        alias: str,
        current: str | None,
        production: str | None,
    ) -> dict[str, Any]:
        """Point ``alias`` at ``version`` and retag; undo the alias if the registry fails."""
        staging = self.get_alias_version(name, "staging")
        moved: dict[str, Any] = {
            "stage": stage_name,
            "alias": alias,
            "from_version": current,
            "to_version": version,
        }
        try:
            self.client.set_registered_model_alias(name, alias, version)
            try:
                self.client.set_model_version_tag(name, version, STAGE_TAG, stage_name)
                if alias == "production":
                    if staging == version:  # it moved on from staging
                        self.client.delete_registered_model_alias(name, "staging")
                        moved["staging_cleared"] = True
                    if current is not None and current != version:
                        self.client.set_model_version_tag(name, current, STAGE_TAG, ARCHIVED)
                        moved["archived_version"] = current
                elif current is not None and current not in {version, production}:
                    self.client.set_model_version_tag(name, current, STAGE_TAG, NO_STAGE)
            except MlflowException:
                self._restore_alias(name, alias, current)
                raise
        except MlflowException as exc:
            raise _Refused(
                "registry",
                f"the registry refused the move ({_first_line(exc)}); nothing moved, "
                "check the tracking server and retry",
            ) from exc
        return moved

    def _audit_move(
        self,
        action: str,
        name: str,
        version: str,
        actor: str,
        moved: dict[str, Any],
        details: dict[str, Any],
    ) -> None:
        """Audit a move that has happened; if the entry cannot be written, undo the move and
        raise: an alias must never stand without its audit entry. (A crash before the undo
        leaves a disagreement that :meth:`alias_disagreements` finds.)"""
        try:
            self.audit.log(
                action, actor=actor, model_name=name, model_version=version, details=details
            )
        except Exception:
            log.error(
                "the audit entry for %s@%s -> %s could not be written: moving the alias back",
                name,
                moved["alias"],
                version,
            )
            self._restore_alias(name, moved["alias"], moved["from_version"])
            if moved.get("staging_cleared"):
                self._restore_alias(name, "staging", version)
            raise

    def alias_disagreements(self, entries: Iterable[AuditEntry] | None = None) -> list[str]:
        """Where the registry's ``production``/``staging`` aliases differ from the last move
        the audit trail records for them (one line each; empty when they agree).

        Only aliases the trail has moved are compared. A disagreement means an alias moved
        without its audit entry: a promotion interrupted between the move and the audit
        write, or a change made outside ``promote_model``/``rollback_model``.
        """
        expected: dict[tuple[str, str], tuple[str | None, int]] = {}
        for entry in self.audit.entries() if entries is None else entries:
            if entry.action not in ALIAS_MOVES or not entry.model_name:
                continue
            alias, to_version = entry.details.get("alias"), entry.details.get("to_version")
            if alias in ("production", "staging") and to_version is not None:
                expected[(entry.model_name, alias)] = (str(to_version), entry.seq)
            if entry.details.get("staging_cleared"):
                expected[(entry.model_name, "staging")] = (None, entry.seq)
        problems: list[str] = []
        for (name, alias), (version, seq) in sorted(expected.items()):
            actual = self.get_alias_version(name, alias)
            if actual != version:
                problems.append(
                    f"{name}@{alias} is version {actual or '(unset)'} in the registry, but the "
                    f"audit trail's last move of it (entry {seq}) set it to "
                    f"{version or '(unset)'}: the alias moved without an audit entry; check "
                    f"who moved it, then promote or roll back with `titans registry` so the "
                    "move is audited"
                )
        return problems

    def _restore_alias(self, name: str, alias: str, previous: str | None) -> None:
        try:
            if previous is None:
                self.client.delete_registered_model_alias(name, alias)
            else:
                self.client.set_registered_model_alias(name, alias, previous)
        except MlflowException:
            log.exception("could not restore alias %s@%s to %s", name, alias, previous)

    # ------------------------------------------------------------------ rollback

    def rollback_model(
        self,
        model_name: str,
        target_version: str | int,
        actor: str = "system",
        reason: str = "",
    ) -> bool:
        """Point ``production`` back at ``target_version`` (a version that passed validation).

        The target must exist, carry ``validation_status=passed`` and not be the current
        production version. The move is audited and notified at ``warning``; a refusal returns
        False, is audited and kept in ``last_refusal``.
        """
        version = str(target_version).strip()
        self.last_refusal = None
        facts: dict[str, Any] = {"reason": reason} if reason else {}
        try:
            with self._lock(model_name, actor):
                try:
                    moved = self._rollback_locked(model_name, version, actor, facts)
                except _Refused as refused:
                    self._refuse(
                        "rollback", model_name, version, "Production", refused.gate,
                        refused.reason, actor, facts,
                    )  # fmt: skip
                    return False
        except LockTimeout as exc:
            self._refuse(
                "rollback", model_name, version, "Production", "lock", str(exc), actor, facts
            )
            return False
        self.notifier.notify(
            "warning",
            f"{model_name} production rolled back to version {version}",
            {
                "model_name": model_name,
                "version": version,
                "previous_version": moved.get("from_version"),
                "actor": actor,
                "reason": reason,
            },
        )
        return True

    def _rollback_locked(
        self, name: str, version: str, actor: str, facts: dict[str, Any]
    ) -> dict[str, Any]:
        mv = self._existing_version(name, version)
        production = self.get_alias_version(name, "production")
        if production is None:
            raise _Refused(
                "stage",
                f"{name} has no production version to roll back from; promote one with "
                "`titans registry promote`",
            )
        if production == version:
            raise _Refused("stage", f"version {version} is already the production version")
        status = (mv.tags or {}).get(VALIDATION_STATUS_TAG)
        if status != "passed":
            raise _Refused(
                "validation",
                f"version {version} has not passed validation (validation_status="
                f"{status or 'never validated'}); validate it with `titans validate "
                f"models:/{name}/{version}` or promote it instead",
            )
        self._load_artifact(f"models:/{name}/{version}")
        moved = self._move(name, version, "Production", "production", production, production)
        self._audit_move(
            "registry.rolled_back",
            name,
            version,
            actor,
            moved,
            json_safe({**moved, **facts, "validation_status": status}),
        )
        return moved

    # ------------------------------------------------------------------ shared plumbing

    def _lock(self, model_name: str, actor: str) -> Any:
        holder = f"{actor}@{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        return acquire_lock(
            self.store,
            f"promote:{model_name}",
            holder[:200],
            ttl_seconds=self.lock_ttl_seconds,
            timeout_seconds=self.lock_timeout_seconds,
        )

    def _refuse(
        self,
        action: str,
        name: str,
        version: str,
        stage: str | None,
        gate: str,
        reason: str,
        actor: str,
        details: dict[str, Any],
    ) -> None:
        refusal = PromotionRefusal(
            gate=gate,
            reason=reason,
            model=name,
            version=version,
            stage=stage,
            action=action,
            details=json_safe(details),
        )
        self.last_refusal = refusal
        self.audit.log(
            f"registry.{'promotion' if action == 'promote' else 'rollback'}_refused",
            actor=actor,
            model_name=name,
            model_version=version,
            details={"stage": stage, "gate": gate, "reason": reason, **refusal.details},
        )
        log.info("%s", refusal)

    # ------------------------------------------------------------------ comparison

    def compare_models(
        self,
        model_name: str,
        version1: str | int,
        version2: str | int,
        holdout: pd.DataFrame | None = None,
    ) -> dict[str, Any]:
        """Both versions re-evaluated on the same rows: metrics, segments, agreement, speed.

        The rows are ``holdout`` when given, else the held-out rows of the newer version's
        training run. Deltas are ``version2 - version1``; ``primary.improvement`` is
        direction-aware (positive when version2 is better).
        """
        v1, v2 = str(version1).strip(), str(version2).strip()
        mv1, mv2 = self._model_version(model_name, v1), self._model_version(model_name, v2)
        model1 = load_trained(f"models:/{model_name}/{v1}")
        model2 = load_trained(f"models:/{model_name}/{v2}")
        if model1.spec_name != model2.spec_name:
            raise InputError(
                f"{model_name} versions {v1} ({model1.spec_name}) and {v2} ({model2.spec_name}) "
                "are different models; compare versions of one model"
            )
        spec = get_spec(model1.spec_name, self.settings)
        newer = mv2 if _version_key(v2) >= _version_key(v1) else mv1
        if holdout is None:
            rows = load_holdout(str(newer.run_id), self.settings)
            source = f"holdout of version {newer.version} (run {newer.run_id})"
        else:
            rows, source = holdout, "given frame"
        if rows.empty:
            raise InputError("the comparison holdout has no rows; pass a frame with transactions")

        metrics1 = _finite_metrics(spec.evaluate(model1, rows))
        metrics2 = _finite_metrics(spec.evaluate(model2, rows))
        score1 = metrics1.get(spec.primary_metric, math.nan)
        score2 = metrics2.get(spec.primary_metric, math.nan)
        finite = math.isfinite(score1) and math.isfinite(score2)
        gain = improvement(score2, score1, spec.direction) if finite else math.nan
        selected = spec.select(rows)
        out1, seconds1 = _timed_predict(model1, selected)
        out2, seconds2 = _timed_predict(model2, selected)
        n_rows = max(len(selected), 1)
        result: dict[str, Any] = {
            "model_name": model_name,
            "model": spec.name,
            "version1": v1,
            "version2": v2,
            "primary_metric": spec.primary_metric,
            "direction": spec.direction,
            "holdout": {"source": source, "rows": len(rows), "scored_rows": len(selected)},
            "metrics": {
                "version1": metrics1,
                "version2": metrics2,
                "delta": {k: metrics2[k] - metrics1[k] for k in metrics1 if k in metrics2},
            },
            "primary": {
                "version1": score1,
                "version2": score2,
                "improvement": gain,
                "relative_improvement": relative_improvement(score2, score1, spec.direction)
                if finite
                else math.nan,
                "better": "version2" if gain > 0 else "version1" if gain < 0 else "tie",
            },
            "segments": _segment_deltas(spec, model1, model2, selected, self.settings),
            "agreement_rate": _agreement(spec, out1, out2),
            "latency_ms_per_row": {
                "version1": 1000.0 * seconds1 / n_rows,
                "version2": 1000.0 * seconds2 / n_rows,
            },
            "artifact_bytes": {
                "version1": self._artifact_bytes(model_name, v1),
                "version2": self._artifact_bytes(model_name, v2),
            },
        }
        if spec.task == "forecast":
            result["forecasts"] = _forecast_comparison(out1, out2)
        return json_safe(result)  # type: ignore[no-any-return]

    def _artifact_bytes(self, model_name: str, version: str) -> int:
        """Size on disk of the version's model artifacts (downloaded when remote)."""
        uri = self.client.get_model_version_download_uri(model_name, version)
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            return _dir_bytes(Path(unquote(parsed.path)))
        import mlflow.artifacts

        tmp = tempfile.mkdtemp(prefix="titans-size-")
        try:
            return _dir_bytes(Path(mlflow.artifacts.download_artifacts(uri, dst_path=tmp)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------- helpers


def _quote(value: str) -> str:
    return value.replace("'", "\\'")


def _version_key(version: str) -> int:
    return int(version) if version.isdigit() else -1


def _float_or_nan(value: str | None) -> float:
    try:
        return float(value) if value is not None else math.nan
    except ValueError:
        return math.nan


def _finite_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def _policy_of(decision: Any) -> Any:
    """The rule a policy decision applied (JSON-ready), whatever shape governance returns."""
    policy = getattr(decision, "policy", None)
    return json_safe(policy) if isinstance(policy, dict) else (str(policy) if policy else None)


def _validation_reasons(verdicts: dict[str, bool], report: dict[str, Any]) -> str:
    failed = [k for k, ok in verdicts.items() if k != "passed" and not ok]
    checks = report.get("checks", {}) if isinstance(report, dict) else {}
    parts = []
    for name in failed:
        reasons = checks.get(name, {}).get("reasons", []) if isinstance(checks, dict) else []
        parts.append(f"{name} ({'; '.join(reasons)})" if reasons else name)
    return "validation failed: " + ", ".join(parts or ["see the validation report"])


def _timed_predict(model: TrainedModel, rows: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    started = time.perf_counter()
    output = model.predict(rows)
    return output, time.perf_counter() - started


def _agreement(spec: ModelSpec, out1: pd.DataFrame, out2: pd.DataFrame) -> float:
    """Share of rows (days for the forecast) where the two versions' outputs agree.

    Classes and anomaly flags agree when equal; numbers when within AGREEMENT_RTOL.
    """
    column = "is_anomaly" if spec.task == "anomaly" else "prediction"
    a, b = out1[column].to_numpy(), out2[column].to_numpy()
    n = min(a.size, b.size)
    if n == 0:
        return math.nan
    a, b = a[:n], b[:n]
    if spec.task in {"classification", "anomaly"}:
        return float(np.mean(a.astype(str) == b.astype(str)))
    a, b = a.astype(np.float64), b.astype(np.float64)
    scale = np.maximum(np.abs(a), np.abs(b))
    return float(np.mean(np.abs(a - b) <= AGREEMENT_RTOL * scale))


def _segment_deltas(
    spec: ModelSpec,
    model1: TrainedModel,
    model2: TrainedModel,
    rows: pd.DataFrame,
    settings: Settings,
) -> dict[str, dict[str, dict[str, float]]]:
    """Primary metric of each version per segment (payment method, type, amount band)."""
    if spec.task == "forecast" or rows.empty:
        return {}  # a forecast is of the whole ledger's daily net flow: no per-row segments
    from titans.validation.fairness import segments

    labels = segments(rows, settings.validation.amount_bands)
    out: dict[str, dict[str, dict[str, float]]] = {}
    metric = spec.primary_metric
    for segmentation in COMPARE_SEGMENTS:
        groups = rows.groupby(labels[segmentation].to_numpy(), sort=True)
        per_segment = {}
        for label, part in groups:  # one evaluation per segment, not per row
            s1 = float(spec.evaluate(model1, part).get(metric, math.nan))
            s2 = float(spec.evaluate(model2, part).get(metric, math.nan))
            per_segment[str(label)] = {
                "rows": float(len(part)),
                "version1": s1,
                "version2": s2,
                "delta": s2 - s1,
                "improvement": improvement(s2, s1, spec.direction),
            }
        if segmentation == "amount_band":  # bands in order of size, not of their label text
            magnitude = rows["amount"].abs().groupby(labels[segmentation].to_numpy()).min()
            per_segment = {k: per_segment[k] for k in magnitude.sort_values().index.astype(str)}
        out[segmentation] = per_segment
    return out


def _forecast_comparison(out1: pd.DataFrame, out2: pd.DataFrame) -> dict[str, Any]:
    n = min(len(out1), len(out2))
    p1 = out1["prediction"].to_numpy(np.float64)[:n]
    p2 = out2["prediction"].to_numpy(np.float64)[:n]
    dates = pd.to_datetime(out1["date"]).dt.strftime("%Y-%m-%d").tolist()[:n]
    return {
        "days": n,
        "dates": dates,
        "version1": p1.tolist(),
        "version2": p2.tolist(),
        "mean_abs_difference": float(np.mean(np.abs(p1 - p2))) if n else math.nan,
        "total_version1": float(p1.sum()),
        "total_version2": float(p2.sum()),
    }


def _dir_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
