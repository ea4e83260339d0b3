"""Edge-case transactions for the stability check: named frames built from real held-out rows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from titans.config import EdgeCaseSwitches

#: a description of exactly 5,000 characters, made of words a real memo could hold
LONG_DESCRIPTION = ("Quarterly reconciliation of vendor invoices and receipts " * 100)[:5000]
UNICODE_DESCRIPTION = "Café ☕ Zürich — 東京 ラーメン, naïve façade, ñandú 🚀 ₹1,200 ⟨test⟩"
UNSEEN = "never-seen-in-training-Ω"
HUGE_AMOUNT = 1e12
TINY_AMOUNT = 1e-3
FAR_PAST = pd.Timestamp("1900-01-01")
FAR_FUTURE = pd.Timestamp("2200-12-31")
OPTIONAL_COLUMNS = ("category", "payment_method", "status", "reference", "receipt_url")

EdgeCase = Callable[[pd.DataFrame], pd.DataFrame]


def _sign(frame: pd.DataFrame) -> np.ndarray:
    """-1 for expenses, +1 otherwise (the export's sign convention)."""
    expense = frame["type"].astype("string").str.lower().eq("expense").fillna(True)
    return np.where(expense.to_numpy(dtype=bool), -1.0, 1.0)


def _with(frame: pd.DataFrame, **columns: object) -> pd.DataFrame:
    out = frame.copy()
    for name, value in columns.items():
        out[name] = value
    return out


def _text(frame: pd.DataFrame, value: str | None) -> pd.Series:
    return pd.Series([value] * len(frame), index=frame.index, dtype=object)


def _amounts(frame: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    return _with(frame, amount=values.astype(np.float64))


def _dates(frame: pd.DataFrame, when: pd.Timestamp) -> pd.DataFrame:
    return _with(frame, date=pd.Series(when, index=frame.index).astype("datetime64[ns]"))


FAMILIES: dict[str, dict[str, EdgeCase]] = {
    "amounts": {
        "zero_amount": lambda f: _amounts(f, np.zeros(len(f))),
        "tiny_amount": lambda f: _amounts(f, _sign(f) * TINY_AMOUNT),
        "huge_amount": lambda f: _amounts(f, _sign(f) * HUGE_AMOUNT),
        "wrongly_signed_amount": lambda f: _amounts(f, -f["amount"].to_numpy(dtype=np.float64)),
    },
    "descriptions": {
        "empty_description": lambda f: _with(f, description=_text(f, "")),
        "unicode_description": lambda f: _with(f, description=_text(f, UNICODE_DESCRIPTION)),
        "5000_char_description": lambda f: _with(f, description=_text(f, LONG_DESCRIPTION)),
    },
    "unseen_values": {
        "unseen_category": lambda f: _with(f, category=_text(f, UNSEEN)),
        "unseen_reference": lambda f: _with(f, reference=_text(f, UNSEEN)),
        "unseen_payment_method": lambda f: _with(f, payment_method=_text(f, UNSEEN)),
    },
    "missing_fields": {
        "missing_optional_fields": lambda f: _with(
            f, description=_text(f, None), **{c: _text(f, None) for c in OPTIONAL_COLUMNS}
        ),
    },
    "extreme_dates": {
        "date_far_past": lambda f: _dates(f, FAR_PAST),
        "date_far_future": lambda f: _dates(f, FAR_FUTURE),
    },
    "empty_input": {
        "no_rows": lambda f: f.iloc[0:0].copy(),
    },
}


def edge_cases(base: pd.DataFrame, switches: EdgeCaseSwitches) -> dict[str, pd.DataFrame]:
    """Each enabled edge case applied to every row of ``base`` (a few real transactions).

    >>> base = pd.DataFrame({"date": pd.to_datetime(["2024-01-02"]), "type": ["Expense"],
    ...     "description": ["Coffee"], "amount": [-4.5], "category": ["food"],
    ...     "payment_method": ["cash"], "status": ["paid"], "reference": ["Cafe"],
    ...     "receipt_url": [None]})
    >>> cases = edge_cases(base, EdgeCaseSwitches(descriptions=False, unseen_values=False))
    >>> sorted(cases)[:3], cases["huge_amount"]["amount"].tolist()
    (['date_far_future', 'date_far_past', 'huge_amount'], [-1000000000000.0])
    >>> len(edge_cases(base, EdgeCaseSwitches())["5000_char_description"].loc[0, "description"])
    5000
    """
    enabled = switches.model_dump()
    return {
        name: build(base)
        for family, cases in FAMILIES.items()
        if enabled.get(family, True)
        for name, build in cases.items()
    }
