"""The API of the monitoring-overhead benchmark, served with its monitoring on or off.

``--monitoring on`` is exactly what ``titans serve`` runs: ``create_app(Settings())`` from the
environment, the loaded objects frozen out of the cyclic GC, ``uvicorn.run`` with no access log.
``--monitoring off`` is the same app with what monitoring adds to a request taken out, and
nothing else changed:

- the request-metrics middleware (latency histogram per route/model/status) is removed;
- the prediction log accepts each record and drops it (no queue, no background writes);
- the prediction counter (``titans_predictions_total``) is not incremented.

Authentication, rate limiting, A/B routing, validation and the model are the same in both.

Usage: python benchmarks/monitoring_app.py --monitoring on|off --port PORT [--log-level warning]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class DiscardingPredictionLog:
    """Stands in for the prediction log writer when monitoring is off: accepts, keeps nothing."""

    def log(self, record: Any) -> bool:
        return True


def _no_count(*args: Any, **kwargs: Any) -> None:
    """Stands in for ApiMetrics.count_predictions when monitoring is off."""


def without_monitoring(app: Any) -> Any:
    """``app`` (from create_app, not yet serving) with request metrics and the log taken out."""
    from titans.serving.routes.metrics import RequestMetrics

    before = len(app.user_middleware)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestMetrics]
    if len(app.user_middleware) != before - 1 or app.middleware_stack is not None:
        raise RuntimeError("create_app no longer adds RequestMetrics once; update this benchmark")
    app.state.prediction_log = DiscardingPredictionLog()
    app.state.api_metrics.count_predictions = _no_count
    return app


def main() -> None:
    import uvicorn

    from titans.config import Settings
    from titans.serving.app import create_app

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--monitoring", choices=("on", "off"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    # as titans.cli.serve sets them
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    app = create_app(Settings())
    if args.monitoring == "off":
        app = without_monitoring(app)
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
