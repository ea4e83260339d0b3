"""Schemathesis over the API's own OpenAPI schema: generated requests to every operation, with a
key that holds every role, never get a 5xx and every response matches the documented schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from _support.serving import bearer, serving_settings, train_and_promote_all
from titans.config import Settings
from titans.serving.app import create_app
from titans.serving.auth import generate_api_key

RAW, KEY = generate_api_key("fuzz", ["predict", "admin", "approver", "alerts"])
#: generated cases per operation and mode; ~20 operations make a few hundred requests per mode
EXAMPLES_PER_OPERATION = 25


def _settings(home: Path) -> Settings:
    return serving_settings(
        home,
        [KEY],
        model_poll_seconds=0,
        prediction_log_flush_seconds=0.05,
        rate_limit_per_second=100_000.0,
        rate_limit_burst=100_000,
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    home = tmp_path_factory.mktemp("openapi-fuzz")
    settings = _settings(home)
    train_and_promote_all(settings, rows=2_000, seed=5)
    application = create_app(settings, poll=False)
    with TestClient(application):  # runs the lifespan: the prediction log writer is on
        yield application


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests_get_no_5xx_and_match_the_schema(app: FastAPI, mode: Any) -> None:
    """Valid requests (positive) and invalid ones (negative: each must be refused with a 4xx)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [op.label for op in operations]
    failures: list[str] = []
    nothing_to_break: list[str] = []
    calls = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=bearer(RAW))

        try:
            check()
        except Unsatisfiable:
            # no invalid request exists for an operation without body or parameters
            nothing_to_break.append(operation.label)
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    takes_input = [
        op.label for op in operations if op.body or list(op.iter_parameters()) or "{" in op.path
    ]
    assert not set(nothing_to_break) & set(takes_input), nothing_to_break
    assert calls >= 200  # a few hundred generated requests really went out
