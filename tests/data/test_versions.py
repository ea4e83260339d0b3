"""Data versions: same data, same id, whatever the row order or file format."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from titans.data.io import load_transactions, read_raw, write_transactions
from titans.data.schema import validate_frame
from titans.data.synth import generate
from titans.data.versions import (
    DataManifest,
    content_hash,
    data_version,
    read_manifest,
    write_manifest,
)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return generate(3000, seed=21)


def test_same_data_shuffled_has_the_same_version(frame: pd.DataFrame) -> None:
    shuffled = frame.sample(frac=1.0, random_state=3)

    assert not shuffled.index.equals(frame.index)
    assert data_version(shuffled) == data_version(frame)
    assert data_version(shuffled.reset_index(drop=True)) == data_version(frame)
    assert data_version(frame[frame.columns[::-1]]) == data_version(frame)


def test_csv_and_parquet_of_the_same_data_have_the_same_version(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    csv = write_transactions(frame, tmp_path / "export.csv")
    parquet = write_transactions(frame.iloc[::-1], tmp_path / "export.parquet")

    from_csv = load_transactions(csv, max_bad_share=0.0)
    from_parquet = load_transactions(parquet, max_bad_share=0.0)
    assert data_version(from_csv) == data_version(from_parquet) == data_version(frame)


def test_one_changed_cell_changes_the_version(frame: pd.DataFrame) -> None:
    base = data_version(frame)
    for column, value in [
        ("amount", frame.loc[17, "amount"] - 0.01),
        ("description", frame.loc[17, "description"] + " "),
        ("date", frame.loc[17, "date"] + pd.Timedelta(days=1)),
        ("category", None),
        ("is_anomaly", not frame.loc[17, "is_anomaly"]),
    ]:
        changed = frame.copy()
        changed.loc[17, column] = value
        assert data_version(changed) != base, column


def test_a_duplicated_or_dropped_row_changes_the_version(frame: pd.DataFrame) -> None:
    base = data_version(frame)

    assert data_version(frame.iloc[1:]) != base
    assert data_version(pd.concat([frame, frame.iloc[[5]]])) != base
    assert data_version(frame.drop(columns="is_anomaly")) != base


def test_text_dtype_and_na_spelling_do_not_matter(frame: pd.DataFrame) -> None:
    as_objects = frame.astype({c: object for c in ("description", "category", "receipt_url")})
    as_objects["category"] = as_objects["category"].where(as_objects["category"].notna(), None)

    assert data_version(as_objects) == data_version(frame)


def test_row_number_is_position_not_content(tmp_path: Path, frame: pd.DataFrame) -> None:
    raw = read_raw(write_transactions(frame.head(50), tmp_path / "a.csv"))
    reversed_raw = raw.iloc[::-1].assign(row_number=range(1, 51))

    assert content_hash(raw) == content_hash(reversed_raw)


def test_manifest_records_the_version_and_is_written_under_its_id(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    manifest = write_manifest(frame, "exports/march.csv", tmp_path / "manifests")

    assert manifest.version == data_version(frame)
    assert manifest.content_hash.startswith(manifest.version) and len(manifest.content_hash) == 64
    assert manifest.rows == 3000
    assert manifest.columns == list(frame.columns)
    assert manifest.date_min == frame["date"].min().strftime("%Y-%m-%d")
    assert manifest.date_max == frame["date"].max().strftime("%Y-%m-%d")
    assert manifest.source == "exports/march.csv"
    path = tmp_path / "manifests" / f"{manifest.version}.json"
    assert read_manifest(path) == manifest
    assert DataManifest.from_dict(manifest.to_dict()) == manifest


def test_the_version_of_an_empty_frame_is_stable() -> None:
    empty = validate_frame(pd.DataFrame(columns=list(generate(3, seed=1).columns))).valid

    assert data_version(empty) == data_version(empty.copy())
    assert len(data_version(empty)) == 16
