"""Each kind of messy value a real export carries is caught, with its row number, or parsed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from titans.data.io import read_raw
from titans.data.schema import TRANSACTIONS_SCHEMA, validate_frame

HEADER = "Date,Type,Description,Amount,Category,Payment Method,Status,Reference,Receipt URL"
GOOD = [
    "2024-03-01,Expense,Office rent March 2024,-2150.00,rent,bank_transfer,paid,Pinecrest,",
    "2024-03-02,Income,Invoice INV-2401 - logo design,1850.00,,,received,Blue Harbor Dental,",
    '2024-03-04,Expense,"Sticky notes, pens",-23.40,office_supplies,credit_card,paid,Staples,'
    "https://receipts.example/r/1",
    "2024-03-05,Expense,Fuel,-51.19,fuel,debit_card,paid,Shell,",
]


def export(tmp_path: Path, lines: list[str], name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def issues_of(tmp_path: Path, lines: list[str]) -> pd.DataFrame:
    return validate_frame(read_raw(export(tmp_path, lines))).issues


def test_good_rows_pass_as_a_typed_frame(tmp_path: Path) -> None:
    report = validate_frame(read_raw(export(tmp_path, GOOD)))

    assert report.issues.empty
    assert len(report.rejected) == 0 and report.bad_share == 0.0 and report.passed(0.0)
    valid = report.valid
    TRANSACTIONS_SCHEMA.validate(valid)
    assert list(valid.columns) == [
        "date",
        "type",
        "description",
        "amount",
        "category",
        "payment_method",
        "status",
        "reference",
        "receipt_url",
    ]
    assert valid["date"].dtype == "datetime64[ns]"
    assert valid["amount"].tolist() == [-2150.0, 1850.0, -23.4, -51.19]
    assert valid["description"][2] == "Sticky notes, pens"
    # income rows leave category and payment method empty, and that is fine
    assert valid["category"].isna().tolist() == [False, True, False, False]
    assert valid["payment_method"].isna().tolist() == [False, True, False, False]
    assert valid["receipt_url"].notna().tolist() == [False, False, True, False]


# (bad row, column, rule, suggestion): one problem per row, caught at its row number
MESSY = [
    pytest.param(
        "2024-03-07,Expense,Lunch,-42.10,meals_entertainment,credit_car,paid,Cafe,",
        "payment_method",
        "unknown_value",
        "credit_card",
        id="truncated-payment-method",
    ),
    pytest.param(
        "2024-03-07,Expense,Figma,-45.00,sofware,credit_card,paid,Figma,",
        "category",
        "unknown_value",
        "software",
        id="misspelt-category",
    ),
    pytest.param(
        "2024-03-07,Expense,Paper,-12.00,office_suppl,cash,paid,Staples,",
        "category",
        "unknown_value",
        "office_supplies",
        id="truncated-category",
    ),
    pytest.param(
        "2024-03-07,Expense,Ads,-300.00,crypto_mining,credit_card,paid,Google Ads,",
        "category",
        "unknown_value",
        None,
        id="unknown-category-no-close-match",
    ),
    pytest.param(
        "2024-03-07,Expense,Rent,-900.00,rent,bank_transfer,paied,Pinecrest,",
        "status",
        "unknown_value",
        "paid",
        id="misspelt-status",
    ),
    pytest.param(
        "2024-03-07,Transfer,Move to savings,-900.00,other,bank_transfer,paid,Bank,",
        "type",
        "unknown_value",
        None,
        id="unknown-type",
    ),
    pytest.param(
        "2024-03-07,Expence,Fuel,-40.00,fuel,cash,paid,Shell,",
        "type",
        "unknown_value",
        "Expense",
        id="misspelt-type",
    ),
    pytest.param(
        "2024-03-07,Expense,,-40.00,fuel,cash,paid,Shell,",
        "description",
        "required",
        None,
        id="blank-description",
    ),
    pytest.param(
        ",Expense,Fuel,-40.00,fuel,cash,paid,Shell,", "date", "required", None, id="blank-date"
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,,fuel,cash,paid,Shell,",
        "amount",
        "required",
        None,
        id="blank-amount",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-40.00,,cash,paid,Shell,",
        "category",
        "required",
        None,
        id="blank-category-on-expense",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-40.00,fuel,  ,paid,Shell,",
        "payment_method",
        "required",
        None,
        id="whitespace-payment-method-on-expense",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-40.00,fuel,cash,,Shell,",
        "status",
        "required",
        None,
        id="blank-status",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-40.00,fuel,cash,paid,,",
        "reference",
        "required",
        None,
        id="blank-reference",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-4O.00,fuel,cash,paid,Shell,",
        "amount",
        "amount_format",
        None,
        id="amount-with-letter-O",
    ),
    pytest.param(
        '2024-03-07,Expense,Chair,"-1.234,50",furniture,cash,paid,IKEA,',
        "amount",
        "amount_format",
        None,
        id="european-decimal-comma-is-not-guessed",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,-inf,fuel,cash,paid,Shell,",
        "amount",
        "amount_format",
        None,
        id="infinite-amount",
    ),
    pytest.param(
        "2024-03-07,Expense,Fuel,45.00,fuel,cash,paid,Shell,",
        "amount",
        "sign_for_type",
        "-45.00",
        id="positive-expense",
    ),
    pytest.param(
        "2024-03-07,Income,Invoice 7,-300.00,,,received,Acme,",
        "amount",
        "sign_for_type",
        "300.00",
        id="negative-income",
    ),
    pytest.param(
        "2024/03/07,Expense,Fuel,-40.00,fuel,cash,paid,Shell,",
        "date",
        "date_format",
        "YYYY-MM-DD",
        id="date-with-slashes",
    ),
    pytest.param(
        "2024-02-30,Expense,Fuel,-40.00,fuel,cash,paid,Shell,",
        "date",
        "date_format",
        "YYYY-MM-DD",
        id="impossible-date",
    ),
    pytest.param(
        "07-03-2024,Expense,Fuel,-40.00,fuel,cash,paid,Shell,",
        "date",
        "date_format",
        "YYYY-MM-DD",
        id="day-first-date",
    ),
]


@pytest.mark.parametrize(("bad_row", "column", "rule", "suggestion"), MESSY)
def test_each_kind_of_messy_value_is_caught_at_its_row(
    tmp_path: Path, bad_row: str, column: str, rule: str, suggestion: str | None
) -> None:
    # the bad row is the third data row (file line 4), between good ones
    report = validate_frame(read_raw(export(tmp_path, [*GOOD[:2], bad_row, *GOOD[2:]])))

    issues = report.issues
    assert len(issues) == 1, issues.to_dict("records")
    issue = issues.iloc[0]
    assert (issue["row_number"], issue["column"], issue["rule"]) == (3, column, rule)
    if suggestion is None:
        assert pd.isna(issue["suggestion"])
    else:
        assert issue["suggestion"] == suggestion
    assert issue["message"]
    assert report.rejected["row_number"].tolist() == [3]
    assert len(report.valid) == len(GOOD)
    assert report.bad_share == pytest.approx(1 / 5)


@pytest.mark.parametrize(
    ("row", "amount"),
    [
        ("2024-03-07,Income,Invoice 12,$1234.50,,,received,Acme,", 1234.50),
        ('2024-03-07,Income,Invoice 12,"$1,234.50",,,received,Acme,', 1234.50),
        ('2024-03-07,Income,Invoice 13,"£2,000",,,received,Acme,', 2000.0),
        ('2024-03-07,Expense,Laptop,"-$2,499.00",computer_equipment,cash,paid,Apple,', -2499.0),
        ("2024-03-07,Expense,Hotel,€ -412.60,travel,credit_card,paid,Marriott,", -412.60),
        ("2024-03-07,Expense,Paper,(45.00),office_supplies,cash,paid,Staples,", -45.0),
        ('2024-03-07,Expense,Van,"-1,234,567.89",vehicle,check,paid,Ford,', -1234567.89),
        ("2024-03-07,Expense,Fee,-.50,other,cash,paid,Bank,", -0.5),
        ("2024-03-07,Income,Interest,+3.10,,,received,Bank,", 3.1),
    ],
)
def test_amounts_with_separators_symbols_or_parentheses_are_parsed(
    tmp_path: Path, row: str, amount: float
) -> None:
    report = validate_frame(read_raw(export(tmp_path, [row])))

    assert report.issues.empty, report.issues.to_dict("records")
    assert report.valid["amount"].tolist() == [amount]


def test_loosely_written_codes_are_normalised_not_rejected(tmp_path: Path) -> None:
    rows = [
        "2024-03-07,expense,Paper,-12.00,Office Supplies,Credit Card,PAID,Staples,",
        "2024-03-08,INCOME,Invoice,100.00,,, received ,Acme,",
        "2024-03-09,Expense,Laptop,-999.00,computer-equipment,bank transfer,Paid,Apple,",
    ]
    report = validate_frame(read_raw(export(tmp_path, rows)))

    assert report.issues.empty, report.issues.to_dict("records")
    valid = report.valid
    assert valid["type"].tolist() == ["Expense", "Income", "Expense"]
    assert valid["category"].tolist()[::2] == ["office_supplies", "computer_equipment"]
    assert valid["payment_method"].tolist()[::2] == ["credit_card", "bank_transfer"]
    assert valid["status"].tolist() == ["paid", "received", "paid"]


def test_a_row_with_several_problems_has_one_issue_each_and_is_rejected_once(
    tmp_path: Path,
) -> None:
    report = validate_frame(
        read_raw(export(tmp_path, [*GOOD, "2024/03/09,Expense,,12.00,sofware,credit_car,paid,X,"]))
    )

    assert report.issues["row_number"].unique().tolist() == [5]
    assert sorted(zip(report.issues["column"], report.issues["rule"], strict=True)) == [
        ("amount", "sign_for_type"),
        ("category", "unknown_value"),
        ("date", "date_format"),
        ("description", "required"),
        ("payment_method", "unknown_value"),
    ]
    assert len(report.rejected) == 1 and len(report.valid) == 4
    reasons = report.quarantine_frame()["reasons"][0]
    for expected in ("date:", "description:", "amount:", "category:", "payment_method:"):
        assert expected in reasons


def test_rejected_rows_keep_their_original_cells(tmp_path: Path) -> None:
    row = '2024-03-07,Expense, Lunch ,"$-42.10",Meals Entertainment,credit_car,PAID,Cafe,'
    report = validate_frame(read_raw(export(tmp_path, [row])))

    rejected = report.rejected.iloc[0]
    assert rejected["row_number"] == 1
    assert rejected["description"] == " Lunch "
    assert rejected["amount"] == "$-42.10"
    assert rejected["category"] == "Meals Entertainment"
    assert rejected["payment_method"] == "credit_car"
    assert rejected["status"] == "PAID"
    assert pd.isna(rejected["receipt_url"])


def test_row_numbers_count_data_rows_in_the_file_including_blank_lines(tmp_path: Path) -> None:
    lines = [GOOD[0], "", GOOD[1], ",,,,,,,,", "2024-03-09,Expense,Fuel,45.00,fuel,cash,paid,S,"]
    report = validate_frame(read_raw(export(tmp_path, lines)))

    # lines without any value hold no transaction: skipped, but the numbering keeps counting
    assert report.total_rows == 3
    assert report.issues["row_number"].tolist() == [5]


def test_a_row_with_an_unquoted_comma_and_surplus_cells_is_rejected(tmp_path: Path) -> None:
    shifted = "2024-03-07,Expense,Lunch, client,-42.10,meals_entertainment,credit_card,paid,Cafe,x"
    report = validate_frame(read_raw(export(tmp_path, [*GOOD, shifted])))

    rules = report.issues.loc[report.issues["row_number"] == 5, "rule"].tolist()
    assert "extra_fields" in rules
    assert report.rejected["row_number"].tolist() == [5]
    assert len(report.valid) == len(GOOD)


def test_valid_and_rejected_always_add_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = []
    spoilers = ["sofware", "", "paid", "credit_car"]
    for i in range(300):
        category = "fuel" if rng.random() > 0.2 else spoilers[int(rng.integers(4))]
        rows.append(
            f"2024-03-{1 + i % 28:02d},Expense,Fuel {i},-{10 + i}.00,{category},cash,paid,S,"
        )
    report = validate_frame(read_raw(export(tmp_path, rows)))

    assert len(report.valid) + len(report.rejected) == report.total_rows == 300
    assert set(report.rejected["row_number"]) == set(report.issues["row_number"])
    assert report.bad_share == pytest.approx(len(report.rejected) / 300)


def test_threshold_is_inclusive(tmp_path: Path) -> None:
    report = validate_frame(
        read_raw(export(tmp_path, [*GOOD, "x,Expense,F,-1.00,fuel,cash,paid,S,"]))
    )

    assert report.bad_share == pytest.approx(0.2)
    assert report.passed(0.2) and not report.passed(0.19)


def test_report_to_dict_is_json_ready(tmp_path: Path) -> None:
    report = validate_frame(
        read_raw(export(tmp_path, [*GOOD, "2024-03-09,Expense,,-1,fuel,x,paid,S,"]))
    )

    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["total_rows"] == 5 and summary["rejected_rows"] == 1
    assert summary["issues_by_rule"] == {"required": 1, "unknown_value": 1}
    assert summary["issues"][0]["row_number"] == 5
    assert summary["issues"][0]["value"] is None  # the blank description


def test_label_column_is_parsed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "labelled.csv"
    path.write_text(
        HEADER
        + ",Is Anomaly\n"
        + "2024-03-01,Expense,Fuel,-40.00,fuel,cash,paid,Shell,,false\n"
        + "2024-03-02,Expense,Fuel,-4000.00,fuel,cash,paid,Shell,,TRUE\n"
        + "2024-03-03,Expense,Fuel,-41.00,fuel,cash,paid,Shell,,maybe\n",
        encoding="utf-8",
    )
    report = validate_frame(read_raw(path))

    assert report.valid["is_anomaly"].tolist() == [False, True]
    assert report.valid["is_anomaly"].dtype == bool
    assert report.issues[["row_number", "column", "rule"]].values.tolist() == [
        [3, "is_anomaly", "label_format"]
    ]
