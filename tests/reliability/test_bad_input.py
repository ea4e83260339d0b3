"""Bad input: generated requests over the whole OpenAPI schema get no 5xx; malformed files get
a clear one-line error and leave nothing half-written; property tests for the drift tests and
the synthetic generator."""

from __future__ import annotations

import io
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from _support.figures import Figures
from _support.serving import copy_registry
from serving import test_openapi_fuzz as fuzz
from titans.cli import main as cli_main
from titans.data.columns import EXPORT_COLUMNS
from titans.data.io import read_raw, write_transactions
from titans.data.schema import validate_frame
from titans.data.synth import generate
from titans.monitoring.drift import detect_drift
from titans.serving.app import create_app

pytestmark = [pytest.mark.slow]

#: schemathesis cases per operation and mode in this variant (the serving test runs 25)
FUZZ_EXAMPLES = 30
PROPERTY_EXAMPLES = 25


@pytest.fixture(scope="module")
def app(registry_copy_module: Path) -> Iterator[FastAPI]:
    application = create_app(fuzz._settings(registry_copy_module), poll=False)
    with TestClient(application):
        yield application


@pytest.fixture(scope="module")
def registry_copy_module(template_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_registry(template_home, tmp_path_factory.mktemp("fuzz"))


def test_schemathesis_over_the_openapi_schema_finds_no_server_error(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch, figures: Figures
) -> None:
    """The serving fuzz test's own loop (imported), with more cases per operation."""
    cases = 0
    real_bearer = fuzz.bearer

    def counting_bearer(raw: str) -> dict[str, str]:
        nonlocal cases
        cases += 1  # the fuzz loop builds the headers once per generated case
        return real_bearer(raw)

    monkeypatch.setattr(fuzz, "bearer", counting_bearer)
    monkeypatch.setattr(fuzz, "EXAMPLES_PER_OPERATION", FUZZ_EXAMPLES)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        fuzz.test_generated_requests_get_no_5xx_and_match_the_schema(app, mode)
    figures.record("bad input: schemathesis", "cases (positive + negative) / 5xx", f"{cases} / 0")
    assert cases >= 500


def _csv(rows: list[list[str]], encoding: str = "utf-8") -> bytes:
    lines = [",".join(EXPORT_COLUMNS)] + [",".join(row) for row in rows]
    return ("\n".join(lines) + "\n").encode(encoding)


GOOD_ROW = ["2024-05-02", "Expense", "Coffee", "-4.50", "Food", "Cash", "R1", "Completed", ""]


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


#: name -> (file suffix, content); each is unreadable: exit 2, one line, nothing written
UNREADABLE: dict[str, tuple[str, Callable[[], bytes]]] = {
    "empty csv": (".csv", lambda: b""),
    "binary garbage as csv": (".csv", lambda: bytes(range(256)) * 64),
    "no header columns": (".csv", lambda: b"a,b,c\n1,2,3\n"),
    "empty parquet": (".parquet", lambda: b""),
    "truncated parquet": (
        ".parquet",
        lambda: _parquet(pd.DataFrame([GOOD_ROW], columns=EXPORT_COLUMNS))[:200],
    ),
    "parquet, wrong columns": (".parquet", lambda: _parquet(pd.DataFrame({"x": [1, 2]}))),
    "utf-16 csv": (".csv", lambda: _csv([GOOD_ROW] * 3, encoding="utf-16")),
    "unbalanced quote": (
        ".csv",
        lambda: _csv([GOOD_ROW, [*GOOD_ROW[:2], '"Coffee', *GOOD_ROW[3:]]]),
    ),
}

#: name -> csv content that is readable: rows validated, both outputs complete
READABLE: dict[str, Callable[[], bytes]] = {
    "latin-1 csv": lambda: _csv([[*GOOD_ROW[:2], "Café Zürich", *GOOD_ROW[3:]]] * 3, "latin-1"),
    "10^6-char description": lambda: _csv([[*GOOD_ROW[:2], "x" * 1_000_000, *GOOD_ROW[3:]]]),
    "extra cells": lambda: _csv([GOOD_ROW, [*GOOD_ROW, "surplus"]]),
}


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`titans data validate PATH` through the real entry point (its error handler included)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["titans", "data", "validate", str(path)])
        try:
            cli_main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_malformed_files_get_a_clear_error_and_nothing_half_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], figures: Figures
) -> None:
    for name, (suffix, content) in UNREADABLE.items():
        path = tmp_path / f"{name.replace(' ', '_').replace(',', '')}{suffix}"
        path.write_bytes(content())
        code, output = _validate(path, capsys)
        assert code == 2, (name, code, output)
        assert "Traceback" not in output and output.startswith("error:"), (name, output)
        assert str(path.name) in output, (name, output)  # the message names the file
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p != path)
        assert leftovers == [], (name, leftovers)  # no partial output files
        path.unlink()
    for name, content in READABLE.items():
        folder = tmp_path / name.replace(" ", "_").replace("^", "")
        folder.mkdir()
        path = folder / "export.csv"
        path.write_bytes(content())
        code, output = _validate(path, capsys)
        assert code in (0, 1), (name, code, output)
        assert "Traceback" not in output, (name, output)
        valid = pd.read_csv(folder / "export.valid.csv", dtype=str, keep_default_na=False)
        rejected = pd.read_csv(folder / "export.quarantine.csv", dtype=str, keep_default_na=False)
        rows = len(content().decode("latin-1").splitlines()) - 1
        assert len(valid) + len(rejected) == rows, (name, len(valid), len(rejected))
        assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temp files
    figures.record("bad input: files", "unreadable / readable malformed files",
                   f"{len(UNREADABLE)} (exit 2, nothing written) / {len(READABLE)}")  # fmt: skip


numeric = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=30, max_size=300
)
labels = st.lists(st.sampled_from(["Cash", "Card", "Wire", "Check"]), min_size=30, max_size=300)


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(values=numeric, cats=labels, data=st.data())
def test_drift_properties_hold_for_any_sample(
    values: list[float], cats: list[str], data: Any
) -> None:
    """Identical samples never drift; every score is finite and kept beside its threshold;
    a shift of the whole numeric sample far beyond its range always drifts."""
    n = min(len(values), len(cats))
    frame = pd.DataFrame({"amount": values[:n], "payment_method": pd.Series(cats[:n])})
    same = detect_drift(frame, frame.sample(frac=1.0, random_state=data.draw(st.integers(0, 9))))
    assert not same.drifted and same.drifted_features == []
    for result in same.columns.values():
        row = result.to_dict()
        assert row["threshold"] is not None
        assert row["score"] is None or np.isfinite(row["score"])
    spread = float(np.ptp(frame["amount"])) + 1.0
    shifted = frame.assign(amount=frame["amount"] + 10 * spread)
    assert "amount" in detect_drift(frame, shifted).drifted_features


@settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(rows=st.integers(1, 400), seed=st.integers(0, 2**31 - 1))
def test_generator_is_deterministic_and_valid_for_any_seed(rows: int, seed: int) -> None:
    first = generate(rows, seed=seed)
    assert len(first) == rows
    pd.testing.assert_frame_equal(first, generate(rows, seed=seed))
    assert first["date"].is_monotonic_increasing
    with tempfile.TemporaryDirectory() as folder:
        report = validate_frame(read_raw(write_transactions(first, Path(folder) / "g.csv")))
    assert report.total_rows == rows
    assert len(report.rejected) == 0, report.issues[:5]
