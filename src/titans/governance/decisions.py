"""Sampled model decisions for compliance review: which rows to keep and how to store them.

The choice of rows is vectorised (a pandas content hash per row mixed with a seed), so it
costs little on large batches; only the kept rows are turned into canonical JSON and hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from titans.errors import InputError
from titans.governance.audit import canonical_json
from titans.store.models import utcnow

__all__ = ["OUTPUT_COLUMNS", "decision_rows"]

#: columns of a predictions frame that hold the model's output (the rest are input fields)
OUTPUT_COLUMNS = ("output", "prediction", "score", "confidence", "probability")
_VERSION_COLUMNS = ("model_version", "version")
_TIME_COLUMNS = ("timestamp", "ts")
_ID_COLUMNS = ("prediction_id",)
_RESERVED = frozenset(
    (*OUTPUT_COLUMNS, *_VERSION_COLUMNS, *_TIME_COLUMNS, *_ID_COLUMNS, "input", "model_name")
)


def decision_rows(
    model_name: str,
    predictions: pd.DataFrame | Sequence[Mapping[str, Any]],
    rate: float,
    seed: int,
) -> list[dict[str, Any]]:
    """The ``decision_samples`` rows to store for one batch of predictions.

    Each row is kept with probability ``rate`` and at least one row of a non-empty batch
    is; the choice depends only on the row's content and ``seed``.
    """
    frame = _as_frame(predictions)
    if frame.empty:
        return []
    output_cols = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    version_col = next((c for c in _VERSION_COLUMNS if c in frame.columns), None)
    if not output_cols:
        raise InputError(
            f"predictions for {model_name} have no output column; name it one of "
            f"{', '.join(OUTPUT_COLUMNS)}"
        )
    if version_col is None:
        raise InputError(
            f"predictions for {model_name} have no model_version column; add the version "
            "that made each decision"
        )
    sample = frame.loc[_sample_mask(frame, rate, seed)]
    versions = sample[version_col]
    if versions.isna().any():
        raise InputError(
            f"{int(versions.isna().sum())} sampled prediction(s) of {model_name} have no "
            "model_version; record the version with every decision"
        )
    times = _timestamps(sample)
    if "input" in sample.columns:
        inputs: list[Any] = [_plain(v) for v in sample["input"].tolist()]
    else:
        fields = [c for c in sample.columns if c not in _RESERVED]
        inputs = [_plain(r) for r in sample[fields].to_dict("records")]
    kept_cols = output_cols + [c for c in _ID_COLUMNS if c in sample.columns]
    outputs = sample[kept_cols].to_dict("records")
    return [
        {
            "ts": ts,
            "model_name": model_name,
            "model_version": _version_text(version),
            "input_hash": input_hash(inp),
            "output": _output_json(out),
        }
        for inp, out, version, ts in zip(inputs, outputs, versions.tolist(), times, strict=True)
    ]


def input_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON of one decision's input.

    >>> input_hash({"amount": -12.5, "description": "café"})[:12]
    '8614e6c678e4'
    """
    return hashlib.sha256(canonical_json(_plain(value)).encode("utf-8")).hexdigest()


def _as_frame(predictions: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    if isinstance(predictions, pd.DataFrame):
        return predictions.reset_index(drop=True)
    if isinstance(predictions, Mapping | str | bytes):
        raise InputError("predictions must be a DataFrame or a list of dicts, one per decision")
    rows = list(predictions)
    if not all(isinstance(r, Mapping) for r in rows):
        raise InputError("predictions must be a DataFrame or a list of dicts, one per decision")
    return pd.DataFrame.from_records([dict(r) for r in rows])


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer: turns row hashes into uniform, independent-looking bits."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _sample_mask(frame: pd.DataFrame, rate: float, seed: int) -> np.ndarray:
    """Which rows to keep: a content hash per row (vectorised), mixed with the seed."""
    # object cells pandas cannot hash directly (dicts, lists, mixed types) hash via their text
    hashable = pd.DataFrame(
        {c: frame[c].astype(str) if frame[c].dtype == object else frame[c] for c in frame.columns}
    )
    hashed = pd.util.hash_pandas_object(hashable, index=False).to_numpy(dtype=np.uint64)
    seed_bits = np.uint64(int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big"))
    uniform = (_splitmix64(hashed ^ seed_bits) >> np.uint64(11)).astype(np.float64) / 2.0**53
    mask = uniform < rate
    if not mask.any():
        mask[int(np.argmin(uniform))] = True
    return mask


def _plain(value: Any) -> Any:
    """JSON values only: NaN/NaT/NA as null, timestamps as ISO text, numpy unwrapped."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, datetime | date):
        return None if pd.isna(value) else value.isoformat()
    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return str(value)


def _output_json(columns: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in columns.items():
        if key == "output" and isinstance(value, Mapping):
            out.update(_plain(value))
        else:
            out[key] = _plain(value)
    return out


def _version_text(value: Any) -> str:
    plain = _plain(value)
    if isinstance(plain, float) and plain.is_integer():
        return str(int(plain))
    return str(plain)


def _timestamps(sample: pd.DataFrame) -> list[datetime]:
    column = next((c for c in _TIME_COLUMNS if c in sample.columns), None)
    now = utcnow()
    if column is None:
        return [now] * len(sample)
    try:
        parsed = pd.to_datetime(sample[column], utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"prediction column {column!r} holds a value that is not a timestamp ({exc}); "
            "use ISO 8601 times"
        ) from exc
    return [now if pd.isna(t) else t.to_pydatetime() for t in parsed]
