"""Fixtures of the reliability suite, and the table of figures it prints at the end.

- ``figures``: ``figures.record(test, figure, value)``; every recorded row is printed by
  ``pytest_terminal_summary`` (also under xdist: workers send their rows to the controller), so
  a run reads like the table in docs/reliability.md.
- ``template_home``: a TITANS_HOME whose registry holds version 1 of every model in
  production and category version 2 registered; trained once per run (a file lock shares it
  between xdist workers). Tests copy its registry with ``registry_copy`` and never touch it.
- ``service_url``: the URL of Postgres or Redis named by an env var; skips on a workstation
  where it is not set, fails under CI=true.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from _support.figures import FIGURES, Figures
from _support.serving import copy_registry, serving_settings, train_and_promote_all, train_version
from conftest import in_ci

#: where an xdist worker puts its figures for the controller
_FIGURES_KEY = "titans_reliability_figures"


@pytest.fixture(scope="session")
def figures() -> Figures:
    """Call ``figures.record(test, figure, value)``; the rows are printed at the end."""
    return FIGURES


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker_output = getattr(session.config, "workeroutput", None)
    if worker_output is not None:  # an xdist worker: hand the rows to the controller
        worker_output[_FIGURES_KEY] = json.dumps(FIGURES.rows)


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect the rows a worker recorded."""
    raw = getattr(node, "workeroutput", {}).get(_FIGURES_KEY)
    if raw:
        FIGURES.rows.extend(json.loads(raw))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = FIGURES.table()
    if lines:
        terminalreporter.section("reliability figures")
        for line in lines:
            terminalreporter.write_line(line)


def require_env(name: str) -> str:
    """The value of env var ``name``; a skip on a workstation, a failure under CI=true."""
    value = os.environ.get(name)
    if value:
        return value
    message = f"{name} is not set (a service this reliability test needs)"
    if in_ci():
        pytest.fail(f"{message}; .ci/run must provide it", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Version 1 of every model in production, category version 2 registered (read only)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # shared by the xdist workers of this run
        root = root.parent
    home = root / "reliability-template"
    with FileLock(str(root / "reliability-template.lock")):
        if not (home / "trained.ok").is_file():
            shutil.rmtree(home, ignore_errors=True)
            home.mkdir(parents=True)
            settings = serving_settings(home, [])
            train_and_promote_all(settings, rows=2_000, seed=5)
            assert train_version(settings, "category", rows=2_000, seed=6) == "2"
            (home / "trained.ok").write_text("ok", encoding="utf-8")
    return home


@pytest.fixture
def registry_copy(template_home: Path, tmp_path: Path) -> Callable[[str], Path]:
    """Call it with a name: a new TITANS_HOME with copies of the template's registry (its
    artifacts stay shared, read only) and ops store."""

    def make(name: str) -> Path:
        home = copy_registry(template_home, tmp_path / name)
        # the ops store too: its audit trail records the promotions the registry shows
        with (
            closing(sqlite3.connect(template_home / "titans.db")) as source,
            closing(sqlite3.connect(home / "titans.db")) as copy,
        ):
            source.backup(copy)
        return home

    return make
