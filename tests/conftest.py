"""Fixtures shared by the whole suite: a temp TITANS_HOME and Settings pointing at it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from titans.config import Settings
from titans.store import Store
from titans.store.testing import backends as store_backends
from titans.store.testing import temporary_store

# Tests never talk to a real SaaS or leak state into the developer's ./.titans.
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
# Two xdist workers on two cores: OpenMP threads per worker only oversubscribe the machine
# (HistGradientBoosting fits were 15x slower under load with the default thread count).
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def titans_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TITANS_HOME for one test, set in the environment."""
    home = tmp_path / "titans-home"
    home.mkdir()
    monkeypatch.setenv("TITANS_HOME", str(home))
    for var in ("TITANS_TRACKING_URI", "TITANS_DATABASE_URL", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def settings(titans_home: Path) -> Settings:
    """Settings for one test: embedded sqlite stores under a temp TITANS_HOME."""
    s = Settings()
    s.ensure_home()
    return s


def in_ci() -> bool:
    """True under CI=true, where a missing tool must fail the run rather than skip."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(params=store_backends())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty ops store: SQLite always, plus Postgres (own schema) when
    TITANS_TEST_POSTGRES_URL is set."""
    with temporary_store(request.param, tmp_path) as s:
        yield s
