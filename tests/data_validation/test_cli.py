"""`titans data validate | generate | version` as a user runs them: exit codes and files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from titans.cli import data as data_cli
from titans.cli import main
from titans.data.columns import EXPORT_COLUMNS
from titans.data.io import read_raw
from titans.data.schema import validate_frame
from titans.data.versions import data_version

MESSY_EXPORT = Path(__file__).parents[1] / "fixtures" / "messy_export_120.csv"

runner = CliRunner()


def titans(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the real `titans` entry point in-process; return its exit code."""
    monkeypatch.setattr(sys, "argv", ["titans", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return Path(shutil.copy(MESSY_EXPORT, tmp_path / "studio.csv"))


def test_validate_writes_valid_rows_and_a_quarantine_that_add_up(
    messy: Path, titans_home: Path
) -> None:
    result = runner.invoke(data_cli.app, ["validate", str(messy)])

    assert result.exit_code == 0, result.output
    valid_out = messy.with_name("studio.valid.csv")
    quarantine = messy.with_name("studio.quarantine.csv")
    valid = validate_frame(read_raw(valid_out))
    held = pd.read_csv(quarantine, dtype=str, keep_default_na=False)
    assert valid.issues.empty, "the valid file re-validates clean"
    assert len(valid.valid) + len(held) == 120
    assert held["row_number"].astype(int).tolist() == [6, 36, 54, 72, 100]
    assert (held["reasons"].str.len() > 0).all()
    assert "did you mean 'credit_card'" in held.loc[1, "reasons"]
    # the quarantine keeps the original cells under the export header
    assert held.loc[1, "Payment Method"] == "credit_car"
    assert held.loc[0, "Amount"] == "-59.2O"
    # the terminal shows each issue with its row number
    assert "credit_car" in result.output and "sign_for_type" in result.output
    assert "4.17%" in result.output


def test_the_quarantine_can_be_fixed_and_validated_again(messy: Path, tmp_path: Path) -> None:
    quarantine = tmp_path / "held.csv"
    runner.invoke(data_cli.app, ["validate", str(messy), "--quarantine", str(quarantine)])
    held = pd.read_csv(quarantine, dtype=str, keep_default_na=False)
    held.loc[held["Payment Method"] == "credit_car", "Payment Method"] = "credit_card"
    fixed = tmp_path / "fixed.csv"
    held.to_csv(fixed, index=False)

    report = validate_frame(read_raw(fixed))

    assert len(report.valid) == 1  # the fixed row passes; row_number/reasons are ignored
    assert len(report.rejected) == 4


def test_validate_exit_codes_through_the_titans_command(
    messy: Path, tmp_path: Path, titans_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert titans(monkeypatch, "data", "validate", str(messy)) == 0
    # above the threshold: a failed check, exit 1, files still written
    out = tmp_path / "strict"
    code = titans(
        monkeypatch,
        "data",
        "validate",
        str(messy),
        "--max-bad-share",
        "0.01",
        "--valid-out",
        str(out / "v.csv"),
        "--quarantine",
        str(out / "q.csv"),
    )
    assert code == 1
    assert (out / "v.csv").is_file() and (out / "q.csv").is_file()
    # unreadable input: exit 2
    assert titans(monkeypatch, "data", "validate", str(tmp_path / "missing.csv")) == 2
    (tmp_path / "notes.txt").write_text("hello\n")
    assert titans(monkeypatch, "data", "validate", str(tmp_path / "notes.txt")) == 2
    (tmp_path / "partial.csv").write_text("Date,Type,Amount\n2024-01-01,Expense,-1\n")
    assert titans(monkeypatch, "data", "validate", str(tmp_path / "partial.csv")) == 2


def test_validate_says_why_it_failed_in_one_line(
    messy: Path, titans_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    capsys.readouterr()
    assert titans(monkeypatch, "data", "validate", str(messy), "--max-bad-share", "0") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "4.17% of rows fail validation, above the allowed 0.00%" in err[0]

    missing = messy.with_name("nope.csv")
    assert titans(monkeypatch, "data", "validate", str(missing)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {missing}: no such file; check the path"]


def test_validate_refuses_to_overwrite_its_input(messy: Path) -> None:
    result = runner.invoke(data_cli.app, ["validate", str(messy), "--valid-out", str(messy)])

    assert result.exception is not None
    assert getattr(result.exception, "exit_code", None) == 2
    assert messy.read_bytes() == MESSY_EXPORT.read_bytes()


def test_generate_writes_the_same_bytes_for_the_same_seed(
    tmp_path: Path, titans_home: Path
) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (first, second):
        result = runner.invoke(
            data_cli.app, ["generate", "--rows", "2000", "--seed", "5", "-o", str(path)]
        )
        assert result.exit_code == 0, result.output

    assert first.read_bytes() == second.read_bytes()
    header = first.read_text().splitlines()[0]
    assert header == ",".join([*EXPORT_COLUMNS, "Is Anomaly"])
    version = data_version(validate_frame(read_raw(second)).valid)
    assert f"wrote 2,000 rows to {second}" in result.output.replace("\n", "")
    assert f"data version {version}" in result.output


def test_generate_with_drift_and_parquet_output(tmp_path: Path, titans_home: Path) -> None:
    out = tmp_path / "drifted.parquet"
    result = runner.invoke(
        data_cli.app,
        [
            "generate",
            "--rows",
            "3000",
            "--seed",
            "2",
            "--start",
            "2024-01-01",
            "--days",
            "120",
            "--drift",
            "quality_faults@2024-03-01:0.2",
            "-o",
            str(out),
        ],
    )

    assert result.exit_code == 0, result.output
    report = validate_frame(read_raw(out))
    assert report.total_rows == 3000 and len(report.rejected) > 0
    assert f"{len(report.rejected):,} rows fail validation" in result.output.replace("\n", " ")
    assert report.valid["date"].max() < pd.Timestamp("2024-04-30")


def test_generate_rejects_a_bad_drift_spec_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "never.csv"
    result = runner.invoke(
        data_cli.app, ["generate", "--rows", "10", "--drift", "inflation:1.3", "-o", str(out)]
    )

    assert getattr(result.exception, "exit_code", None) == 2
    assert not out.exists()


def test_version_prints_the_id_and_writes_the_manifest(messy: Path, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    result = runner.invoke(data_cli.app, ["version", str(messy), "--manifest-dir", str(manifests)])

    assert result.exit_code == 0, result.output
    expected = data_version(validate_frame(read_raw(messy)).valid)
    assert f"data version {expected}" in result.output
    manifest = json.loads((manifests / f"{expected}.json").read_text())
    assert manifest["rows"] == 115 and manifest["date_min"] == "2024-07-01"
    assert "5 of 120 rows fail validation" in result.output
