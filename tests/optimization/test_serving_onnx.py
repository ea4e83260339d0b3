"""An ONNX version promoted through the normal gate is what the API serves: no code change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from _support.serving import bearer, copy_registry, promote, serving_settings
from titans.data.synth import generate
from titans.models.inputs import typed_frame
from titans.models.pyfunc import load_trained
from titans.optimization import ModelOptimizer
from titans.optimization.measure import request_records
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key
from titans.serving.model_store import ModelStore

#: /models needs the admin role, /predict the predict role
RAW_KEY, API_KEY = generate_api_key("optimization-serving", ["predict", "admin"])


def test_the_api_serves_the_promoted_onnx_version_with_its_sources_answers(
    template: Any, tmp_path: Path
) -> None:
    opt_settings = serving_settings(copy_registry(template.home, tmp_path / "home"), [API_KEY])
    promote(opt_settings, "titans-category", "1")
    uri = ModelOptimizer(opt_settings).optimize_model_size("models:/titans-category/1")
    version = uri.rsplit("/", 1)[1]
    promote(opt_settings, "titans-category", version)

    source = load_trained("models:/titans-category/1")
    sample = source.spec.select(generate(400, seed=23)).head(25)
    transactions = request_records(sample)
    expected = source.predict(typed_frame(pd.DataFrame(transactions)))

    store = ModelStore(opt_settings, ("category",), registry=CollectorRegistry())
    app = create_app(opt_settings, model_store=store)
    with TestClient(app, headers=bearer(RAW_KEY)) as client:
        listed = {m["model"]: m for m in client.get("/models").json()["models"]}
        assert listed["category"]["version"] == version
        assert listed["category"]["flavour"] == "onnxruntime"
        assert listed["category"]["single_row_path"] == "compiled"
        for transaction, (_, wanted) in zip(transactions, expected.iterrows(), strict=True):
            response = client.post("/predict/category", json=transaction)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["version"] == version
            assert body["prediction"]["prediction"] == wanted["prediction"]
            assert body["prediction"]["probability"] == pytest.approx(
                wanted["probability"], abs=1e-2
            )
