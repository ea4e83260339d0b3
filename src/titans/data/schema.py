"""Validate export-format rows into a typed transactions frame, with every problem reported.

`validate_frame` takes the text cells `titans.data.io.read_raw` gives, parses and
checks each column with whole-column pandas operations, and returns a
`ValidationReport`: the typed valid rows, the rejected rows with their original
values, and one issue per problem (row number, column, value, rule, suggestion).
A row with any issue is rejected; none is dropped silently. `TRANSACTIONS_SCHEMA`
(pandera) is the contract of the typed frame every module exchanges.

Rules (the ``rule`` column of the issues):

- ``required``: a blank cell where a value is required (Category and Payment
  Method only for expenses; Receipt URL never).
- ``date_format``: a date that is not a real ``YYYY-MM-DD`` date.
- ``amount_format``: an amount that is not a number. Thousands separators,
  currency symbols ($ € £), blanks and accounting parentheses ``(12.50)`` are parsed.
- ``unknown_value``: Type, Category, Payment Method or Status outside its
  vocabulary, with the closest known value as the suggestion. Case, blanks and
  spaces vs underscores are normalised first (``Office Supplies`` is ``office_supplies``).
- ``sign_for_type``: an expense with a positive amount or an income with a
  negative one; the suggestion is the amount with the sign flipped.
- ``label_format``: an ``Is Anomaly`` cell that is not true/false.
- ``extra_fields``: the row has more cells than the header.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from titans.data.columns import (
    COLUMNS,
    EXPENSE_CATEGORIES,
    LABEL_COLUMNS,
    PAYMENT_METHODS,
    STATUSES,
    TRANSACTION_TYPES,
)
from titans.data.io import EXTRA_FIELDS, ROW_NUMBER, STRING_DTYPE
from titans.errors import DataValidationError

#: columns of `ValidationReport.issues`
ISSUE_COLUMNS: tuple[str, ...] = ("row_number", "column", "value", "rule", "suggestion", "message")

#: rule names an issue can carry (see the module docstring)
RULES: tuple[str, ...] = (
    "required",
    "date_format",
    "unknown_value",
    "amount_format",
    "sign_for_type",
    "label_format",
    "extra_fields",
)

_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


def _sign_matches_type(frame: pd.DataFrame) -> pd.Series:
    expense = frame["type"] == "Expense"
    return (expense & (frame["amount"] <= 0)) | (~expense & (frame["amount"] >= 0))


def _expense_fields_present(frame: pd.DataFrame) -> pd.Series:
    expense = frame["type"] == "Expense"
    return ~expense | (frame["category"].notna() & frame["payment_method"].notna())


def _text(*checks: pa.Check, nullable: bool = False) -> pa.Column:
    # coerce: a frame whose text columns are `object` (Python str, None/NaN) is accepted and
    # comes back with the package's string dtype
    return pa.Column(STRING_DTYPE, list(checks), nullable=nullable, coerce=True)


#: the typed transactions frame every module exchanges; `validate` returns it coerced
TRANSACTIONS_SCHEMA = pa.DataFrameSchema(
    {
        "date": pa.Column("datetime64[ns]", nullable=False, coerce=True),
        "type": _text(pa.Check.isin(TRANSACTION_TYPES)),
        "description": _text(pa.Check.str_length(min_value=1)),
        "amount": pa.Column("float64", pa.Check(lambda s: np.isfinite(s), error="finite amount")),
        "category": _text(pa.Check.isin(EXPENSE_CATEGORIES), nullable=True),
        "payment_method": _text(pa.Check.isin(PAYMENT_METHODS), nullable=True),
        "status": _text(pa.Check.isin(STATUSES)),
        "reference": _text(pa.Check.str_length(min_value=1)),
        "receipt_url": _text(nullable=True),
        "is_anomaly": pa.Column(bool, required=False),
    },
    checks=[
        pa.Check(_sign_matches_type, error="expenses are <= 0 and income >= 0"),
        pa.Check(_expense_fields_present, error="expenses have a category and payment method"),
    ],
    name="transactions",
)


@dataclass
class ValidationReport:
    """What validation found: typed valid rows, rejected raw rows, and one issue per problem."""

    #: the typed rows that passed every rule (`TRANSACTIONS_SCHEMA`)
    valid: pd.DataFrame
    #: the rows with at least one issue, original cells and ``row_number``
    rejected: pd.DataFrame
    #: one row per problem: row_number, column, value, rule, suggestion, message
    issues: pd.DataFrame
    total_rows: int

    @property
    def bad_share(self) -> float:
        """Share of rows rejected (0.0 for an empty file)."""
        return len(self.rejected) / self.total_rows if self.total_rows else 0.0

    def passed(self, max_bad_share: float) -> bool:
        """True when the share of rejected rows is at most ``max_bad_share``."""
        return self.bad_share <= max_bad_share

    def quarantine_frame(self) -> pd.DataFrame:
        """Rejected rows, original cells, plus ``reasons``: the row's issues joined by '; '."""
        quarantine = self.rejected.copy()
        reasons = _join_reasons(self.issues)
        quarantine["reasons"] = quarantine[ROW_NUMBER].map(reasons).astype(STRING_DTYPE)
        return quarantine

    def to_dict(self, max_issues: int | None = 100) -> dict[str, Any]:
        """Counts, issues per rule and column, and the first ``max_issues`` issues (None: all)."""
        shown = self.issues if max_issues is None else self.issues.head(max_issues)
        records: list[dict[str, Any]] = [
            {str(key): (None if pd.isna(value) else value) for key, value in record.items()}
            for record in shown.astype(object).to_dict(orient="records")
        ]
        for record in records:
            record["row_number"] = int(record["row_number"])
        return {
            "total_rows": self.total_rows,
            "valid_rows": len(self.valid),
            "rejected_rows": len(self.rejected),
            "bad_share": self.bad_share,
            "issue_count": len(self.issues),
            "issues_by_rule": _counts(self.issues["rule"]),
            "issues_by_column": _counts(self.issues["column"]),
            "issues": records,
            "issues_truncated": len(shown) < len(self.issues),
        }


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in values.value_counts().items()}


# --------------------------------------------------------------------------- helpers


def closest_value(value: str, vocabulary: Sequence[str]) -> str | None:
    """The known value a misspelt or truncated one most likely meant, or None.

    >>> closest_value("credit_car", ["credit_card", "cash"])
    'credit_card'
    >>> closest_value("prof", ["professional_fees", "rent"])
    'professional_fees'
    >>> closest_value("zzz", ["rent"]) is None
    True
    """
    key = value.strip().lower()
    if len(key) >= 3:
        starting = [v for v in vocabulary if v.lower().startswith(key)]
        if len(starting) == 1:
            return starting[0]
    lowered = {v.lower(): v for v in vocabulary}
    match = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.75)
    return lowered[match[0]] if match else None


# Regexes spelt without \s and \d so pandas runs them in pyarrow (RE2) instead of per cell in
# Python (about 10x faster); the cells are already stripped of surrounding blanks.
_BLANK_RUN = r"[ \t\r\n\-]+"
_AMOUNT_NOISE = r"[ \t$€£]"
_AMOUNT_SHAPE = r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|[+-]?\.[0-9]+"


def _blank_to_na(column: pd.Series) -> pd.Series:
    """Text stripped of surrounding blanks; empty cells become NA."""
    text = column.astype(STRING_DTYPE).str.strip()
    return text.where(text != "")


def _normalise_code(column: pd.Series, vocabulary: Sequence[str]) -> pd.Series:
    """Categorical codes compared loosely: lower case, runs of blanks/hyphens as one `_`.

    >>> _normalise_code(pd.Series(["Office Supplies", "rent", None]), ["rent"]).tolist()
    ['office_supplies', 'rent', nan]
    """
    loose = (~column.isin(vocabulary) & column.notna()).to_numpy(dtype=bool)
    if not loose.any():  # the usual case: every code already exact
        return column
    codes = column.copy()
    codes[loose] = column[loose].str.lower().str.replace(_BLANK_RUN, "_", regex=True)
    return codes


def _parse_amounts(text: pd.Series) -> pd.Series:
    """Amount text as float64 (NaN where it is not a number).

    >>> _parse_amounts(pd.Series(["$1,234.50", "(12.00)", "-€3", "12,34", "1e5", "abc"])).tolist()
    [1234.5, -12.0, -3.0, nan, nan, nan]
    """
    cleaned = text.astype(STRING_DTYPE).str.replace(_AMOUNT_NOISE, "", regex=True)
    parenthesised = cleaned.str.fullmatch(r"\(.*\)").fillna(False).astype(bool)
    cleaned = cleaned.where(~parenthesised, cleaned.str.slice(1, -1))
    well_formed = cleaned.str.fullmatch(_AMOUNT_SHAPE).fillna(False).astype(bool)
    signed = cleaned.str.match(r"[+-]").fillna(False).astype(bool)
    usable = well_formed & ~(parenthesised & signed)
    numbers = pd.to_numeric(
        cleaned.where(usable).str.replace(",", "", regex=False), errors="coerce"
    ).astype("float64")
    return numbers.where(~parenthesised, -numbers)


def _suggestions(values: pd.Series, vocabulary: Sequence[str]) -> pd.Series:
    """Closest known value per bad value (looped over the distinct bad values only)."""
    hints = pd.Series(None, index=values.index, dtype=object)
    present = values.notna().to_numpy(dtype=bool)
    if present.any():
        bad = values[present].astype(object)
        lookup = {v: closest_value(str(v), vocabulary) for v in bad.unique()}
        hints[present] = bad.map(lookup).to_numpy(dtype=object)
    return hints


Message = Callable[[object, object], str]


class _Collector:
    """Accumulates issues rule by rule; each call adds one issue per flagged row."""

    def __init__(self, raw: pd.DataFrame, row_numbers: np.ndarray) -> None:
        self.raw = raw
        self.row_numbers = row_numbers
        self.bad = np.zeros(len(raw), dtype=bool)
        self.parts: list[pd.DataFrame] = []

    def add(
        self,
        mask: pd.Series,
        column: str,
        rule: str,
        message: Message,
        suggestion: pd.Series | str | None = None,
    ) -> None:
        """Flag the rows of ``mask``; ``message(value, suggestion)`` runs on flagged rows only."""
        flags = mask.fillna(False).to_numpy(dtype=bool)
        count = int(flags.sum())
        if not count:
            return
        self.bad |= flags
        values = self.raw[column][flags].to_numpy(dtype=object)
        values = np.where(pd.isna(values), None, values)
        if isinstance(suggestion, pd.Series):
            hints = suggestion[flags].to_numpy(dtype=object)
            hints = np.where(pd.isna(hints), None, hints)
        else:
            hints = np.full(count, suggestion, dtype=object)
        self.parts.append(
            pd.DataFrame(
                {
                    "row_number": self.row_numbers[flags],
                    "column": column,
                    "value": values,
                    "rule": rule,
                    "suggestion": hints,
                    "message": [message(v, h) for v, h in zip(values, hints, strict=True)],
                }
            )
        )

    def issues(self) -> pd.DataFrame:
        """All issues in file order (row, then column order of the export)."""
        if not self.parts:
            empty: dict[str, pd.Series] = {"row_number": pd.Series(dtype="int64")}
            empty.update({c: pd.Series(dtype=STRING_DTYPE) for c in ISSUE_COLUMNS[1:]})
            return pd.DataFrame(empty)
        issues = pd.concat(self.parts, ignore_index=True)
        order = {c: i for i, c in enumerate((*COLUMNS, *LABEL_COLUMNS, EXTRA_FIELDS))}
        issues["_order"] = issues["column"].map(order)
        issues = issues.sort_values(["row_number", "_order"], kind="stable")
        issues = issues.drop(columns="_order").reset_index(drop=True)
        issues["row_number"] = issues["row_number"].astype("int64")
        for column in ISSUE_COLUMNS[1:]:
            issues[column] = issues[column].astype(STRING_DTYPE)
        return issues


def _check_vocabulary(
    collector: _Collector, column: str, codes: pd.Series, vocabulary: Sequence[str]
) -> pd.Series:
    """Flag codes outside the vocabulary (suggesting the closest); return known codes, NA else."""
    known = codes.isin(vocabulary)
    unknown = codes.notna() & ~known
    listing = f" (known: {', '.join(vocabulary)})" if len(vocabulary) <= 6 else ""

    def message(value: object, suggestion: object) -> str:
        hint = f" (did you mean '{suggestion}'?)" if suggestion else listing
        return f"'{value}' is not a known {column.replace('_', ' ')}{hint}"

    collector.add(
        unknown, column, "unknown_value", message, _suggestions(codes.where(unknown), vocabulary)
    )
    return codes.where(known)


def _require(
    collector: _Collector, text: pd.Series, column: str, when: pd.Series | None = None
) -> None:
    """Flag blank cells (only on rows of ``when`` when given)."""
    blank = text.isna() if when is None else text.isna() & when
    why = "required" if when is None else "required for an Expense"
    collector.add(blank, column, "required", lambda value, hint: f"blank, {why}")


def _join_reasons(issues: pd.DataFrame) -> pd.Series:
    """Row number -> "column: message; column: message" (grouped over rejected rows only)."""
    if issues.empty:
        return pd.Series(dtype=object)
    text = issues["column"].astype(str) + ": " + issues["message"].astype(str)
    return text.groupby(issues["row_number"].to_numpy(), sort=False).agg("; ".join)


# --------------------------------------------------------------------------- validation


def validate_frame(raw: pd.DataFrame) -> ValidationReport:
    """Parse and check raw export rows (text cells); return valid typed rows and every issue.

    ``raw`` is what `titans.data.io.read_raw` returns: snake_case columns of text
    or NA, ``row_number`` (1..n is assumed when absent), optionally ``is_anomaly``
    and ``extra_fields``. The valid frame follows `TRANSACTIONS_SCHEMA`; rejected
    rows keep their original cells. ``len(valid) + len(rejected) == total_rows``.

    >>> raw = pd.DataFrame({
    ...     "date": ["2024-03-01", "2024-03-02"], "type": ["Expense", "Expense"],
    ...     "description": ["Printer paper", "Fuel"], "amount": ["$-1,234.50", "-40"],
    ...     "category": ["office_supplies", "fuel"], "payment_method": ["cash", "credit_car"],
    ...     "status": ["paid", "paid"], "reference": ["Staples", "Shell"],
    ...     "receipt_url": [None, None]})
    >>> report = validate_frame(raw)
    >>> report.valid["amount"].tolist(), report.bad_share
    ([-1234.5], 0.5)
    >>> report.issues[["row_number", "column", "rule", "suggestion"]].values.tolist()
    [[2, 'payment_method', 'unknown_value', 'credit_card']]

    Raises:
        DataValidationError: ``raw`` lacks transaction columns.
    """
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"cannot validate: columns {', '.join(missing)} are missing; read the file with "
            "titans.data.io.read_raw"
        )
    raw = raw.reset_index(drop=True)
    if ROW_NUMBER in raw.columns:
        row_numbers = raw[ROW_NUMBER].to_numpy(dtype=np.int64)
    else:
        row_numbers = np.arange(1, len(raw) + 1, dtype=np.int64)
        raw = raw.assign(**{ROW_NUMBER: row_numbers})
    collector = _Collector(raw, row_numbers)
    labelled = [c for c in LABEL_COLUMNS if c in raw.columns]
    text = {c: _blank_to_na(raw[c]) for c in (*COLUMNS, *labelled)}

    _require(collector, text["date"], "date")
    dates = pd.to_datetime(text["date"], format="%Y-%m-%d", errors="coerce")
    collector.add(
        text["date"].notna() & dates.isna(),
        "date",
        "date_format",
        lambda value, hint: f"'{value}' is not a date in YYYY-MM-DD",
        "YYYY-MM-DD",
    )

    _require(collector, text["type"], "type")
    type_key = text["type"].str.lower()
    types = type_key.str.capitalize().where(type_key.isin([t.lower() for t in TRANSACTION_TYPES]))
    _check_vocabulary(
        collector, "type", types.where(types.notna(), text["type"]), TRANSACTION_TYPES
    )
    expense = types.eq("Expense").fillna(False).to_numpy(dtype=bool)
    income = types.eq("Income").fillna(False).to_numpy(dtype=bool)

    _require(collector, text["description"], "description")

    _require(collector, text["amount"], "amount")
    amounts = _parse_amounts(text["amount"])
    amounts = amounts.where(np.isfinite(amounts.to_numpy(dtype=float)))
    collector.add(
        text["amount"].notna() & amounts.isna(),
        "amount",
        "amount_format",
        lambda value, hint: f"'{value}' is not an amount (write e.g. -1234.50)",
    )
    wrong_sign = pd.Series((expense & (amounts > 0)) | (income & (amounts < 0)), index=raw.index)
    flipped = pd.Series(None, index=raw.index, dtype=object)
    flipped[wrong_sign] = [f"{-v:.2f}" for v in amounts[wrong_sign]]
    collector.add(
        wrong_sign,
        "amount",
        "sign_for_type",
        lambda value, hint: (
            f"'{value}' has the wrong sign for its type (expenses are negative, income "
            f"positive; did you mean {hint}?)"
        ),
        flipped,
    )

    expense_rows = pd.Series(expense, index=raw.index)
    _require(collector, text["category"], "category", expense_rows)
    categories = _check_vocabulary(
        collector,
        "category",
        _normalise_code(text["category"], EXPENSE_CATEGORIES),
        EXPENSE_CATEGORIES,
    )
    _require(collector, text["payment_method"], "payment_method", expense_rows)
    methods = _check_vocabulary(
        collector,
        "payment_method",
        _normalise_code(text["payment_method"], PAYMENT_METHODS),
        PAYMENT_METHODS,
    )

    _require(collector, text["status"], "status")
    statuses = _check_vocabulary(
        collector, "status", _normalise_code(text["status"], STATUSES), STATUSES
    )

    _require(collector, text["reference"], "reference")

    labels = None
    if labelled:
        label_key = text["is_anomaly"].str.lower()
        labels = label_key.isin(_TRUE)
        collector.add(
            ~(labels | label_key.isin(_FALSE)),
            "is_anomaly",
            "label_format",
            lambda value, hint: f"'{value}' is not true/false",
            "true or false",
        )

    if EXTRA_FIELDS in raw.columns:
        collector.add(
            raw[EXTRA_FIELDS].notna(),
            EXTRA_FIELDS,
            "extra_fields",
            lambda value, hint: (
                f"the row has more cells than the header: '{value}' (quote cells that "
                "contain commas)"
            ),
        )

    good = ~collector.bad
    typed: dict[str, pd.Series] = {
        "date": dates.astype("datetime64[ns]"),
        "type": types,
        "description": text["description"],
        "amount": amounts.astype("float64"),
        "category": categories,
        "payment_method": methods,
        "status": statuses,
        "reference": text["reference"],
        "receipt_url": text["receipt_url"],
    }
    if labels is not None:
        typed["is_anomaly"] = labels.astype(bool)
    valid = pd.DataFrame({name: values[good] for name, values in typed.items()})
    valid = valid.reset_index(drop=True)
    for name in ("type", "description", "category", "payment_method", "status", "reference"):
        valid[name] = valid[name].astype(STRING_DTYPE)
    valid["receipt_url"] = valid["receipt_url"].astype(STRING_DTYPE)
    valid = TRANSACTIONS_SCHEMA.validate(valid)

    return ValidationReport(
        valid=valid,
        rejected=raw.loc[collector.bad].reset_index(drop=True),
        issues=collector.issues(),
        total_rows=len(raw),
    )
