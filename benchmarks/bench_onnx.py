"""ONNX benchmark: a registered sklearn version vs its ONNX version made by ModelOptimizer.

For the category and amount models (trained on generated rows in a throw-away TITANS_HOME):
size on disk, single-row p50/p99 through the path the API takes (the compiled numpy path for
the sklearn source, the onnxruntime path for the ONNX version), batch-of-1,000 throughput,
and the primary metric of both on the same holdout. For context it also times the sklearn
Pipeline's own predict on one-row frames (what the DESIGN's "≈ 10 ms per row" figure is about).

Usage: python benchmarks/bench_onnx.py [--quick]
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

MODELS = ("category", "amount")


def _sklearn_batch_single_row(optimizer: Any, uri: str, rows: int) -> dict[str, float]:
    """p50/p99 of the sklearn batch path (typed_frame + Pipeline.predict) on one-row frames."""
    from titans.models.inputs import typed_frame
    from titans.models.pyfunc import load_trained
    from titans.optimization.lineage import load_source
    from titans.optimization.measure import latencies_us, percentiles, request_records

    trained = load_trained(uri)
    source = load_source(uri, optimizer.settings)
    records = request_records(trained.spec.select(source.holdout).head(rows))

    def one(record: dict[str, Any]) -> pd.DataFrame:
        return trained.predict(typed_frame(pd.DataFrame([record])))

    return percentiles(latencies_us(one, records))


def run(quick: bool = False, seed: int = 7, models: tuple[str, ...] = MODELS) -> dict[str, Any]:
    """Train, optimise and benchmark ``models``; source vs ONNX figures per model."""
    from titans.config import Settings
    from titans.data.synth import generate
    from titans.models.train import train_models
    from titans.optimization import ModelOptimizer

    rows = 3_000 if quick else 30_000
    latency_rows = 100 if quick else 500
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    out: dict[str, Any] = {"rows": rows, "latency_rows": latency_rows, "models": {}}
    with tempfile.TemporaryDirectory(prefix="titans-bench-onnx-") as home:
        settings = Settings(home=Path(home))
        settings.ensure_home()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = train_models(
                generate(rows, seed=seed), models=list(models), seed=seed, settings=settings
            )
            optimizer = ModelOptimizer(settings, latency_rows=latency_rows)
            for result in results:
                source_uri = result.registry_uri
                onnx_uri = optimizer.optimize_model_size(source_uri)
                size_report = dict(optimizer.last_report)
                source = optimizer.benchmark_model_performance(source_uri)
                onnx = optimizer.benchmark_model_performance(onnx_uri)
                keys = (
                    "size_bytes",
                    "model_file_bytes",
                    "load_seconds",
                    "single_row_path",
                    "single_row_p50_us",
                    "single_row_p99_us",
                    "batch_1000_rows_per_s",
                )
                out["models"][result.model_key] = {
                    "source_uri": source_uri,
                    "onnx_uri": onnx_uri,
                    "source": {k: source[k] for k in keys},
                    "onnx": {k: onnx[k] for k in keys},
                    "sklearn_pipeline_single_row": _sklearn_batch_single_row(
                        optimizer, source_uri, min(latency_rows, 100)
                    ),
                    "precision": size_report.get("precision"),
                    "metric": source["primary_metric"],
                    "source_metric": source["metrics"][source["primary_metric"]],
                    "onnx_metric": onnx["metrics"][onnx["primary_metric"]],
                    "metric_delta": onnx["metric_delta"],
                    "agreement": size_report.get("agreement"),
                    "size_ratio": round(onnx["size_bytes"] / source["size_bytes"], 3),
                    "single_row_p50_ratio": round(
                        onnx["single_row_p50_us"] / source["single_row_p50_us"], 2
                    ),
                    "batch_throughput_ratio": round(
                        onnx["batch_1000_rows_per_s"] / source["batch_1000_rows_per_s"], 2
                    ),
                }
    out["command"] = f"python benchmarks/bench_onnx.py{' --quick' if quick else ''}"
    return out


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2, default=str))
