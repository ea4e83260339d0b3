"""The 120-row export of a small design studio: mostly valid, a few real-world problems."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from titans.data.io import load_transactions, read_raw
from titans.data.schema import validate_frame
from titans.errors import DataValidationError

MESSY_EXPORT = Path(__file__).parents[1] / "fixtures" / "messy_export_120.csv"

# row number -> (column, rule, suggestion) of the five rows that must be rejected
EXPECTED_REJECTS = {
    6: ("amount", "amount_format", None),  # "-59.2O": letter O typed for a zero
    36: ("payment_method", "unknown_value", "credit_card"),  # "credit_car"
    54: ("category", "unknown_value", "software"),  # "sofware"
    72: ("payment_method", "required", None),  # a bad debt written off, no payment method
    100: ("amount", "sign_for_type", "-89.99"),  # an expense entered as positive
}


def test_the_messy_export_is_mostly_valid_and_each_problem_is_found() -> None:
    report = validate_frame(read_raw(MESSY_EXPORT))

    assert report.total_rows == 120
    assert len(report.valid) == 115
    found = {
        int(r.row_number): (r.column, r.rule, None if pd.isna(r.suggestion) else r.suggestion)
        for r in report.issues.itertuples()
    }
    assert found == EXPECTED_REJECTS
    assert report.passed(0.05)  # 5 of 120 is 4.2%


def test_the_messy_export_keeps_what_small_real_data_looks_like() -> None:
    valid = validate_frame(read_raw(MESSY_EXPORT)).valid

    income = valid[valid["type"] == "Income"]
    assert len(income) >= 10
    assert income["category"].isna().all() and income["payment_method"].isna().all()
    counts = valid["category"].value_counts()
    assert (counts == 1).sum() >= 5, "several categories have a single example"
    # "$3,500.00" and "(47.78)" were parsed, "Office Supplies" and "PAID" normalised
    assert 3500.0 in set(income["amount"])
    assert -47.78 in set(valid["amount"])
    assert valid["status"].isin(["paid", "received", "pending", "refunded"]).all()
    assert valid["date"].min() == pd.Timestamp("2024-07-01")


def test_load_transactions_returns_the_valid_rows_under_the_default_threshold(
    titans_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="titans.data.io"):
        frame = load_transactions(MESSY_EXPORT)

    assert len(frame) == 115
    assert frame["amount"].dtype == "float64"
    # the left-out rows are said out loud, never dropped silently
    assert "5 of 120 rows fail validation" in caplog.text


def test_load_transactions_refuses_when_the_bad_share_is_above_the_threshold() -> None:
    with pytest.raises(DataValidationError, match=r"5 of 120 rows \(4\.2%\)"):
        load_transactions(MESSY_EXPORT, max_bad_share=0.01)
