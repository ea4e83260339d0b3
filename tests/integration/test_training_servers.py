"""Training against a real `mlflow server`; serving a logged model with `mlflow models serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from titans.config import Settings
from titans.data.synth import generate
from titans.models.train import train_models

pytestmark = pytest.mark.integration


def test_training_registers_all_four_on_a_real_mlflow_server(
    mlflow_server: str, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, TITANS_TRACKING_URI=mlflow_server)
    results = train_models(generate(3_000, seed=2), seed=2, settings=settings)
    response = httpx.get(
        f"{mlflow_server}/api/2.0/mlflow/registered-models/search", params={"max_results": 50}
    )
    response.raise_for_status()
    names = {m["name"] for m in response.json()["registered_models"]}
    assert {r.registered_name for r in results} <= names
    assert {r.version for r in results} == {"1"}


def test_mlflow_models_serve_answers_a_raw_transaction(tmp_path: Path, free_port) -> None:
    settings = Settings(home=tmp_path)
    (result,) = train_models(
        generate(3_000, seed=4), models=["category"], seed=4, settings=settings
    )
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    # `mlflow models serve` execs `uvicorn` from PATH: put this venv's bin first.
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "PATH": f"{mlflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.Popen(  # stopped by PID below
        [
            str(mlflow_bin),
            "models",
            "serve",
            "-m",
            result.registry_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow models serve did not answer /ping within 90 s")
        payload = {
            "dataframe_records": [
                {
                    "Date": "2024-06-03",
                    "Type": "Expense",
                    "Description": "Monthly office rent",
                    "Amount": -2500,
                    "Payment Method": "bank_transfer",
                    "Status": "paid",
                    "Reference": "Landlord Properties",
                }
            ]
        }
        answer = httpx.post(f"{url}/invocations", json=payload, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        from titans.data.columns import EXPENSE_CATEGORIES

        assert predictions[0]["prediction"] in EXPENSE_CATEGORIES
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Stop the server's whole process group by its PID (it may have exited already)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
