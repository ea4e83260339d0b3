"""Data versions: a content hash of a transactions frame, and the manifest that records it.

The version id depends only on the data: not on row order, not on whether it was
read from CSV or parquet, not on the text dtype pandas chose. Each value is put in
a canonical form per column (datetimes as nanoseconds, numbers as float64 with -0.0
and NaN unified, booleans as 0/1, anything else as text with one NA marker), each row is hashed
(`pandas.util.hash_pandas_object`), and the sorted row hashes are digested with
SHA-256 together with the sorted column names. ``row_number`` (a position in a
file, not content) is left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from titans.data.io import ROW_NUMBER, STRING_DTYPE, atomic_write
from titans.errors import DataValidationError

#: length of the version id (hex digits of the content hash)
VERSION_LENGTH = 16

# bumped if the canonical form ever changes, so old and new ids never collide
_CANONICAL_FORM = b"titans-data-version/1"
_NA = "\u2400NA"


def _canonical_column(column: pd.Series) -> pd.Series:
    """One column in a dtype-independent form that hashes the same for the same values."""
    if pd.api.types.is_bool_dtype(column) and not column.isna().any():
        return column.astype(np.uint8)
    if pd.api.types.is_datetime64_any_dtype(column):
        if getattr(column.dt, "tz", None) is not None:
            column = column.dt.tz_convert("UTC").dt.tz_localize(None)
        return column.astype("datetime64[ns]")  # hashed as int64 nanoseconds, NaT included
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan) + 0.0  # -0.0 -> 0.0
        values[np.isnan(values)] = np.nan  # one NaN bit pattern
        return pd.Series(values, index=column.index)
    return column.astype(STRING_DTYPE).fillna(_NA)


def content_hash(frame: pd.DataFrame) -> str:
    """SHA-256 hex digest of the frame's content (order-free over rows and columns)."""
    columns = sorted(str(c) for c in frame.columns if c != ROW_NUMBER)
    digest = hashlib.sha256(_CANONICAL_FORM)
    digest.update(json.dumps(columns).encode("utf-8"))
    digest.update(str(len(frame)).encode("ascii"))
    if columns and len(frame):
        positional = frame.reset_index(drop=True)  # the index is not content (and may repeat)
        canonical = pd.DataFrame({c: _canonical_column(positional[c]) for c in columns})
        rows = pd.util.hash_pandas_object(canonical, index=False).to_numpy(dtype=np.uint64)
        digest.update(np.sort(rows).astype("<u8").tobytes())
    return digest.hexdigest()


def data_version(frame: pd.DataFrame) -> str:
    """The version id of a frame: the first 16 hex digits of its `content_hash`.

    >>> a = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", None]})
    >>> data_version(a) == data_version(a.iloc[::-1]) == data_version(a[["y", "x"]])
    True
    >>> data_version(a) == data_version(a.assign(x=[1.0, 2.5]))
    False
    """
    return content_hash(frame)[:VERSION_LENGTH]


@dataclass(frozen=True)
class DataManifest:
    """What a data version holds: size, columns, date range, hash, and where it came from."""

    version: str
    rows: int
    columns: list[str]
    date_min: str | None
    date_max: str | None
    content_hash: str
    source: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Indented JSON with sorted keys."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataManifest:
        """Rebuild from `to_dict` output."""
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise DataValidationError(
                f"manifest lacks {exc.args[0]!r}; rewrite it with write_manifest"
            ) from exc


def build_manifest(frame: pd.DataFrame, source: str | os.PathLike[str]) -> DataManifest:
    """The manifest of a frame (nothing written)."""
    digest = content_hash(frame)
    date_min = date_max = None
    if "date" in frame.columns and frame["date"].notna().any():
        dates = pd.to_datetime(frame["date"], errors="coerce")
        if dates.notna().any():
            date_min = dates.min().strftime("%Y-%m-%d")
            date_max = dates.max().strftime("%Y-%m-%d")
    return DataManifest(
        version=digest[:VERSION_LENGTH],
        rows=len(frame),
        columns=[str(c) for c in frame.columns if c != ROW_NUMBER],
        date_min=date_min,
        date_max=date_max,
        content_hash=digest,
        source=str(source),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_manifest(
    frame: pd.DataFrame, source: str | os.PathLike[str], directory: str | os.PathLike[str]
) -> DataManifest:
    """Build the frame's manifest and write it to ``<directory>/<version>.json``."""
    manifest = build_manifest(frame, source)
    target = Path(directory) / f"{manifest.version}.json"
    atomic_write(target, lambda temp: temp.write_text(manifest.to_json(), encoding="utf-8"))
    return manifest


def read_manifest(path: str | os.PathLike[str]) -> DataManifest:
    """Load a manifest written by `write_manifest`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataValidationError(f"{path}: cannot read the manifest ({exc})") from exc
    return DataManifest.from_dict(data)
