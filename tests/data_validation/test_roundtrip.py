"""A clean generated export round-trips exactly; the generator's injected faults are caught."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from titans.data.io import load_transactions, read_raw, write_transactions
from titans.data.schema import TRANSACTIONS_SCHEMA, validate_frame
from titans.data.synth import generate, parse_drift
from titans.data.versions import data_version


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate(4000, seed=11)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_clean_generated_export_round_trips_exactly(
    generated: pd.DataFrame, tmp_path: Path, suffix: str
) -> None:
    path = write_transactions(generated, tmp_path / f"export{suffix}")
    report = validate_frame(read_raw(path))

    assert report.issues.empty, report.issues.head().to_dict("records")
    TRANSACTIONS_SCHEMA.validate(generated)
    pd.testing.assert_frame_equal(report.valid, generated, check_dtype=True, check_exact=True)
    assert data_version(report.valid) == data_version(generated)


def test_load_transactions_gives_the_generated_frame_back(
    generated: pd.DataFrame, tmp_path: Path
) -> None:
    path = write_transactions(generated, tmp_path / "export.csv")

    pd.testing.assert_frame_equal(load_transactions(path, max_bad_share=0.0), generated)


def test_quality_faults_injected_by_the_generator_are_caught(tmp_path: Path) -> None:
    spec = parse_drift("quality_faults@2024-07-01:0.3")
    frame = generate(3000, seed=4, drifts=[spec])
    report = validate_frame(read_raw(write_transactions(frame, tmp_path / "faulty.csv")))

    after = frame["date"] >= pd.Timestamp("2024-07-01")
    faulted = round(0.3 * int((after & (frame["type"] == "Expense")).sum()))
    # five of the six fault kinds break a rule; absurd amounts are a monitoring question
    assert len(report.rejected) / faulted == pytest.approx(5 / 6, abs=0.05)
    assert (report.rejected["date"] >= "2024-07-01").all()
    kinds = set(zip(report.issues["column"], report.issues["rule"], strict=True))
    assert {
        ("description", "required"),
        ("payment_method", "required"),
        ("payment_method", "unknown_value"),
        ("category", "unknown_value"),
        ("amount", "sign_for_type"),
    } <= kinds
    truncated = report.issues[
        (report.issues["column"] == "payment_method") & (report.issues["rule"] == "unknown_value")
    ]
    assert truncated["suggestion"].notna().all(), "every truncated payment method gets a guess"
