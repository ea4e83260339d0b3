"""Reading and writing the export format: header, row numbers, errors, bytes, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from titans.data.columns import COLUMNS, EXPORT_COLUMNS
from titans.data.io import read_raw, write_raw, write_transactions
from titans.errors import DataValidationError, InputError

HEADER = ",".join(EXPORT_COLUMNS)
ROW = "2024-03-01,Expense,Fuel,-40.00,fuel,cash,paid,Shell,"


def transactions(rows: int = 6) -> pd.DataFrame:
    """A small typed frame with the awkward cases: NA, commas, quotes, -0.0, rounding."""
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-31", "2024-02-01", "2024-02-29"] * (rows // 3)),
            "type": ["Expense", "Income", "Expense"] * (rows // 3),
            "description": ['Desk, "oak"', "Invoice 7", "Café au lait\nto go"] * (rows // 3),
            "amount": [-1234.5, 0.0, -0.004] * (rows // 3),
            "category": ["furniture", None, "food"] * (rows // 3),
            "payment_method": ["check", None, "cash"] * (rows // 3),
            "status": ["paid", "received", "paid"] * (rows // 3),
            "reference": ["IKEA", "Acme", "Blue Bottle"] * (rows // 3),
            "receipt_url": [None, None, "https://r/1"] * (rows // 3),
        }
    )
    frame["date"] = frame["date"].astype("datetime64[ns]")
    return frame


def write(tmp_path: Path, text: str, name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_raw_gives_text_cells_snake_case_columns_and_row_numbers(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, f"{HEADER}\n{ROW}\n2024-03-02,Income,Inv,10,,,received,A,\n"))

    assert list(raw.columns) == ["row_number", *COLUMNS]
    assert raw["row_number"].tolist() == [1, 2]
    assert raw["amount"].tolist() == ["-40.00", "10"]  # text, exactly as written
    assert raw["category"].isna().tolist() == [False, True]


def test_read_raw_matches_the_header_loosely_and_ignores_unknown_columns(tmp_path: Path) -> None:
    header = " date ,TYPE,description,Amount,category,payment_method,Status,Reference,RECEIPT URL"
    raw = read_raw(write(tmp_path, f"Notes,{header}\nhello,{ROW}\n"))

    assert list(raw.columns) == ["row_number", *COLUMNS]
    assert raw.loc[0, "payment_method"] == "cash"


def test_read_raw_reads_an_excel_style_file_with_bom_and_windows_encoding(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    row = "2024-03-01,Expense,Café €,-4.00,food,cash,paid,X,"
    path.write_bytes(f"{HEADER}\r\n{row}\r\n".encode("utf-8-sig"))
    assert read_raw(path).loc[0, "description"] == "Café €"
    path.write_bytes(f"{HEADER}\r\n{row}\r\n".encode("cp1252"))
    assert read_raw(path).loc[0, "description"] == "Café €"


def test_missing_columns_are_named_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Type,Description,Amount,Status,Reference\n2024-01-01,x,y,1,p,r\n")

    with pytest.raises(DataValidationError) as caught:
        read_raw(path)
    message = str(caught.value)
    assert str(path) in message
    assert "Category, Payment Method, Receipt URL" in message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("export.txt", HEADER, "unknown file type '.txt'"),
        ("export", HEADER, r"unknown file type '\(none\)'"),
        ("empty.csv", "", "the file is empty"),
        ("broken.parquet", "not parquet at all", "cannot read the parquet file"),
        ("quotes.csv", f'{HEADER}\n2024-01-01,Expense,"unclosed,-1,fuel,cash,paid,S,\n', "parse"),
        ("twice.csv", f"Date,{HEADER}\n", "'Date' appears twice"),
    ],
)
def test_unreadable_files_raise_a_one_line_data_validation_error(
    tmp_path: Path, name: str, content: str, expected: str
) -> None:
    path = write(tmp_path, content, name)

    with pytest.raises(DataValidationError, match=expected) as caught:
        read_raw(path)
    assert "\n" not in str(caught.value).strip()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no such file"):
        read_raw(tmp_path / "nope.csv")


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, HEADER + "\n"))

    assert len(raw) == 0 and list(raw.columns) == ["row_number", *COLUMNS]


def test_short_rows_get_blank_cells_and_long_rows_keep_their_surplus(tmp_path: Path) -> None:
    text = f"{HEADER}\n2024-03-01,Expense,Fuel\n{ROW},extra,more\n{ROW}\n"
    raw = read_raw(write(tmp_path, text))

    assert raw["row_number"].tolist() == [1, 2, 3]
    assert raw.loc[0, ["amount", "status"]].isna().all()
    assert raw["extra_fields"].tolist()[1] == "extra,more"
    assert raw["extra_fields"].isna().tolist() == [True, False, True]


def test_a_trailing_delimiter_is_not_a_surplus_cell(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, f"{HEADER}\n{ROW},\n{ROW}\n"))

    assert "extra_fields" not in raw.columns and len(raw) == 2


def test_written_csv_is_the_export_format(tmp_path: Path) -> None:
    path = write_transactions(transactions(3), tmp_path / "out.csv")

    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER
    assert text.split("\n", 1)[1] == (
        '2024-01-31,Expense,"Desk, ""oak""",-1234.50,furniture,check,paid,IKEA,\n'
        "2024-02-01,Income,Invoice 7,0.00,,,received,Acme,\n"
        '2024-02-29,Expense,"Café au lait\nto go",0.00,food,cash,paid,Blue Bottle,https://r/1\n'
    )


def test_label_column_is_written_after_the_export_columns(tmp_path: Path) -> None:
    frame = transactions(3).assign(is_anomaly=[False, True, False])
    path = write_transactions(frame, tmp_path / "out.csv")

    lines = path.read_text().splitlines()
    assert lines[0] == HEADER + ",Is Anomaly"
    assert lines[2].endswith(",true")
    assert read_raw(path)["is_anomaly"].tolist() == ["false", "true", "false"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_same_frame_always_gives_the_same_bytes(tmp_path: Path, suffix: str) -> None:
    frame = transactions(300)
    first = write_transactions(frame, tmp_path / f"a{suffix}").read_bytes()
    second = write_transactions(frame.copy(), tmp_path / f"b{suffix}").read_bytes()

    assert first == second


def test_parquet_holds_text_columns_under_the_export_header(tmp_path: Path) -> None:
    path = write_transactions(transactions(3), tmp_path / "out.parquet")

    table = pq.read_table(path)
    assert table.column_names == list(EXPORT_COLUMNS)
    assert all(field.type == pa.string() for field in table.schema)
    assert table.column("Amount").to_pylist() == ["-1234.50", "0.00", "0.00"]
    assert table.column("Category").to_pylist()[1] is None


def test_a_typed_parquet_from_elsewhere_reads_as_text(tmp_path: Path) -> None:
    frame = transactions(3)
    frame.columns = list(EXPORT_COLUMNS)
    frame.to_parquet(tmp_path / "typed.parquet")

    raw = read_raw(tmp_path / "typed.parquet")
    assert raw["date"].tolist() == ["2024-01-31", "2024-02-01", "2024-02-29"]
    assert raw["amount"].tolist() == ["-1234.5", "0.0", "-0.004"]
    assert raw["category"].isna().tolist() == [False, True, False]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    target = write_transactions(transactions(3), tmp_path / "out.csv")
    before = target.read_bytes()

    with pytest.raises(InputError, match="lacks columns amount"):
        write_transactions(transactions(3).drop(columns="amount"), target)
    with pytest.raises(DataValidationError, match="unknown file type"):
        write_transactions(transactions(3), tmp_path / "out.xlsx")

    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = write_transactions(transactions(300), tmp_path / "out.csv")
    write_transactions(transactions(3), target)

    assert len(read_raw(target)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        path = write_transactions(transactions(3), tmp_path / "out.csv")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_write_raw_restores_the_export_header_and_keeps_other_columns(tmp_path: Path) -> None:
    raw = read_raw(write(tmp_path, f"{HEADER}\n{ROW}\n"))
    raw["reasons"] = "amount: looks odd"
    path = write_raw(raw, tmp_path / "held.csv")

    assert path.read_text().splitlines() == [
        f"row_number,{HEADER},reasons",
        f"1,{ROW},amount: looks odd",
    ]


def test_amounts_are_written_with_two_decimals_without_negative_zero(tmp_path: Path) -> None:
    frame = transactions(3)
    frame["amount"] = [-0.001, 1e7 + 0.0049, -12.3456]
    path = write_transactions(frame, tmp_path / "out.csv")

    assert read_raw(path)["amount"].tolist() == ["0.00", "10000000.00", "-12.35"]
