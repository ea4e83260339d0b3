"""ModelOptimizer: ONNX conversion, float16 weights, tree pruning, tuned sessions, ensembles,
and the benchmark of any registered version against its source.

Every optimised model is registered as a NEW version of the same registered model, with
lineage tags (``titans.optimization.source`` = ``models:/<name>/<version>``, kind, size and
metric deltas, agreement with the source) and its own run carrying the source's holdout, so it
is validated, promoted and served like a trained version: promoting it through the normal gate
is all it takes for the API to serve it (``flavour`` onnxruntime on /models). A model that
cannot be converted, or whose conversion does not agree with its source, raises
:class:`~titans.optimization.onnx_convert.OptimizationError` before anything is logged or
registered.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from titans.config import Settings
from titans.models.base import TrainedModel
from titans.models.pyfunc import load_trained
from titans.models.train import configure_mlflow
from titans.optimization.ensemble import build_ensemble
from titans.optimization.lineage import (
    TAG_PREFIX,
    Source,
    load_source,
    log_derived,
    pickled_size,
    register_derived,
    tag_values,
)
from titans.optimization.measure import (
    Agreement,
    agreement,
    batch_rows_per_second,
    latencies_us,
    percentiles,
    request_records,
    rows_for_batch,
    single_row_path,
)
from titans.optimization.onnx_convert import OptimizationError, convert, with_float16_weights
from titans.optimization.onnx_model import OnnxPipeline, SessionTuning
from titans.optimization.pruning import DEFAULT_TREE_COUNTS, isolation_forest_of, prune_trees

log = logging.getLogger(__name__)

ONNX_PIP = ("onnxruntime",)


def with_pipeline(trained: TrainedModel, pipeline: Any, **params: Any) -> TrainedModel:
    """``trained`` with another object in its state's ``pipeline`` slot."""
    return TrainedModel(
        spec_name=trained.spec_name,
        state={**trained.state, "pipeline": pipeline},
        params={**trained.params, **params},
        warnings=list(trained.warnings),
    )


class ModelOptimizer:
    """Optimise registered Titans models; each result is a new registered version.

    Parameters
    ----------
    settings : Settings, optional
        Registry, tracking and ops store locations (default: from the environment).
    prune_tolerance : float
        Largest loss of the primary metric (in its units, e.g. 0.01 PR-AUC) a pruned tree
        ensemble may have against the full one on the holdout.
    min_agreement : float
        Share of holdout rows on which an optimised classifier (and the anomaly verdict) must
        give its source's label (0.995: the acceptance bar).
    regression_tolerance : float
        Largest difference allowed between an optimised model's numeric output and its
        reference's, relative to ``max(|reference|, 1)`` (1e-3: 0.1 %; onnxruntime computes in
        float32, about 1e-7 relative per operation).
    float16 : bool
        Store large float weights as float16 (kept only when agreement still holds).
    tree_counts : tuple of int
        Forest sizes tried when pruning, smallest first.
    latency_rows : int
        Holdout transactions timed one by one for single-row latency.
    actor : str
        Who the registry's audit log names for registrations.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        prune_tolerance: float = 0.01,
        min_agreement: float = 0.995,
        regression_tolerance: float = 1e-3,
        float16: bool = True,
        tree_counts: tuple[int, ...] = DEFAULT_TREE_COUNTS,
        latency_rows: int = 200,
        actor: str = "system",
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.prune_tolerance = prune_tolerance
        self.min_agreement = min_agreement
        self.regression_tolerance = regression_tolerance
        self.float16 = float16
        self.tree_counts = tree_counts
        self.latency_rows = latency_rows
        self.actor = actor
        #: what the last call measured and decided (sizes, metrics, agreement, timings)
        self.last_report: dict[str, Any] = {}

    # ------------------------------------------------------------------ size

    def optimize_model_size(self, model_uri: str) -> str:
        """ONNX conversion of the estimator steps, float16 weights where they keep agreement,
        tree pruning within ``prune_tolerance``; registered as a new version. Its URI."""
        source = load_source(model_uri, self.settings)
        reference = source.trained
        report: dict[str, Any] = {"source": source.version_uri, "kind": "onnx", "notes": []}
        if isolation_forest_of(reference) is not None:
            reference, pruning = prune_trees(
                reference, source.holdout, self.prune_tolerance, self.tree_counts
            )
            report["pruning"] = pruning.to_dict()
            report["notes"].append(pruning.note)
        onnx = convert(reference)
        candidate = with_pipeline(reference, onnx, runtime="onnxruntime")
        checked = self._require_agreement(reference, candidate, source)
        if self.float16:
            half, converted = with_float16_weights(onnx)
            if converted == 0:
                report["notes"].append(
                    "float16: no large float initializer (the operators keep their weights "
                    "as attributes); stored as float32"
                )
            else:
                half_model = with_pipeline(reference, half, runtime="onnxruntime")
                half_check = self._agreement(reference, half_model, source)
                problem = self._disagreement(half_check, reference.spec_name)
                if problem is None:
                    candidate, checked = half_model, half_check
                else:
                    report["notes"].append(f"float16 weights kept float32: {problem}")
        pipeline: OnnxPipeline = candidate.state["pipeline"]
        report.update(precision=pipeline.precision, converted_steps=pipeline.converted_steps)
        return self._register(source, candidate, checked, report, "onnx")

    # ------------------------------------------------------------------ speed

    def optimize_inference_speed(self, model_uri: str) -> str:
        """An onnxruntime session tuned for single-row latency (graph optimisation level,
        threads) chosen by measurement; registered as a new version with the measured speedup
        over the source's own single-row path. Its URI."""
        source = load_source(model_uri, self.settings)
        current = source.trained.state.get("pipeline")
        reference = source.trained
        onnx = current if isinstance(current, OnnxPipeline) else convert(reference)
        records = self._records(source)
        source_path, source_one = single_row_path(source.trained)
        source_latency = percentiles(latencies_us(source_one, records))
        trials: dict[str, dict[str, float]] = {}
        best: tuple[float, SessionTuning] | None = None
        for tuning in _tunings():
            model = with_pipeline(reference, onnx.retuned(tuning), runtime="onnxruntime")
            _, one = single_row_path(model)
            measured = percentiles(latencies_us(one, records))
            trials[tuning.describe()] = measured
            if best is None or measured["p50_us"] < best[0]:
                best = (measured["p50_us"], tuning)
        if best is None:  # _tunings() is never empty; say so rather than fail obscurely
            raise OptimizationError("no onnxruntime session tuning could be measured")
        candidate = with_pipeline(reference, onnx.retuned(best[1]), runtime="onnxruntime")
        checked = self._require_agreement(reference, candidate, source)
        speedup = source_latency["p50_us"] / best[0] if best[0] > 0 else math.nan
        report = {
            "source": source.version_uri,
            "kind": "onnx-speed",
            "tuning": best[1].describe(),
            "trials": trials,
            "source_single_row": {"path": source_path, **source_latency},
            "optimised_single_row_p50_us": best[0],
            "speedup_p50": round(speedup, 2),
            "notes": [],
        }
        return self._register(source, candidate, checked, report, "onnx-speed")

    # ------------------------------------------------------------------ ensembles

    def create_model_ensemble(
        self, model_uris: Sequence[str], weights: Sequence[float] | None = None
    ) -> str:
        """A soft-voting (category) or averaging (amount) ensemble of registered versions of
        one model, validated by ModelValidationPipeline on the first member's holdout BEFORE
        it is registered (a failing ensemble raises OptimizationError, registry untouched)."""
        from titans.validation.model_validation import ModelValidationPipeline

        uris = list(model_uris)
        if len(uris) < 2:
            raise OptimizationError("an ensemble needs at least two model URIs; pass two or more")
        sources = [load_source(uri, self.settings) for uri in uris]
        ensemble = build_ensemble([s.trained for s in sources], weights)
        first = sources[0]
        spec = ensemble.spec
        metrics = spec.evaluate(ensemble, first.holdout)
        members = ", ".join(s.version_uri for s in sources)
        report: dict[str, Any] = {
            "source": first.version_uri,
            "kind": "ensemble",
            "members": members,
            "weights": list(weights or [1.0] * len(sources)),
            "metrics": metrics,
            "member_metrics": {
                s.version_uri: float(spec.evaluate(s.trained, first.holdout)[spec.primary_metric])
                for s in sources
            },
            "notes": [],
        }
        tags = tag_values(
            {
                "source": first.version_uri,
                "kind": "ensemble",
                "members": members,
                f"metric.{spec.primary_metric}": float(metrics[spec.primary_metric]),
            }
        )
        logged, run_id = log_derived(
            first,
            ensemble,
            settings=self.settings,
            run_name=f"{spec.name}-ensemble",
            tags=tags,
            metrics=metrics,
        )
        validator = ModelValidationPipeline(self.settings)
        verdicts = validator.run_full_validation(logged)
        report["validation"] = verdicts
        self.last_report = report
        if not verdicts.get("passed", False):
            failed = [k for k, v in verdicts.items() if k != "passed" and not v]
            raise OptimizationError(
                f"the ensemble of {members} failed validation ({', '.join(failed)}; report in "
                f"run {run_id}); nothing was registered"
            )
        version = register_derived(
            logged,
            first,
            settings=self.settings,
            description=f"soft-voting/averaging ensemble of {members}",
            tags={**tags, "validation_status": "passed"},
            actor=self.actor,
        )
        uri = f"models:/{first.registered_name}/{version}"
        report["model_uri"] = uri
        return uri

    # ------------------------------------------------------------------ benchmark

    def benchmark_model_performance(self, model_uri: str) -> dict[str, Any]:
        """Size on disk, load time, single-row p50/p99, batch-of-1,000 throughput, and the
        metric delta vs its source (``titans.optimization.source``) on the holdout."""
        source = load_source(model_uri, self.settings)
        client = configure_mlflow(self.settings)
        download = (
            client.get_model_version_download_uri(source.registered_name, source.version)
            if source.version
            else model_uri
        )
        started = time.perf_counter()
        trained = load_trained(download)
        load_seconds = time.perf_counter() - started
        records = self._records(source)
        started = time.perf_counter()
        path, one = single_row_path(trained)
        one(records[0])  # the first prediction builds sessions and caches
        first_seconds = time.perf_counter() - started
        spec = trained.spec
        batch = rows_for_batch(spec.select(source.holdout), 1000, self.settings.seed)
        metrics = spec.evaluate(trained, source.holdout)
        result: dict[str, Any] = {
            "model_uri": source.version_uri,
            "model": spec.name,
            "flavour": _flavour(trained),
            "size_bytes": _artifact_bytes(download),
            "model_file_bytes": pickled_size(trained),
            "load_seconds": round(load_seconds, 4),
            "first_prediction_seconds": round(first_seconds, 4),
            "single_row_path": path,
            **{
                f"single_row_{k}": v
                for k, v in percentiles(latencies_us(one, records, rounds=3)).items()
            },
            "batch_1000_rows_per_s": batch_rows_per_second(trained, batch),
            "primary_metric": spec.primary_metric,
            "metrics": {k: float(v) for k, v in metrics.items()},
            "source_uri": None,
            "metric_delta": None,
        }
        origin = self._origin(source)
        if origin is not None:
            origin_trained = load_trained(origin)
            before = float(spec.evaluate(origin_trained, source.holdout)[spec.primary_metric])
            result["source_uri"] = origin
            result["source_metric"] = before
            result["metric_delta"] = float(metrics[spec.primary_metric]) - before
        self.last_report = result
        return result

    # ------------------------------------------------------------------ helpers

    def _records(self, source: Source) -> list[dict[str, Any]]:
        rows = source.trained.spec.select(source.holdout).head(self.latency_rows)
        if rows.empty:
            raise OptimizationError(
                f"{source.version_uri}: its holdout has no row this model scores; "
                "retrain it on data with such rows"
            )
        return request_records(rows)

    def _origin(self, source: Source) -> str | None:
        if not source.version:
            return None
        client = configure_mlflow(self.settings)
        mv = client.get_model_version(source.registered_name, source.version)
        return (mv.tags or {}).get(f"{TAG_PREFIX}source")

    def _agreement(self, reference: TrainedModel, candidate: TrainedModel, source: Source):
        rows = reference.spec.select(source.holdout)
        return agreement(reference.predict(rows), candidate.predict(rows))

    def _disagreement(self, checked: Agreement, model: str) -> str | None:
        """Why ``checked`` misses the bar, or None when it meets it."""
        if checked.label_agreement is not None and checked.label_agreement < self.min_agreement:
            return (
                f"{model}: agrees with its source on {checked.label_agreement:.2%} of "
                f"{checked.rows} holdout rows (need {self.min_agreement:.1%})"
            )
        numeric_only = checked.label_agreement is None or checked.column == "score"
        if numeric_only and checked.max_rel_diff > self.regression_tolerance:
            return (
                f"{model}: {checked.column} differs from its source by up to "
                f"{checked.max_rel_diff:.3g} (relative; tolerance {self.regression_tolerance:g})"
            )
        return None

    def _require_agreement(
        self, reference: TrainedModel, candidate: TrainedModel, source: Source
    ) -> Agreement:
        checked = self._agreement(reference, candidate, source)
        problem = self._disagreement(checked, reference.spec_name)
        if problem is not None:
            raise OptimizationError(f"{problem}; nothing was registered")
        return checked

    def _register(
        self,
        source: Source,
        candidate: TrainedModel,
        checked: Agreement,
        report: dict[str, Any],
        kind: str,
    ) -> str:
        spec = candidate.spec
        before = spec.evaluate(source.trained, source.holdout)
        after = spec.evaluate(candidate, source.holdout)
        metric = spec.primary_metric
        size_before, size_after = pickled_size(source.trained), pickled_size(candidate)
        report.update(
            agreement=checked.to_dict(),
            metric=metric,
            source_metric=float(before[metric]),
            optimised_metric=float(after[metric]),
            metric_delta=float(after[metric]) - float(before[metric]),
            source_size_bytes=size_before,
            size_bytes=size_after,
            size_delta_bytes=size_after - size_before,
        )
        values: dict[str, Any] = {
            "source": source.version_uri,
            "kind": kind,
            "precision": candidate.state["pipeline"].precision,
            "size_bytes": size_after,
            "source_size_bytes": size_before,
            "size_delta_bytes": size_after - size_before,
            "size_ratio": size_after / size_before if size_before else math.nan,
            f"metric.{metric}": float(after[metric]),
            f"source_metric.{metric}": float(before[metric]),
            "metric_delta": float(after[metric]) - float(before[metric]),
            "agreement": checked.label_agreement if checked.label_agreement is not None else "",
            "max_rel_diff": checked.max_rel_diff,
        }
        if "pruning" in report:
            values["trees"] = (
                f"{report['pruning']['kept_trees']}/{report['pruning']['original_trees']}"
            )
        if "speedup_p50" in report:
            values["tuning"] = report["tuning"]
            values["speedup_p50"] = float(report["speedup_p50"])
            values["single_row_p50_us"] = float(report["optimised_single_row_p50_us"])
            values["source_single_row_p50_us"] = float(report["source_single_row"]["p50_us"])
        tags = tag_values(values)
        logged, _ = log_derived(
            source,
            candidate,
            settings=self.settings,
            run_name=f"{spec.name}-{kind}",
            tags=tags,
            metrics=after,
            extra_pip=ONNX_PIP,
        )
        version = register_derived(
            logged,
            source,
            settings=self.settings,
            description=f"{kind} of {source.version_uri} ({'; '.join(report['notes']) or 'ok'})",
            tags=tags,
            actor=self.actor,
        )
        uri = f"models:/{source.registered_name}/{version}"
        report["model_uri"] = uri
        self.last_report = report
        log.info("registered %s (%s of %s)", uri, kind, source.version_uri)
        return uri


def _tunings() -> list[SessionTuning]:
    cores = max(1, os.cpu_count() or 1)
    options = [
        SessionTuning("all", 1, 1),
        SessionTuning("extended", 1, 1),
        SessionTuning("basic", 1, 1),
    ]
    if cores > 1:
        options.append(SessionTuning("all", cores, 1))
    return options


def _flavour(trained: TrainedModel) -> str:
    from titans.serving.model_store import flavour_of

    return flavour_of(trained)


def _artifact_bytes(uri: str) -> int:
    """Bytes of the model's artifact directory as stored (downloaded when remote)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        files = [local] if local.is_file() else [p for p in local.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files)
