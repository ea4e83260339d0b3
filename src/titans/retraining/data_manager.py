"""TrainingDataManager: labelled rows from the prediction log, training sets, checks, versions.

A retrain learns from the data the production version was trained on plus every transaction
whose actual outcome came back as feedback. This module builds that frame
(:meth:`TrainingDataManager.prepare_training_data`), refuses it when it is not fit to train on
(:meth:`~TrainingDataManager.validate_training_data`), and stores it as an immutable,
content-addressed data version (:meth:`~TrainingDataManager.manage_data_versions`)::

    <TITANS_HOME>/data/versions/<version>/data.parquet    the rows (typed, without "split")
    <TITANS_HOME>/data/versions/<version>/manifest.json   titans.data.versions.DataManifest
    <TITANS_HOME>/data/versions/<version>.json            the same manifest, where lineage looks

The version id is :func:`titans.data.versions.data_version` of the frame *without* its
``split`` column, which is also what :func:`titans.models.train.train_models` tags a model
with (``titans.data_version``): the tag of a retrained model names the stored version. The
split is not stored; it follows from the rows (time order) and ``validation_fraction``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import or_, select

from titans.config import MODEL_KEYS, Settings
from titans.data.columns import COLUMNS, EXPENSE_CATEGORIES, LABEL_COLUMNS, SNAKE_CASE
from titans.data.io import ROW_NUMBER, STRING_DTYPE, atomic_write, to_export_frame
from titans.data.versions import DataManifest, build_manifest, data_version, read_manifest
from titans.errors import DataValidationError, InputError
from titans.store.db import Store
from titans.store.models import Feedback, Prediction

log = logging.getLogger(__name__)

#: the column prepare_training_data adds: "train" (oldest rows) or "validation" (newest)
SPLIT = "split"
TRAIN, VALIDATION = "train", "validation"
DATA_FILE = "data.parquet"
MANIFEST_FILE = "manifest.json"
#: registered-version tags naming the data a version was trained on (pruning never deletes it)
DATA_VERSION_TAGS: tuple[str, ...] = ("titans.data_version", "titans.training_data_version")
#: the label each model learns, as a column of the transactions frame (cashflow has none)
LABEL_COLUMN: dict[str, str] = {"category": "category", "amount": "amount", "anomaly": "is_anomaly"}
#: arm of a shadow prediction (and the suffix of its id): not what the client got, never a label
SHADOW_ARM = "shadow"
SHADOW_SUFFIX = ":shadow"
#: temp directories of writes that died (killed process) are removed after this long
STALE_TEMP_SECONDS = 3600.0

_TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in ("date", "amount"))
_TRUE = ("true", "1", "1.0", "yes", "y", "t")
_FALSE = ("false", "0", "0.0", "no", "n", "f")


@dataclass(frozen=True)
class DataVersionInfo:
    """One stored training data version."""

    #: content hash id (titans.data.versions.data_version of the rows, "split" left out)
    version: str
    #: <home>/data/versions/<version>/data.parquet
    path: Path
    #: <home>/data/versions/<version>/manifest.json
    manifest_path: Path
    rows: int
    #: False when that version already existed (writing it again changed nothing)
    created: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict."""
        return {
            "version": self.version,
            "path": str(self.path),
            "manifest_path": str(self.manifest_path),
            "rows": self.rows,
            "created": self.created,
        }


@dataclass
class DataCheck:
    """What validate_training_data found."""

    passed: bool
    #: one line per failed check, naming what failed and what to do
    failures: list[str] = field(default_factory=list)
    #: the numbers behind each check, by check name
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": list(self.failures), "checks": self.checks}


# --------------------------------------------------------------------------- frame helpers


def _resolve(settings: Settings, model_name: str) -> tuple[str, str]:
    """(registered name, model key) for ``category`` or ``titans-category``."""
    for key in MODEL_KEYS:
        if model_name in (key, settings.registered_name(key)):
            return settings.registered_name(key), key
    raise InputError(
        f"unknown model {model_name!r}; use one of {', '.join(MODEL_KEYS)} "
        f"(or its registered name, e.g. {settings.registered_name('category')})"
    )


def _as_bool(values: pd.Series) -> pd.Series:
    """True/False (bools, 1/0, 'true'/'false', ...) as pandas booleans; anything else NA."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("boolean")
    text = values.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=values.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False).to_numpy(dtype=bool)] = True
    out[text.isin(_FALSE).fillna(False).to_numpy(dtype=bool)] = False
    return out


def _bool_column(values: pd.Series) -> pd.Series:
    """A label column as numpy bool when complete, pandas ``boolean`` (with NA) otherwise."""
    flags = values if isinstance(values.dtype, pd.BooleanDtype) else _as_bool(values)
    return flags.astype(bool) if not flags.isna().any() else flags


def typed_transactions(frame: pd.DataFrame, where: str = "the data") -> pd.DataFrame:
    """A transactions frame in the typed export form: datetime64 dates, float amounts, text.

    Keeps the export columns and ``is_anomaly`` (when present); drops everything else
    (``split``, ``row_number``, ...). Values that do not parse become missing; validation
    reports them.

    >>> raw = pd.DataFrame({"date": ["2024-03-01"], "type": ["Expense"], "description": ["Fuel"],
    ...     "amount": ["-40.50"], "category": ["fuel"], "payment_method": ["cash"],
    ...     "status": ["paid"], "reference": ["Shell"], "receipt_url": [None], "split": ["train"]})
    >>> typed = typed_transactions(raw)
    >>> typed["amount"].tolist(), str(typed["date"].dtype), list(typed.columns) == list(COLUMNS)
    ([-40.5], 'datetime64[ns]', True)

    Raises:
        InputError: export columns are missing (all of them are named).
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"{where} lacks columns {', '.join(missing)}; pass a transactions frame "
            "(see titans.data.columns.COLUMNS)"
        )
    dates = frame["date"]
    if not pd.api.types.is_datetime64_any_dtype(dates):
        dates = pd.to_datetime(dates.astype("string"), errors="coerce", format="ISO8601")
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    out["date"] = dates.astype("datetime64[ns]").to_numpy()
    out["amount"] = pd.to_numeric(frame["amount"], errors="coerce").astype("float64").to_numpy()
    for column in _TEXT_COLUMNS:
        out[column] = frame[column].astype(STRING_DTYPE).to_numpy()
    ordered = list(COLUMNS)
    for label in LABEL_COLUMNS:
        if label in frame.columns:
            out[label] = _bool_column(frame[label].reset_index(drop=True))
            ordered.append(label)
    return out[ordered]


def _empty_transactions(with_label: bool) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {
        "date": pd.Series(dtype="datetime64[ns]"),
        "amount": pd.Series(dtype="float64"),
    }
    columns.update({c: pd.Series(dtype=STRING_DTYPE) for c in _TEXT_COLUMNS})
    frame = pd.DataFrame(columns)[list(COLUMNS)]
    if with_label:
        frame["is_anomaly"] = pd.Series(dtype=bool)
    return frame


def _normalise_category(values: pd.Series) -> pd.Series:
    """Feedback categories as the vocabulary spells them ('Office Supplies' -> office_supplies)."""
    text = values.astype(STRING_DTYPE).str.strip().str.lower()
    text = text.str.replace(r"[ \t\-]+", "_", regex=True)
    return text.where(text != "")


def _as_cutoff(cutoff: datetime | date | str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(cutoff)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"cutoff_date {cutoff!r} is not a date; pass YYYY-MM-DD, a date or a datetime"
        ) from exc
    if pd.isna(stamp):
        raise InputError(f"cutoff_date {cutoff!r} is not a date; pass YYYY-MM-DD")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp


def _split_column(n_rows: int, fraction: float) -> np.ndarray:
    """'train' for the oldest rows, 'validation' for the newest ``fraction`` (at least one row
    each when there are two rows or more).

    >>> _split_column(5, 0.2).tolist()
    ['train', 'train', 'train', 'train', 'validation']
    >>> _split_column(2, 0.01).tolist(), _split_column(1, 0.5).tolist()
    (['train', 'validation'], ['train'])
    """
    n_validation = min(max(round(n_rows * fraction), 1), n_rows - 1) if n_rows >= 2 else 0
    return np.where(np.arange(n_rows) >= n_rows - n_validation, VALIDATION, TRAIN)


def _shown(items: list[str], limit: int = 5) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


# --------------------------------------------------------------------------- the manager


class TrainingDataManager:
    """Training data for retraining: labelled rows, the training frame, its checks, its versions.

    ``store`` is the ops store holding the prediction log (default: ``Store(settings)``, opened
    on first use); versions live under ``<TITANS_HOME>/data/versions``.
    """

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self._store = store
        #: what the last validate_training_data call found (None before the first)
        self.last_check: DataCheck | None = None

    @property
    def store(self) -> Store:
        """The ops store holding the prediction log (opened on first use)."""
        if self._store is None:
            self._store = Store(self.settings)
        return self._store

    @property
    def versions_dir(self) -> Path:
        """``<TITANS_HOME>/data/versions``."""
        return self.settings.home_dir / "data" / "versions"

    # ------------------------------------------------------------------ labelled rows

    def labelled_rows(
        self,
        model_name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> pd.DataFrame:
        """Transactions from the prediction log whose actual outcome came back for ``model_name``.

        One row per identical logged input (the latest feedback wins), shadow predictions left
        out, the label in its column (category → ``category``, normalised to the vocabulary's
        spelling; amount → ``amount``, signed by type: expenses negative; anomaly →
        ``is_anomaly``), typed like the export format, ordered by transaction date (then by
        feedback time). Feedback without a usable label (no such field, not a number, not
        true/false) is not a label and is left out. ``since`` (inclusive) and ``until``
        (exclusive) bound the feedback time (timezone-aware). ``cashflow`` has no
        per-transaction label: its frame is empty.
        """
        name, key = _resolve(self.settings, model_name)
        for label, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise InputError(f"{label}={moment!r} is naive; pass a timezone-aware (UTC) time")
        if since is not None and until is not None and since >= until:
            raise InputError(f"since ({since}) is not before until ({until}); swap them")
        label_column = LABEL_COLUMN.get(key)
        if label_column is None:
            return _empty_transactions(with_label=False)

        query = (
            select(Prediction.features, Feedback.actual)
            .join(Feedback, Feedback.prediction_id == Prediction.prediction_id)
            .where(Prediction.model_name == name)
            .where(or_(Prediction.arm.is_(None), Prediction.arm != SHADOW_ARM))
            .where(~Prediction.prediction_id.endswith(SHADOW_SUFFIX))
            .order_by(Feedback.ts, Prediction.prediction_id)
        )
        if since is not None:
            query = query.where(Feedback.ts >= since)
        if until is not None:
            query = query.where(Feedback.ts < until)
        with self.store.session() as session:
            rows = session.execute(query).all()
        with_label = label_column == "is_anomaly"
        if not rows:
            return _empty_transactions(with_label)

        inputs = pd.DataFrame.from_records([row[0] or {} for row in rows])
        inputs = inputs.reindex(columns=list(COLUMNS))
        actuals = pd.DataFrame.from_records([row[1] or {} for row in rows])
        raw_label = (
            actuals[label_column].reset_index(drop=True)
            if label_column in actuals.columns
            else pd.Series(pd.NA, index=range(len(rows)), dtype=object)
        )
        frame = typed_transactions(inputs, "the logged features")
        logged_input = pd.util.hash_pandas_object(frame, index=False)  # before the label goes in

        if key == "category":
            labels: pd.Series = _normalise_category(raw_label)
            frame["category"] = labels
        elif key == "amount":
            magnitude = pd.to_numeric(raw_label, errors="coerce").astype("float64").abs()
            magnitude = magnitude.where(np.isfinite(magnitude.to_numpy()))
            expense = frame["type"].str.strip().str.lower().eq("expense").fillna(False)
            labels = magnitude.where(~expense, -magnitude)
            frame["amount"] = labels
        else:
            labels = _as_bool(raw_label)
            frame["is_anomaly"] = labels
        usable = labels.notna().to_numpy()
        # one row per identical logged input: its latest usable label (rows are in feedback order)
        latest = ~logged_input[usable].duplicated(keep="last").to_numpy()
        frame = frame.loc[usable].loc[latest]
        if with_label:
            frame["is_anomaly"] = frame["is_anomaly"].astype(bool)
        frame = frame.drop_duplicates(keep="last")
        frame = frame.sort_values("date", kind="stable", na_position="last")
        return frame.reset_index(drop=True)

    # ------------------------------------------------------------------ the training frame

    def prepare_training_data(
        self,
        model_name: str,
        cutoff_date: datetime | date | str | None = None,
        *,
        base_data: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """The frame to retrain ``model_name`` on: base data plus every labelled row.

        The base is ``base_data``, else the data version the production version was trained on
        (``<home>/data/versions/<version>/data.parquet``). Labelled rows dated after
        ``cutoff_date`` are left out (the base is taken whole: it is what the production
        version learned from). Identical rows are kept once (a labelled copy of a base
        transaction is not added), the frame is sorted by date, and ``split`` marks the
        newest ``retraining.validation_fraction`` of the rows ``validation``, the rest
        ``train`` (a time split, never shuffled).

        Raises:
            InputError: the model is unknown, the cutoff is not a date, base_data is not a
                transactions frame, or no base data was given and the production version's
                data version is not stored (the message says what to pass).
        """
        name, key = _resolve(self.settings, model_name)
        cutoff = _as_cutoff(cutoff_date) if cutoff_date is not None else None
        if base_data is not None:
            base = typed_transactions(base_data, "base_data")
        else:
            base = self._production_data(name)
        base = base.drop_duplicates(keep="first")
        new = self.labelled_rows(key)
        if cutoff is not None:
            new = new.loc[(new["date"] <= cutoff).to_numpy(dtype=bool)]
        # a logged transaction the base already holds (same fields, same label) is not new,
        # even though the log lacks the base's other labels (is_anomaly)
        known = pd.util.hash_pandas_object(base[list(COLUMNS)], index=False)
        fresh = pd.util.hash_pandas_object(new[list(COLUMNS)], index=False)
        new = new.loc[~fresh.isin(known).to_numpy()]
        frames = [f for f in (base, new) if len(f)] or [base]
        union = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        union = typed_transactions(union, "the training data")
        union = union.sort_values("date", kind="stable", na_position="last")
        union = union.reset_index(drop=True)
        fraction = self.settings.retraining.validation_fraction
        union[SPLIT] = pd.Series(_split_column(len(union), fraction), dtype=STRING_DTYPE)
        return union

    def _production_version(self, name: str) -> tuple[str | None, str | None]:
        """(production version, the data version it was trained on); Nones when unknown."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(self.settings.tracking_uri, self.settings.tracking_uri)
        try:
            mv = client.get_model_version_by_alias(name, "production")
        except MlflowException:
            return None, None
        tags = dict(mv.tags or {})
        return str(mv.version), tags.get(DATA_VERSION_TAGS[0])

    def _production_data(self, name: str) -> pd.DataFrame:
        version, stored = self._production_version(name)
        if version is None:
            raise InputError(
                f"{name} has no production version whose training data could be the base; pass "
                "base_data=<transactions frame> or promote a version first"
            )
        if stored is None:
            raise InputError(
                f"{name} v{version} has no titans.data_version tag; pass base_data="
                "<transactions frame> (the data it was trained on)"
            )
        path = self.versions_dir / stored / DATA_FILE
        if not path.is_file():
            raise InputError(
                f"data version {stored} ({name} v{version} was trained on it) is not stored at "
                f"{path}; pass base_data=<transactions frame> (e.g. titans.data.io."
                "load_transactions of the export) or store it with manage_data_versions"
            )
        return typed_transactions(self.load_version(stored), f"data version {stored}")

    def load_version(self, version: str) -> pd.DataFrame:
        """The rows of a stored data version, checked against their content hash.

        Raises:
            InputError: no such version is stored.
            DataValidationError: the file is unreadable or its content no longer matches.
        """
        path = self.versions_dir / version / DATA_FILE
        if not path.is_file():
            raise InputError(
                f"no data version {version!r} under {self.versions_dir}; list them with "
                "TrainingDataManager.list_versions()"
            )
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataValidationError(
                f"{path}: cannot read data version {version} ({type(exc).__name__}); "
                "restore it from a backup or retrain from an export"
            ) from exc
        if data_version(frame) != version:
            raise DataValidationError(
                f"{path} no longer matches data version {version} (its content changed); "
                "restore the file or store the data again as a new version"
            )
        return frame

    # ------------------------------------------------------------------ checks

    def validate_training_data(
        self,
        data: pd.DataFrame,
        *,
        model_name: str | None = None,
        previous: pd.DataFrame | None = None,
    ) -> bool:
        """Whether ``data`` (a prepare_training_data frame) is fit to train on.

        Checks: the export columns and ``split`` are there (completeness); the share of rows
        breaking the export format (titans.data.schema.validate_frame) is at most
        ``max_bad_row_share``; at least ``retraining.min_label_coverage`` of the rows the model
        learns from carry its label (category: expenses with a known category; amount:
        expenses with a non-zero amount; anomaly: rows with an ``is_anomaly`` label); both
        splits hold rows; and no monitored column moved further than
        ``retraining.max_distribution_shift`` (normalised Wasserstein or Jensen–Shannon
        distance) from ``previous``, by default the data the production version was trained on
        when it is stored. The findings are kept in ``self.last_check``; returns whether every
        check passed.
        """
        failures: list[str] = []
        checks: dict[str, Any] = {"rows": len(data)}
        key = _resolve(self.settings, model_name)[1] if model_name is not None else None
        self.last_check = DataCheck(False, failures, checks)

        missing = [c for c in COLUMNS if c not in data.columns]
        checks["completeness"] = {"missing_columns": missing, "has_split": SPLIT in data.columns}
        if missing:
            failures.append(
                f"completeness: columns {', '.join(missing)} are missing; pass a transactions "
                "frame from prepare_training_data"
            )
        if len(data) == 0:
            failures.append(
                "rows: the training data is empty; pass base_data or collect labelled feedback"
            )
        if missing or len(data) == 0:
            return False

        typed = typed_transactions(data, "the training data")
        self._check_schema(data, failures, checks)
        if key is not None:
            self._check_labels(typed, key, failures, checks)
        self._check_splits(data, failures, checks)
        self._check_distribution(typed, key, previous, failures, checks)
        self.last_check.passed = not failures
        return not failures

    def _check_schema(
        self, data: pd.DataFrame, failures: list[str], checks: dict[str, Any]
    ) -> None:
        from titans.data.schema import validate_frame

        # the export format as text cells (what validate_frame reads); labels are checked apart
        text = to_export_frame(data.drop(columns=list(LABEL_COLUMNS), errors="ignore"))
        text = text.rename(columns=SNAKE_CASE)
        report = validate_frame(text)
        limit = self.settings.max_bad_row_share
        by_rule = {str(k): int(v) for k, v in report.issues["rule"].value_counts().items()}
        by_column = {str(k): int(v) for k, v in report.issues["column"].value_counts().items()}
        checks["schema"] = {
            "rejected_rows": len(report.rejected),
            "bad_share": report.bad_share,
            "max_bad_share": limit,
            "issues_by_rule": by_rule,
            "issues_by_column": by_column,
        }
        if not report.passed(limit):
            worst = [f"{column} {count}" for column, count in by_column.items()]
            failures.append(
                f"schema: {len(report.rejected):,} of {report.total_rows:,} rows "
                f"({report.bad_share:.1%}) break the export format (issues by column: "
                f"{_shown(worst)}), above the allowed {limit:.1%}; fix or drop those rows "
                "(write them out and run `titans data validate`)"
            )

    def _check_labels(
        self, typed: pd.DataFrame, key: str, failures: list[str], checks: dict[str, Any]
    ) -> None:
        from titans.models.base import get_spec

        minimum = self.settings.retraining.min_label_coverage
        column = LABEL_COLUMN.get(key)
        if column is None:
            checks["labels"] = {"skipped": f"{key} learns from the transactions themselves"}
            return
        spec = get_spec(key, self.settings)
        expense = typed["type"].str.strip().str.lower().eq("expense").fillna(False)
        if key == "anomaly":
            selected = spec.select(typed)
            eligible = len(selected)
            labelled = int(selected["is_anomaly"].notna().sum()) if column in typed else 0
            what, label_text = "dated rows", "an is_anomaly label"
        else:
            eligible = int(expense.sum())
            labelled = len(spec.select(typed))  # expenses with a usable label
            what = "expense rows"
            label_text = (
                "a known category" if key == "category" else "a non-zero amount (the label)"
            )
        coverage = labelled / eligible if eligible else 0.0
        checks["labels"] = {
            "column": column,
            "eligible_rows": eligible,
            "labelled_rows": labelled,
            "coverage": coverage,
            "min_coverage": minimum,
        }
        if eligible == 0:
            failures.append(
                f"labels: no {what} for the {key} model to learn from; add {key} training rows"
            )
        elif coverage < minimum:
            hint = (
                f"categories outside {len(EXPENSE_CATEGORIES)} known ones or blank"
                if key == "category"
                else "blank or zero labels"
            )
            failures.append(
                f"labels: only {labelled:,} of {eligible:,} {what} ({coverage:.1%}) carry "
                f"{label_text}, below the required {minimum:.0%} ({hint}); fill the "
                f"'{column}' column or collect more feedback"
            )

    def _check_splits(
        self, data: pd.DataFrame, failures: list[str], checks: dict[str, Any]
    ) -> None:
        if SPLIT not in data.columns:
            checks["split"] = {"train": None, "validation": None}
            failures.append(
                "split: there is no 'split' column; build the frame with prepare_training_data"
            )
            return
        split = data[SPLIT].astype(STRING_DTYPE)
        counts = {TRAIN: int(split.eq(TRAIN).sum()), VALIDATION: int(split.eq(VALIDATION).sum())}
        other = len(split) - counts[TRAIN] - counts[VALIDATION]
        checks["split"] = {**counts, "other": other}
        for name, count in counts.items():
            if count == 0:
                failures.append(
                    f"split: the {name} split is empty ({len(data):,} rows in all); add rows "
                    "or change retraining.validation_fraction"
                )
        if other:
            failures.append(
                f"split: {other:,} rows are neither 'train' nor 'validation'; rebuild the "
                "frame with prepare_training_data"
            )
        elif counts[TRAIN] and counts[VALIDATION]:
            dates = pd.to_datetime(data["date"], errors="coerce")
            last_train = dates[split.eq(TRAIN).to_numpy()].max()
            first_validation = dates[split.eq(VALIDATION).to_numpy()].min()
            ordered = pd.notna(last_train) and pd.notna(first_validation)
            if ordered and first_validation < last_train:
                failures.append(
                    f"split: validation rows start {first_validation.date()}, before the "
                    f"last train row ({last_train.date()}); split by time with "
                    "prepare_training_data"
                )

    def _check_distribution(
        self,
        typed: pd.DataFrame,
        key: str | None,
        previous: pd.DataFrame | None,
        failures: list[str],
        checks: dict[str, Any],
    ) -> None:
        from titans.monitoring.drift import detect_drift
        from titans.monitoring.profile import MONITORED_COLUMNS, monitored_view

        label = "the given previous data"
        if previous is None:
            previous, label, why = self._previous_training_data(key)
            if previous is None:
                checks["distribution"] = {"skipped": why}
                return
        reference = monitored_view(typed_transactions(previous, "previous"))
        current = monitored_view(typed)
        drift = self.settings.drift
        tests = {
            column: (
                drift.large_sample_numeric_test
                if kind == "numeric"
                else drift.large_sample_categorical_test
            )
            for column, kind in MONITORED_COLUMNS.items()
        }
        kinds: dict[str, Any] = dict(MONITORED_COLUMNS)
        result = detect_drift(
            reference,
            current,
            list(MONITORED_COLUMNS),
            kinds=kinds,
            tests=tests,
            settings=self.settings,
        )
        limit = self.settings.retraining.max_distribution_shift
        scores = {c: r.score for c, r in result.columns.items() if r.note is None}
        moved = sorted((c for c, s in scores.items() if s > limit), key=lambda c: -scores[c])
        checks["distribution"] = {
            "previous": label,
            "max_shift": limit,
            "tests": {c: r.test for c, r in result.columns.items()},
            "scores": scores,
            "moved": moved,
        }
        if moved:
            shown = [f"{c} {result.columns[c].test} {scores[c]:.2f}" for c in moved]
            failures.append(
                f"distribution: {_shown(shown)} moved more than {limit:g} from {label}; check "
                "the new rows (a unit, sign or source change?) or raise "
                "retraining.max_distribution_shift"
            )

    def _previous_training_data(
        self, key: str | None
    ) -> tuple[pd.DataFrame | None, str, str | None]:
        """(the production version's training data, how to call it, why there is none)."""
        if key is None:
            return None, "", "no model_name and no previous data given"
        name = self.settings.registered_name(key)
        try:
            version, stored = self._production_version(name)
        except Exception as exc:  # a registry outage must not hide the other checks
            return None, "", f"registry unavailable ({type(exc).__name__})"
        if version is None or stored is None:
            return None, "", f"{name} has no production version with a data version"
        try:
            frame = self.load_version(stored)
        except (InputError, DataValidationError) as exc:
            return None, "", str(exc)
        return frame, f"data version {stored} ({name} v{version})", None

    # ------------------------------------------------------------------ versions

    def manage_data_versions(
        self, data: pd.DataFrame, version: str | None = None
    ) -> DataVersionInfo:
        """Store ``data`` (its ``split`` column left out) as a content-addressed data version.

        The version id is the content hash; ``version``, when given, must equal it. The rows
        and manifest are written to a temp directory that is then renamed into place, so a
        version directory is always complete; storing the same content again changes nothing
        (``created`` False). Inside an active MLflow run the version is logged as the run's
        training dataset input. Then old versions are pruned: the newest
        ``retraining.data_retention`` are kept, and so is every version a registered model
        version (``titans-*``) was trained on; when the registry cannot be read nothing is
        pruned.

        Raises:
            InputError: ``version`` does not match the content hash.
        """
        frame = data.drop(columns=[SPLIT, ROW_NUMBER], errors="ignore").reset_index(drop=True)
        computed = data_version(frame)
        if version is not None and version != computed:
            raise InputError(
                f"version {version!r} does not match the content hash {computed} of the data; "
                "omit version= or pass the hash"
            )
        target = self.versions_dir / computed
        manifest_path = target / MANIFEST_FILE
        created = False
        if not manifest_path.is_file():
            created = self._write_version(frame, computed, target)
        manifest = read_manifest(manifest_path)
        self._write_lineage_manifest(manifest)
        info = DataVersionInfo(
            version=computed,
            path=target / DATA_FILE,
            manifest_path=manifest_path,
            rows=manifest.rows,
            created=created,
        )
        self._log_dataset_input(frame, info)
        self.prune_versions(keep={computed})
        return info

    def _write_version(self, frame: pd.DataFrame, version: str, target: Path) -> bool:
        """Write the version through a temp dir renamed into place; False when another writer
        won the race (its complete copy stays)."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{version}.", suffix=".tmp", dir=self.versions_dir))
        try:
            frame.to_parquet(temp / DATA_FILE, index=False)
            manifest = build_manifest(frame, "titans.retraining.TrainingDataManager")
            (temp / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
            for written in (temp / DATA_FILE, temp / MANIFEST_FILE):
                with open(written, "rb") as stream:
                    os.fsync(stream.fileno())
            os.chmod(temp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual mode
            if target.exists() and not (target / MANIFEST_FILE).is_file():
                # a directory without a manifest was not written by this class: replace it
                shutil.rmtree(target)
            try:
                temp.rename(target)
            except OSError:
                if (target / MANIFEST_FILE).is_file():  # the same version, written meanwhile
                    shutil.rmtree(temp, ignore_errors=True)
                    return False
                raise
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        return True

    def _write_lineage_manifest(self, manifest: DataManifest) -> None:
        """The manifest also where ModelMetadataManager.lineage_chain looks (<version>.json)."""
        flat = self.versions_dir / f"{manifest.version}.json"
        if not flat.exists():
            atomic_write(flat, lambda temp: temp.write_text(manifest.to_json(), encoding="utf-8"))

    def _log_dataset_input(self, frame: pd.DataFrame, info: DataVersionInfo) -> None:
        import mlflow
        from mlflow.data.pandas_dataset import from_pandas

        if mlflow.active_run() is None:
            return
        with warnings.catch_warnings():  # a plain path source is "ambiguous" to MLflow
            warnings.simplefilter("ignore", UserWarning)
            dataset = from_pandas(
                frame,
                source=str(info.path),
                name=f"training-{info.version}",
                digest=info.version,
            )
        mlflow.log_input(dataset, context="training")

    def list_versions(self) -> list[DataVersionInfo]:
        """Every stored data version, newest first (unreadable ones are skipped and logged)."""
        if not self.versions_dir.is_dir():
            return []
        found: list[tuple[tuple[str, int], DataVersionInfo]] = []
        for directory in self.versions_dir.iterdir():
            manifest_path = directory / MANIFEST_FILE
            if directory.name.startswith(".") or not manifest_path.is_file():
                continue
            try:
                manifest = read_manifest(manifest_path)
                written = manifest_path.stat().st_mtime_ns
            except (DataValidationError, OSError) as exc:
                log.warning("skipping data version %s: %s", directory.name, exc)
                continue
            if manifest.version != directory.name:
                log.warning(
                    "skipping %s: its manifest names version %s", directory, manifest.version
                )
                continue
            info = DataVersionInfo(
                version=directory.name,
                path=directory / DATA_FILE,
                manifest_path=manifest_path,
                rows=manifest.rows,
                created=False,
            )
            found.append(((manifest.created_at, written), info))
        found.sort(key=lambda item: item[0], reverse=True)
        return [info for _, info in found]

    def registered_data_versions(self) -> set[str]:
        """Data versions some version of a registered ``titans-*`` model was trained on.

        Raises whatever the registry raises when it cannot be read (callers decide).
        """
        from mlflow import MlflowClient

        client = MlflowClient(self.settings.tracking_uri, self.settings.tracking_uri)
        prefix = self.settings.model_name_prefix.replace("'", "''")
        used: set[str] = set()
        token: str | None = None
        for _ in range(100_000):  # bounded: 100M versions at 1,000 per page
            page = client.search_model_versions(
                f"name LIKE '{prefix}%'", max_results=1_000, page_token=token
            )
            for mv in page:
                tags = dict(mv.tags or {})
                used.update(tags[t] for t in DATA_VERSION_TAGS if tags.get(t))
            token = page.token
            if not token:
                break
        return used

    def prune_versions(self, keep: set[str] | None = None) -> list[str]:
        """Delete data versions beyond the newest ``retraining.data_retention`` that no registered
        model version was trained on (and none in ``keep``); return the deleted ids. Nothing is
        deleted when the registry cannot be read."""
        versions = self.list_versions()
        retention = self.settings.retraining.data_retention
        kept = keep or set()
        candidates = [info.version for info in versions[retention:] if info.version not in kept]
        self._remove_stale_temps()
        if not candidates:
            return []
        try:
            used = self.registered_data_versions()
        except Exception as exc:  # never delete what a model might need
            log.warning("not pruning data versions: the registry could not be read (%r)", exc)
            return []
        deleted = []
        for version in candidates:
            if version in used:
                continue
            doomed = self.versions_dir / f".{version}.{os.getpid()}.deleting"
            try:
                (self.versions_dir / version).rename(doomed)  # gone at once for readers
            except OSError as exc:
                log.warning("could not prune data version %s: %s", version, exc)
                continue
            shutil.rmtree(doomed, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.versions_dir / f"{version}.json").unlink()
            deleted.append(version)
        if deleted:
            log.info("pruned data versions %s", ", ".join(deleted))
        return deleted

    def _remove_stale_temps(self) -> None:
        """Temp dirs of writes whose process died (a killed retrain) once they are old."""
        now = time.time()
        for entry in self.versions_dir.glob(".*"):
            if not entry.is_dir() or not entry.name.endswith((".tmp", ".deleting")):
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
