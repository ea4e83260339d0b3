"""Lenient conversion of raw transaction rows (export headers or snake_case) to a typed frame.

This is the model's own input boundary (pyfunc, batch scoring): it coerces what it can and
never drops a row. Strict validation with quarantine lives in titans.data.schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from titans.data.columns import COLUMNS, SNAKE_CASE
from titans.errors import InputError

_NUMERIC_JUNK = r"[\s,$€£]"
_OPTIONAL_TEXT = ("category", "payment_method", "status", "reference", "receipt_url", "description")


def parse_amounts(values: pd.Series) -> pd.Series:
    """Amounts as float: numbers pass, '$1,234.50' and '(12.00)' are parsed, junk becomes NaN."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = values.astype("string").str.strip()
    negative = text.str.startswith("(") & text.str.endswith(")")
    cleaned = text.str.replace(_NUMERIC_JUNK, "", regex=True).str.strip("()")
    numbers = pd.to_numeric(cleaned, errors="coerce").astype("float64")
    return numbers.where(~negative.fillna(False), -numbers)


def typed_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """A typed transactions frame from raw rows; missing optional columns become NA.

    >>> frame = typed_frame(pd.DataFrame({"Date": ["2024-03-01"], "Amount": ["$1,200.50"],
    ...                                   "Type": ["Expense"], "Description": ["Rent"]}))
    >>> frame.loc[0, "amount"], str(frame.loc[0, "date"].date()), frame.loc[0, "category"]
    (np.float64(1200.5), '2024-03-01', None)
    """
    if not isinstance(raw, pd.DataFrame):
        raw = pd.DataFrame(raw)
    frame = raw.rename(columns=SNAKE_CASE)
    if "date" not in frame.columns:
        raise InputError(
            "transactions need a 'Date' (or 'date') column in YYYY-MM-DD form; add it and retry"
        )
    out = pd.DataFrame(index=frame.index)
    dates = pd.to_datetime(frame["date"], errors="coerce", format="mixed")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    bad_dates = dates.isna()
    if bad_dates.any():
        first = frame.index[bad_dates.to_numpy()][0]
        raise InputError(
            f"row {first}: date {frame.loc[first, 'date']!r} is not a date; use YYYY-MM-DD"
        )
    out["date"] = dates.dt.normalize().astype("datetime64[ns]")
    out["type"] = _text(frame, "type").fillna("Expense")
    amounts = parse_amounts(frame["amount"]) if "amount" in frame else pd.Series(np.nan, out.index)
    out["amount"] = amounts.astype("float64")
    for column in _OPTIONAL_TEXT:
        out[column] = _text(frame, column)
    for column in COLUMNS:
        if column not in out:
            out[column] = None
    if "is_anomaly" in frame.columns:
        out["is_anomaly"] = frame["is_anomaly"]
    return out[[*COLUMNS, *(["is_anomaly"] if "is_anomaly" in out else [])]]


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype=object)
    values = frame[column].astype("string")
    return values.astype(object).where(values.notna(), None)
