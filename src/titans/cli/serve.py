"""`titans serve`: run the prediction API under uvicorn."""

from __future__ import annotations

import gc
import os

import typer

from titans.cli._common import console, settings


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    access_log: bool = typer.Option(
        False, "--access-log/--no-access-log", help="Log every request (slows serving)."
    ),
) -> None:
    """Load the production models from the registry and serve predictions over HTTP."""
    import uvicorn

    from titans.serving.app import create_app

    # The model poller retries on every poll by itself; MLflow's own HTTP retries (7, backing
    # off for minutes) would only hide a registry outage from /ready and titans_registry_up.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    s = settings()
    console.print(f"loading production models from {s.tracking_uri} ...")
    app = create_app(s)
    status = app.state.model_store.status()
    for model in app.state.model_store.loaded():
        console.print(f"  {model.name} version {model.version} ({model.flavour})")
    for reason in status.reasons:
        console.print(f"  [yellow]degraded:[/yellow] {reason}", highlight=False)
    console.print(f"serving on http://{host}:{port} (Ctrl+C to stop)")
    # Everything loaded so far (MLflow, pandas, sklearn, the models) lives as long as the
    # server: keep it out of the cyclic GC, whose full collections would otherwise walk it
    # all and stall requests for hundreds of milliseconds.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
