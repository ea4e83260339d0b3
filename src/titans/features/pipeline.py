"""The one feature pipeline every model uses, in training (batch) and in serving (one row).

`FeaturePipeline.transform` turns a transactions frame into a feature matrix with vectorised
pandas/numpy; `FeaturePipeline.transform_one` turns one transaction dict into exactly the same
row with plain Python and numpy (no pandas), for the serving hot path.

Columns, in order (see `get_feature_names_out`). Numeric columns are scaled to about [0, 1]
(or [-1, 1]) so linear models converge; trees do not care.

- date: ``day_of_week`` (Monday 0 .. Sunday 1), ``day_of_month`` (1st 0 .. 31st 1),
  ``month`` (January 0 .. December 1), ``is_weekend``, ``is_month_end``, ``days_to_month_end``
  (/30), ``date_missing`` (the value is not a date: the other date columns are 0). String
  dates are read as ISO ``YYYY-MM-DD`` (anything after the first ten characters is ignored);
  other strings count as missing.
- type: ``is_income``.
- amount (``use_amount``): ``amount_log1p_abs`` = log1p(|amount|) / 10, ``amount_sign``,
  ``amount_missing`` (also non-finite), ``amount_z_reference`` = robust z-score of
  log1p(|amount|) against the reference's median and IQR learned in fit (for the 20,000
  most frequent references; the transaction type's when the reference has fewer than 5
  training amounts or is unseen), clipped to ±10
  and divided by 10; with ``use_category`` also ``amount_z_category``, the same within the
  category.
- ``reference_frequency``: log1p(count of the reference in training) / log1p(training rows).
- payment method, status, reference (the ``max_references`` most frequent) and, with
  ``use_category``, category: one-hot ``field=__missing__``, ``field=__other__`` (not in the
  vocabulary learned in fit), ``field=<value>``; with ``use_amount`` also one-hot bins of
  log1p(|amount|) half a log unit wide (``amount_bin=[2.5,3)``), so linear models can use the
  amount non-linearly. With ``categorical_encoding="ordinal"`` instead one code column per
  field (0 missing, 1 other, 2.. the vocabulary; no amount bins), flagged in
  ``categorical_feature_mask_``.
- text (``text="hash"``): ``n_text_features`` hashed, l2-normalised counts of the
  description's character 3-5-grams (within words), its word unigrams and bigrams, and the
  reference's words and whole value (so references outside the top ``max_references`` still
  count). The description is cut at 1,000 characters.

Categorical values are compared after ``strip().lower()``; an empty string is missing.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import numbers
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn import get_config
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils import murmurhash3_32

from titans.data.columns import EXPENSE_CATEGORIES, PAYMENT_METHODS, STATUSES
from titans.errors import InputError, NotFittedError

__all__ = ["MISSING", "OTHER", "FeaturePipeline", "FeaturePipelineNotFittedError"]

MISSING = "__missing__"
OTHER = "__other__"

_DATE_FEATURES = (
    "day_of_week",
    "day_of_month",
    "month",
    "is_weekend",
    "is_month_end",
    "days_to_month_end",
    "date_missing",
)
#: a categorical code column must stay below HistGradientBoosting's 255 bins: 2 + 253
_ORDINAL_MAX_VOCABULARY = 253
#: cap on values seen only in the data (typos...) for payment method, status, category
_ONEHOT_MAX_VOCABULARY = 1000
#: how many references keep their training frequency and amount stats (the rest: unseen)
_MAX_FREQUENCY_REFERENCES = 20_000
#: a reference or category needs this many training amounts to get its own median/IQR
_MIN_GROUP_ROWS = 5
_MIN_SCALE = 0.1  # in log1p units: ~10 %, so a constant recurring amount does not explode
_Z_CLIP = 10.0
#: one-hot bins of log1p(|amount|), half a log unit wide (x1.65), the last open-ended (>= 16)
_N_AMOUNT_BINS = 33
_LOG_AMOUNT_SCALE = 10.0  # log1p(|amount|) / 10: 1.0 at ~22,000
_CHAR_NGRAMS = (3, 5)
_MAX_DESCRIPTION_CHARS = 1000  # bounds the serving cost of a pathological description
_MAX_REFERENCE_CHARS = 200
_TEXT_CACHE_SIZE = 8192  # entries per serving-time cache
_WORD_RE = re.compile(r"(?u)\b\w\w+\b")
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_DAYS_IN_MONTH = np.array(_MONTH_DAYS, dtype=np.int64)


class FeaturePipelineNotFittedError(NotFittedError, SklearnNotFittedError):
    """The pipeline was used before `fit`; caught by both titans' and sklearn's NotFittedError."""


# ----------------------------------------------------------------------------- value helpers
# Used by BOTH paths (batch applies them to the unique values of a column), so the two agree.


def _is_na(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and value != value


def _clean_unicode(text: str) -> str:
    """Lone surrogates (legal in JSON) cannot be UTF-8 encoded for hashing: replace them."""
    if text.isascii():
        return text
    return text.encode("utf-8", "replace").decode("utf-8")


def _normalize_token(value: Any) -> str | None:
    """Categorical value as compared with the vocabulary; None when missing or blank."""
    if _is_na(value):
        return None
    text = value if isinstance(value, str) else str(value)
    text = _clean_unicode(text.strip().lower())
    return text or None


def _text_value(value: Any) -> str:
    """Free text as hashed; '' when missing."""
    if _is_na(value):
        return ""
    return _clean_unicode(value if isinstance(value, str) else str(value))


def _description_pieces(description: str) -> list[str]:
    return description[:_MAX_DESCRIPTION_CHARS].lower().split()


def _piece_tokens(piece: str) -> tuple[list[str], list[str]]:
    """Char n-grams (inside the padded piece) and word tokens of one piece, and its words."""
    padded = f" {piece} "
    length = len(padded)
    tokens: list[str] = []
    low, high = _CHAR_NGRAMS
    for n in range(low, high + 1):
        if length <= n:  # a short word counts once, as sklearn's char_wb does
            tokens.append(padded)
            break
        tokens.extend([padded[start : start + n] for start in range(length - n + 1)])
    words = _WORD_RE.findall(piece)
    tokens.extend(["w " + w for w in words])
    return tokens, words


def _bigram_tokens(words: list[str]) -> list[str]:
    return [f"b {a} {b}" for a, b in pairwise(words)]


def _reference_tokens(reference: str) -> list[str]:
    if not reference:
        return []
    reference = reference[:_MAX_REFERENCE_CHARS]
    return ["R " + reference, *["r " + w for w in _WORD_RE.findall(reference)]]


def _text_tokens(doc: tuple[str, str]) -> list[str]:
    """Hashing analyzer: description char n-grams, words, bigrams; reference words and value.

    >>> _text_tokens(("Gas", "shell"))
    [' ga', 'gas', 'as ', ' gas', 'gas ', ' gas ', 'w gas', 'R shell', 'r shell']
    """
    description, reference = doc
    tokens: list[str] = []
    words: list[str] = []
    for piece in _description_pieces(description):
        piece_tokens, piece_words = _piece_tokens(piece)
        tokens += piece_tokens
        words += piece_words
    return tokens + _bigram_tokens(words) + _reference_tokens(reference)


def _hash_indices(tokens: list[str], n_features: int) -> list[int]:
    """Columns of tokens, exactly as sklearn's FeatureHasher computes them."""
    hashes = list(map(murmurhash3_32, tokens))  # signed 32-bit murmur3 of UTF-8, seed 0
    if -2147483648 in hashes:  # abs() would overflow in C; sklearn defines this column
        special = (2147483647 - (n_features - 1)) % n_features
        return [special if h == -2147483648 else abs(h) % n_features for h in hashes]
    return [abs(h) % n_features for h in hashes]


def _float_or_nan(value: Any) -> float:
    if _is_na(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


def _date_of(value: Any) -> dt.date | None:
    """The calendar date of a date-like value, None when it is not a date.

    Strings must start with ISO ``YYYY-MM-DD`` (what batch reads from ``str(value)[:10]``).
    """
    if value is pd.NaT:  # NaT is a datetime instance
        return None
    if isinstance(value, dt.datetime):  # datetime and pandas Timestamp: the wall-clock date
        return value.date()
    if isinstance(value, dt.date):
        return value
    if _is_na(value):
        return None
    text = (value if isinstance(value, str) else str(value))[:10]
    if (
        len(text) != 10
        or text[4] != "-"
        or text[7] != "-"
        or not text.isascii()
        or not (text[:4] + text[5:7] + text[8:]).isdigit()
    ):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:  # month 13, 30 February, year 0
        return None


# ----------------------------------------------------------------------------- column helpers


def _normalized_codes(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Per row: index into the returned normalized unique values, -1 when missing."""
    n = len(frame)
    if column not in frame.columns or n == 0:
        return np.full(n, -1, dtype=np.int64), np.empty(0, dtype=object)
    raw_codes, uniques = pd.factorize(frame[column].to_numpy(dtype=object))
    normalized = np.array([_normalize_token(u) for u in uniques], dtype=object)
    norm_codes, norm_uniques = pd.factorize(normalized)
    norm_codes = np.append(norm_codes, -1)  # raw code -1 (NA) picks the trailing -1
    return norm_codes[raw_codes].astype(np.int64), np.asarray(norm_uniques, dtype=object)


def _vocabulary_codes(row_codes: np.ndarray, uniques: np.ndarray, vocabulary: Sequence[str]):
    """Feature codes per row: 0 missing, 1 unseen, 2 + position in the vocabulary."""
    position = pd.Index(list(vocabulary), dtype=object).get_indexer(uniques)
    unique_codes = np.append(np.where(position >= 0, position + 2, 1), 0).astype(np.int64)
    return unique_codes[row_codes]


def _counts(row_codes: np.ndarray, n_uniques: int) -> np.ndarray:
    return np.bincount(row_codes[row_codes >= 0], minlength=n_uniques)


def _by_count(uniques: np.ndarray, counts: np.ndarray) -> list[str]:
    """Values by descending count, ties by value, so the result does not depend on row order."""
    order = sorted(range(len(uniques)), key=lambda i: (-int(counts[i]), str(uniques[i])))
    return [str(uniques[i]) for i in order if counts[i] > 0]


def _vocabulary(
    known: Sequence[str], uniques: np.ndarray, counts: np.ndarray, limit: int
) -> tuple[str, ...]:
    known_set = set(known)
    extra = [v for v in _by_count(uniques, counts) if v not in known_set]
    return tuple([*known, *extra][:limit])


def _amounts(frame: pd.DataFrame) -> np.ndarray:
    if "amount" not in frame.columns:
        return np.full(len(frame), np.nan)
    column = frame["amount"]
    if pd.api.types.is_numeric_dtype(column.dtype):
        return np.array(column.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    try:
        parsed = pd.to_numeric(column, errors="coerce")
        return np.array(
            pd.Series(parsed).to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64
        )
    except (TypeError, ValueError, OverflowError):
        # a value float() cannot take either (e.g. a 400-digit int): per-unique fallback
        codes, uniques = pd.factorize(column.to_numpy(dtype=object))
        values = np.append(np.array([_float_or_nan(u) for u in uniques], dtype=np.float64), np.nan)
        return values[codes]


def _date_parts(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 per row (0 where invalid) and whether the date is valid."""
    n = len(column)
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(column.dtype):
        values = column.to_numpy()
        valid = ~np.isnat(values)
        days = values.astype("datetime64[D]")
        years = days.astype("datetime64[Y]").astype(np.int64) + 1970
        valid &= (years >= 1) & (years <= 9999)
        return np.where(valid, days.astype(np.int64), 0), valid
    # anything else: the first 10 characters of str(value) must read YYYY-MM-DD
    text = column.to_numpy(dtype=object).astype("U10")
    chars = text.view(np.uint32).reshape(n, 10).astype(np.int64)
    digits = chars[:, [0, 1, 2, 3, 5, 6, 8, 9]] - 48
    valid = ((digits >= 0) & (digits <= 9)).all(axis=1)
    valid &= (chars[:, 4] == 45) & (chars[:, 7] == 45)
    year = digits[:, 0] * 1000 + digits[:, 1] * 100 + digits[:, 2] * 10 + digits[:, 3]
    month = digits[:, 4] * 10 + digits[:, 5]
    day = digits[:, 6] * 10 + digits[:, 7]
    valid &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    month_index = np.clip(month - 1, 0, 11)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    valid &= day <= _DAYS_IN_MONTH[month_index] + ((month == 2) & leap)
    year, month_index, day = np.where(valid, year, 1970), np.where(valid, month_index, 0), day
    months = (year - 1970).astype("datetime64[Y]").astype("datetime64[M]") + month_index
    days = months.astype("datetime64[D]") + np.where(valid, day - 1, 0)
    return np.where(valid, days.astype(np.int64), 0), valid


def _date_block(days: np.ndarray, valid: np.ndarray) -> list[np.ndarray]:
    stamps = days.astype("datetime64[D]")
    months = stamps.astype("datetime64[M]")
    day_of_week = (days + 3) % 7  # 1970-01-01 was a Thursday
    day_of_month = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
    month = (months - stamps.astype("datetime64[Y]").astype("datetime64[M]")).astype(np.int64) + 1
    to_end = ((months + 1).astype("datetime64[D]") - stamps).astype(np.int64) - 1
    columns = [
        day_of_week / 6.0,
        (day_of_month - 1) / 30.0,
        (month - 1) / 11.0,
        day_of_week >= 5,
        to_end == 0,
        to_end / 30.0,
    ]
    out = [np.where(valid, c, 0.0).astype(np.float64) for c in columns]
    out.append((~valid).astype(np.float64))
    return out


def _group_stats(
    keys: np.ndarray, n_groups: int, log_amount: np.ndarray, ok: np.ndarray
) -> dict[int, tuple[float, float]]:
    """(median, scale) of log amounts per group id with enough rows; scale = IQR/1.349, floored."""
    mask = ok & (keys >= 0)
    if n_groups == 0 or not mask.any():
        return {}
    grouped = pd.Series(log_amount[mask]).groupby(keys[mask])
    sizes = grouped.size()
    q = grouped.quantile([0.25, 0.5, 0.75]).unstack()
    stats = {}
    for group in sizes.index[sizes.to_numpy() >= _MIN_GROUP_ROWS]:
        q25, q50, q75 = (float(q.loc[group, p]) for p in (0.25, 0.5, 0.75))
        stats[int(group)] = (q50, max((q75 - q25) / 1.349, _MIN_SCALE))
    return stats


def _stats_by_value(
    values: Sequence[str],
    codes: np.ndarray,
    uniques: np.ndarray,
    log_amount: np.ndarray,
    ok: np.ndarray,
) -> dict[str, tuple[float, float]]:
    """Amount (median, scale) per value among ``values`` that has enough training amounts."""
    keys = _vocabulary_codes(codes, uniques, values) - 2  # < 0: missing or not in values
    stats = _group_stats(keys, len(values), log_amount, ok)
    return {values[k]: v for k, v in sorted(stats.items())}


def _robust_z(
    log_amount: np.ndarray, ok: np.ndarray, median: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    z = np.clip((log_amount - median) / scale, -_Z_CLIP, _Z_CLIP) / _Z_CLIP
    return np.where(ok, z, 0.0)


# ----------------------------------------------------------------------------- the estimator


class FeaturePipeline(TransformerMixin, BaseEstimator):
    """Transactions frame -> feature matrix; the same features for batch and for one row.

    Parameters
    ----------
    text : {"hash", "none"}
        Hash description and reference text into ``n_text_features`` columns, or no text.
    n_text_features : int
        Width of the hashed text block. With ``output="dense"`` keep it small (e.g. 2**10):
        a dense row costs 8 bytes per column.
    use_amount : bool
        Amount features (log magnitude, sign, missing, robust z-scores). Off for the model
        that predicts the amount.
    use_category : bool
        Category columns and the amount's z-score within its category. Off for the model that
        predicts the category.
    max_references : int
        Most frequent references kept as their own column; the rest share ``__other__``.
        With ordinal encoding at most 253 (the 255-bin limit of HistGradientBoosting).
    categorical_encoding : {"onehot", "ordinal"}
        One-hot columns, or one integer code column per field for tree models
        (pass ``categorical_feature_mask_`` as HistGradientBoosting's ``categorical_features``).
    output : {"sparse", "dense"}
        CSR float64 matrix or float64 ndarray. Only the container depends on it, so a fitted
        pipeline may switch it: ``set_params(output="dense")`` gives the same values as dense
        rows, the fastest serving path (a one-row scipy matrix costs ~15 µs to build).

    Examples
    --------
    >>> frame = pd.DataFrame({
    ...     "date": pd.to_datetime(["2024-01-31", "2024-02-03"]),
    ...     "type": ["Expense", "Income"], "description": ["Fuel at Shell", "Invoice 7"],
    ...     "amount": [-54.2, 1200.0], "category": ["fuel", None],
    ...     "payment_method": ["credit_card", None], "status": ["paid", "received"],
    ...     "reference": ["Shell", "ACME Ltd"], "receipt_url": [None, None]})
    >>> pipe = FeaturePipeline(text="none", output="dense").fit(frame)
    >>> one = {"date": "2024-01-31", "amount": -54.2, "reference": " SHELL"}
    >>> row = pipe.transform_one(one)
    >>> named = dict(zip(pipe.get_feature_names_out(), row[0].tolist()))
    >>> [named[c] for c in ("is_month_end", "amount_sign", "reference=shell", "status=__missing__")]
    [1.0, -1.0, 1.0, 1.0]
    >>> bool((pipe.transform(pd.DataFrame([one])) == row).all())
    True
    """

    def __init__(
        self,
        text: Literal["hash", "none"] = "hash",
        n_text_features: int = 2**14,
        use_amount: bool = True,
        use_category: bool = False,
        max_references: int = 300,
        categorical_encoding: Literal["onehot", "ordinal"] = "onehot",
        output: Literal["sparse", "dense"] = "sparse",
    ) -> None:
        self.text = text
        self.n_text_features = n_text_features
        self.use_amount = use_amount
        self.use_category = use_category
        self.max_references = max_references
        self.categorical_encoding = categorical_encoding
        self.output = output

    # ------------------------------------------------------------------ fit

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeaturePipeline:
        """Learn vocabularies, reference frequencies and amount statistics from ``X``."""
        self._check_params()
        self.__dict__.pop("_text_cache_", None)  # hash indices depend on n_text_features
        frame = _as_frame(X)
        n = len(frame)
        if n == 0:
            raise InputError("cannot fit the feature pipeline on 0 transactions; pass some rows")
        if "date" not in frame.columns:
            raise InputError("transactions have no 'date' column; add one in YYYY-MM-DD form")
        ordinal = self.categorical_encoding == "ordinal"
        limit = _ORDINAL_MAX_VOCABULARY if ordinal else _ONEHOT_MAX_VOCABULARY

        known: dict[str, Sequence[str]] = {
            "payment_method": PAYMENT_METHODS,
            "status": STATUSES,
            "category": EXPENSE_CATEGORIES,
        }
        reference_codes, reference_uniques = _normalized_codes(frame, "reference")
        reference_counts = _counts(reference_codes, len(reference_uniques))
        ranked = _by_count(reference_uniques, reference_counts)
        top = min(self.max_references, _ORDINAL_MAX_VOCABULARY) if ordinal else self.max_references
        vocabularies: dict[str, tuple[str, ...]] = {"reference": tuple(ranked[:top])}
        for field in self._fields():
            if field != "reference":
                codes, uniques = _normalized_codes(frame, field)
                counts = _counts(codes, len(uniques))
                vocabularies[field] = _vocabulary(known[field], uniques, counts, limit)
        self.vocabularies_ = {f: vocabularies[f] for f in self._fields()}
        self.codes_ = {f: {v: i + 2 for i, v in enumerate(vs)} for f, vs in vocabularies.items()}

        frequent = ranked[:_MAX_FREQUENCY_REFERENCES]
        position = {v: i for i, v in enumerate(reference_uniques.tolist())}
        frequency = np.log1p(reference_counts[[position[v] for v in frequent]].astype(np.float64))
        frequency = frequency / np.log1p(float(n))
        self.reference_frequency_ = dict(zip(frequent, frequency.tolist(), strict=True))

        amount = _amounts(frame)
        ok = np.isfinite(amount)
        log_amount = np.log1p(np.abs(np.where(ok, amount, 0.0)))
        is_income = self._is_income(frame)
        overall = _group_stats(np.zeros(n, dtype=np.int64), 1, log_amount, ok).get(0, (0.0, 1.0))
        by_type = _group_stats(is_income.astype(np.int64), 2, log_amount, ok)
        self.type_stats_ = {
            "expense": by_type.get(0, overall),
            "income": by_type.get(1, overall),
        }
        # per reference for every frequent one (not only the one-hot vocabulary): an unusual
        # amount at a long-tail merchant is what an anomaly model wants to see
        self.reference_stats_ = _stats_by_value(
            tuple(frequent), reference_codes, reference_uniques, log_amount, ok
        )
        self.category_stats_: dict[str, tuple[float, float]] = {}
        if self.use_category:
            codes, uniques = _normalized_codes(frame, "category")
            self.category_stats_ = _stats_by_value(
                self.vocabularies_["category"], codes, uniques, log_amount, ok
            )

        names, mask = self._layout()
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.categorical_feature_mask_ = np.asarray(mask, dtype=bool)
        self.n_features_out_ = len(names)
        self.n_numeric_ = int(len(names) - self._n_onehot() - self._n_text())
        offsets, start = {}, self.n_numeric_
        for field, width in self._onehot_widths().items():
            offsets[field] = start
            start += width
        self.onehot_offsets_ = offsets
        return self

    # ------------------------------------------------------------------ batch path

    def transform(self, X: pd.DataFrame) -> Any:
        """Feature matrix for a transactions frame (extra columns are ignored)."""
        self._check_fitted()
        frame = _as_frame(X)
        if "date" not in frame.columns:
            raise InputError("transactions have no 'date' column; add one in YYYY-MM-DD form")
        n = len(frame)
        ordinal = self.categorical_encoding == "ordinal"

        days, valid = _date_parts(frame["date"])
        numeric = _date_block(days, valid)
        is_income = self._is_income(frame)
        numeric.append(is_income.astype(np.float64))

        reference_codes, reference_uniques = _normalized_codes(frame, "reference")
        field_codes: dict[str, np.ndarray] = {}
        if self.use_amount:
            amount_block, field_codes["amount_bin"] = self._amount_block(
                frame, is_income, reference_codes, reference_uniques
            )
            numeric.extend(amount_block)
        freq = np.array(
            [self.reference_frequency_.get(u, 0.0) for u in reference_uniques] + [0.0],
            dtype=np.float64,
        )
        numeric.append(freq[reference_codes])

        for field in self._fields():
            if field == "reference":
                codes, uniques = reference_codes, reference_uniques
            else:
                codes, uniques = _normalized_codes(frame, field)
            field_codes[field] = _vocabulary_codes(codes, uniques, self.vocabularies_[field])
        if ordinal:
            numeric.extend(field_codes[f].astype(np.float64) for f in self._fields())

        dense_numeric = np.column_stack(numeric) if numeric else np.empty((n, 0))
        dense_numeric = dense_numeric.reshape(n, self.n_numeric_)
        blocks: list[Any] = [dense_numeric]
        if not ordinal:  # exactly one column per field and row
            local = [self.onehot_offsets_[f] - self.n_numeric_ for f in self.onehot_offsets_]
            columns = (
                np.column_stack(
                    [o + field_codes[f] for o, f in zip(local, self.onehot_offsets_, strict=True)]
                ).reshape(-1)
                if n
                else np.empty(0, dtype=np.int64)
            )
            k = len(local)
            blocks.append(
                sp.csr_matrix(
                    (np.ones(n * k), columns, np.arange(0, n * k + 1, k)),
                    shape=(n, self._n_onehot()),
                )
            )
        if self.text == "hash":
            blocks.append(self._text_block(frame, reference_codes, reference_uniques))

        if self.output == "dense":
            return np.hstack([b.toarray() if sp.issparse(b) else b for b in blocks])
        matrix = sp.hstack([sp.csr_matrix(b) for b in blocks], format="csr", dtype=np.float64)
        matrix.sort_indices()
        return _sparse_interface(matrix)

    def _amount_block(
        self,
        frame: pd.DataFrame,
        is_income: np.ndarray,
        reference_codes: np.ndarray,
        reference_uniques: np.ndarray,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Amount columns, and the amount-bin code per row (0 missing, 1 + bin)."""
        amount = _amounts(frame)
        ok = np.isfinite(amount)
        clean = np.where(ok, amount, 0.0)
        log_amount = np.ascontiguousarray(np.log1p(np.abs(clean)))
        sign = (clean > 0).astype(np.float64) - (clean < 0).astype(np.float64)
        fallback = np.array([self.type_stats_["expense"], self.type_stats_["income"]])
        base = fallback[is_income.astype(np.int64)]  # (n, 2): median, scale by type

        def z_against(stats, codes, uniques):
            table = np.array(
                [stats.get(u, (np.nan, np.nan)) for u in uniques] + [(np.nan, np.nan)],
                dtype=np.float64,
            ).reshape(-1, 2)[codes]
            table = np.where(np.isnan(table), base, table)
            return _robust_z(log_amount, ok, table[:, 0], table[:, 1])

        block = [
            np.where(ok, log_amount, 0.0) / _LOG_AMOUNT_SCALE,
            sign,
            (~ok).astype(np.float64),
            z_against(self.reference_stats_, reference_codes, reference_uniques),
        ]
        if self.use_category:
            codes, uniques = _normalized_codes(frame, "category")
            block.append(z_against(self.category_stats_, codes, uniques))
        bins = np.minimum(np.floor(log_amount * 2.0), _N_AMOUNT_BINS - 1).astype(np.int64)
        return block, np.where(ok, 1 + bins, 0)

    def _text_block(
        self, frame: pd.DataFrame, reference_codes: np.ndarray, reference_uniques: np.ndarray
    ) -> sp.csr_matrix:
        """Hashed text per row; each distinct (description, reference) pair is hashed once."""
        n = len(frame)
        if n == 0:  # FeatureHasher cannot take an empty batch
            return sp.csr_matrix((0, self._n_text()))
        if "description" in frame.columns:
            desc_codes, desc_uniques = pd.factorize(frame["description"].to_numpy(dtype=object))
        else:
            desc_codes, desc_uniques = np.full(n, -1, dtype=np.int64), np.empty(0, dtype=object)
        descriptions = [_text_value(u) for u in desc_uniques] + [""]
        references = [str(u) for u in reference_uniques] + [""]
        width = len(references)
        pair_codes, pairs = pd.factorize(
            np.where(desc_codes >= 0, desc_codes, len(descriptions) - 1).astype(np.int64) * width
            + np.where(reference_codes >= 0, reference_codes, width - 1)
        )
        docs = [(descriptions[p // width], references[p % width]) for p in pairs.tolist()]
        hashed = self._hasher().transform(docs)
        return sp.csr_matrix(hashed)[pair_codes]

    def _hasher(self) -> HashingVectorizer:
        return HashingVectorizer(
            analyzer=_text_tokens,
            n_features=self.n_text_features,
            alternate_sign=False,
            norm="l2",
            dtype=np.float64,
        )

    # ------------------------------------------------------------------ serving path

    def transform_one(self, record: Mapping[str, Any]) -> Any:
        """Features of one transaction dict, equal to ``transform(pd.DataFrame([record]))``.

        Plain Python and numpy; ``date`` is required ('YYYY-MM-DD', date or datetime), every
        other key is optional.
        """
        values, onehot, text_columns, text_values = self._parts_one(record)
        if self.output == "dense":
            row = np.zeros(self.n_features_out_)
            row[: len(values)] = values
            row[onehot] = 1.0
            row[text_columns] = text_values
            return row.reshape(1, -1)
        columns, data = _entries(values, onehot, text_columns, text_values)
        matrix = sp.csr_matrix(
            (
                np.array(data, dtype=np.float64),
                np.array(columns, dtype=np.int32),
                np.array((0, len(columns)), dtype=np.int32),
            ),
            shape=(1, self.n_features_out_),
        )
        return _sparse_interface(matrix)

    def entries_one(self, record: Mapping[str, Any]) -> tuple[list[int], list[float]]:
        """Columns (ascending) and values of the sparse row ``transform_one`` would store.

        For callers that multiply the row themselves: no matrix is built (that costs more
        than the features of a short transaction).
        """
        return _entries(*self._parts_one(record))

    def _parts_one(
        self, record: Mapping[str, Any]
    ) -> tuple[list[float], list[int], list[int], list[float]]:
        """Numeric values (leading columns), one-hot columns, text columns and text values."""
        self._check_fitted()
        try:
            date_value = record["date"]
        except (KeyError, TypeError):
            raise InputError("transaction has no 'date'; send it as YYYY-MM-DD and retry") from None
        get = record.get
        ordinal = self.categorical_encoding == "ordinal"

        date = _date_of(date_value)
        if date is None:
            values: list[float] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
        else:
            weekday, day, month = date.weekday(), date.day, date.month
            to_end = _MONTH_DAYS[month - 1] - day
            if month == 2 and calendar.isleap(date.year):
                to_end += 1
            values = [
                weekday / 6, (day - 1) / 30, (month - 1) / 11, float(weekday >= 5),
                float(to_end == 0), to_end / 30, 0.0,
            ]  # fmt: skip
        is_income = _normalize_token(get("type")) == "income"
        values.append(float(is_income))

        reference = _normalize_token(get("reference"))
        amount_bin = 0
        if self.use_amount:
            amount = _float_or_nan(get("amount"))
            if math.isfinite(amount):
                log_amount = np.log1p(abs(amount))  # numpy, as in batch: libm may differ
                base = self.type_stats_["income" if is_income else "expense"]
                values += [
                    float(log_amount / _LOG_AMOUNT_SCALE),
                    float((amount > 0) - (amount < 0)),
                    0.0,
                    _z_one(log_amount, self.reference_stats_.get(reference, base)),  # type: ignore[arg-type]
                ]
                if self.use_category:
                    category = _normalize_token(get("category"))
                    stats = self.category_stats_.get(category, base)  # type: ignore[arg-type]
                    values.append(_z_one(log_amount, stats))
                amount_bin = 1 + min(int(log_amount * 2.0), _N_AMOUNT_BINS - 1)
            else:
                values += [0.0, 0.0, 1.0, 0.0] + ([0.0] if self.use_category else [])
        values.append(self.reference_frequency_.get(reference, 0.0) if reference else 0.0)

        codes = []
        for field in self._fields():
            token = reference if field == "reference" else _normalize_token(get(field))
            codes.append(0 if token is None else self.codes_[field].get(token, 1))
        if ordinal:
            values.extend(float(c) for c in codes)
        onehot: list[int] = []
        if not ordinal:
            offsets = self.onehot_offsets_
            onehot = [offsets[f] + c for f, c in zip(self._fields(), codes, strict=True)]
            if self.use_amount:
                onehot.append(offsets["amount_bin"] + amount_bin)

        text_columns: list[int] = []
        text_values: list[float] = []
        if self.text == "hash":
            text_columns, text_values = self._text_one(
                _text_value(get("description")), reference or ""
            )
        return values, onehot, text_columns, text_values

    def _text_one(self, description: str, reference: str) -> tuple[list[int], list[float]]:
        """Output columns and values of one row's hashed text, as `_text_block` computes them.

        The tokens of `_text_tokens`, hashed as FeatureHasher does and l2-normalised.

        Hash indices are cached per description piece and per reference (they repeat across
        transactions), and whole results per (description, reference); each cache is bounded.
        """
        cache = self.__dict__.get("_text_cache_")
        if cache is None:
            cache = self.__dict__["_text_cache_"] = {"docs": {}, "pieces": {}, "references": {}}
        docs, pieces, references = cache["docs"], cache["pieces"], cache["references"]
        key = (description, reference)
        hit = docs.get(key)
        if hit is not None:
            return hit
        n_features = self.n_text_features
        indices: list[int] = []
        words: list[str] = []
        for piece in _description_pieces(description):
            entry = pieces.get(piece)
            if entry is None:
                piece_tokens, piece_words = _piece_tokens(piece)
                entry = (_hash_indices(piece_tokens, n_features), piece_words)
                _bounded_put(pieces, piece, entry)
            indices += entry[0]
            words += entry[1]
        indices += _hash_indices(_bigram_tokens(words), n_features)
        reference_indices = references.get(reference)
        if reference_indices is None:
            reference_indices = _hash_indices(_reference_tokens(reference), n_features)
            _bounded_put(references, reference, reference_indices)
        indices += reference_indices

        counts = Counter(indices)
        columns = sorted(counts)
        raw = [counts[c] for c in columns]
        # l2 as sklearn's inplace_csr_row_normalize_l2: the sum of integer squares is exact in
        # any order, and sqrt and division are correctly rounded in C, numpy and Python alike
        norm = math.sqrt(sum([c * c for c in raw])) if raw else 1.0
        offset = self.n_features_out_ - self.n_text_features
        result = ([offset + c for c in columns], [c / norm for c in raw])
        _bounded_put(docs, key, result)
        return result

    # ------------------------------------------------------------------ sklearn API

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns, in order."""
        self._check_fitted()
        return self.feature_names_out_.copy()

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "feature_names_out_")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state.pop("_text_cache_", None)  # a serving-time cache, not learned state
        return state

    # ------------------------------------------------------------------ internals

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise FeaturePipelineNotFittedError(
                "this FeaturePipeline is not fitted yet; call fit(frame) before transform"
            )

    def _check_params(self) -> None:
        def bad(name: str, allowed: str) -> InputError:
            value = getattr(self, name)
            return InputError(f"FeaturePipeline({name}={value!r}) is invalid; use {allowed}")

        if self.text not in ("hash", "none"):
            raise bad("text", "'hash' or 'none'")
        if self.categorical_encoding not in ("onehot", "ordinal"):
            raise bad("categorical_encoding", "'onehot' or 'ordinal'")
        if self.output not in ("sparse", "dense"):
            raise bad("output", "'sparse' or 'dense'")
        for name, low in (("n_text_features", 1), ("max_references", 0)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise bad(name, f"an integer >= {low}")

    def _fields(self) -> tuple[str, ...]:
        base = ("payment_method", "status", "reference")
        return (*base, "category") if self.use_category else base

    def _n_text(self) -> int:
        return int(self.n_text_features) if self.text == "hash" else 0

    def _onehot_widths(self) -> dict[str, int]:
        """Columns per one-hot field, in output order (empty with ordinal encoding)."""
        if self.categorical_encoding == "ordinal":
            return {}
        widths = {f: 2 + len(self.vocabularies_[f]) for f in self._fields()}
        if self.use_amount:
            widths["amount_bin"] = 1 + _N_AMOUNT_BINS
        return widths

    def _n_onehot(self) -> int:
        return sum(self._onehot_widths().values())

    def _is_income(self, frame: pd.DataFrame) -> np.ndarray:
        codes, uniques = _normalized_codes(frame, "type")
        return np.append(uniques == "income", False).astype(bool)[codes]

    def _layout(self) -> tuple[list[str], list[bool]]:
        names = [*_DATE_FEATURES, "is_income"]
        if self.use_amount:
            names += ["amount_log1p_abs", "amount_sign", "amount_missing", "amount_z_reference"]
            if self.use_category:
                names.append("amount_z_category")
        names.append("reference_frequency")
        mask = [False] * len(names)
        if self.categorical_encoding == "ordinal":
            names += [f"{field}_code" for field in self._fields()]
            mask += [True] * len(self._fields())
        else:
            for field in self._fields():
                field_names = [f"{field}={v}" for v in (MISSING, OTHER, *self.vocabularies_[field])]
                names += field_names
                mask += [False] * len(field_names)
            if self.use_amount:
                edges = [f"{k / 2:g}" for k in range(_N_AMOUNT_BINS)] + ["inf"]
                names.append(f"amount_bin={MISSING}")
                names += [f"amount_bin=[{a},{b})" for a, b in pairwise(edges)]
                mask += [False] * (1 + _N_AMOUNT_BINS)
        if self.text == "hash":
            names += [f"text_hash_{i}" for i in range(self.n_text_features)]
            mask += [False] * self.n_text_features
        return names, mask


def _bounded_put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _TEXT_CACHE_SIZE:
        cache.clear()  # crude but O(1); serving traffic refills the hot entries at once
    cache[key] = value


def _entries(
    values: list[float], onehot: list[int], text_columns: list[int], text_values: list[float]
) -> tuple[list[int], list[float]]:
    """Stored entries of a one-row CSR matrix: nonzero numeric values, one-hot ones, text."""
    columns = [i for i, v in enumerate(values) if v]
    data = [values[i] for i in columns]
    columns += onehot
    data += [1.0] * len(onehot)
    columns += text_columns
    data += text_values
    return columns, data


def _z_one(log_amount: float, stats: tuple[float, float]) -> float:
    median, scale = stats
    return float(min(max((log_amount - median) / scale, -_Z_CLIP), _Z_CLIP) / _Z_CLIP)


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    try:
        return pd.DataFrame(X)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"expected a transactions DataFrame, got {type(X).__name__}; pass a pandas DataFrame"
        ) from exc


def _sparse_interface(matrix: sp.csr_matrix) -> Any:
    """CSR as sklearn is configured to exchange it (scipy sparse matrix by default)."""
    if get_config().get("sparse_interface") == "sparray":
        return sp.csr_array(matrix)
    return matrix
