"""Read and write transactions in the Titans Finance export format (CSV or parquet).

The export format is a table whose header is exactly `columns.EXPORT_COLUMNS`
(plus the label column ``Is Anomaly`` for synthetic data), one transaction per
row, every cell text: dates ``YYYY-MM-DD``, amounts with two decimals, blanks for
missing values. Parquet files hold the same text columns under the same names.

`read_raw` gives the cells as they are (text or NA) so that validation can report
the original values; `load_transactions` reads and validates in one call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from titans.data.columns import COLUMNS, EXPORT_COLUMNS, LABEL_COLUMNS, SNAKE_CASE
from titans.errors import DataValidationError, InputError

logger = logging.getLogger(__name__)


def _string_dtype() -> pd.api.extensions.ExtensionDtype | str:
    try:  # pandas >= 2.3: the NaN-backed string dtype that pandas 3 uses for "str"
        return pd.StringDtype(na_value=np.nan)
    except TypeError:  # pragma: no cover - older pandas
        return "object"


#: dtype of every text column this package produces
STRING_DTYPE = _string_dtype()


#: suffixes the reader and writers understand
SUFFIXES: tuple[str, ...] = (".csv", ".parquet")

#: column `read_raw` adds: 1-based number of the data row in the file (header not counted)
ROW_NUMBER = "row_number"

#: column `read_raw` adds only when some row has more cells than the header: the surplus cells
EXTRA_FIELDS = "extra_fields"

#: snake_case column -> export header
EXPORT_NAME: dict[str, str] = {snake: export for export, snake in SNAKE_CASE.items()}

# a CSV row may have this many surplus cells before the file counts as unreadable
_MAX_EXTRA_FIELDS = 32


def _header_key(name: object) -> str:
    """Header cell compared loosely: case, surrounding blanks, `_` vs space do not matter."""
    return re.sub(r"[\s_]+", " ", str(name).strip().lower())


_KNOWN_HEADERS: dict[str, str] = {}
for _export, _snake in SNAKE_CASE.items():
    _KNOWN_HEADERS[_header_key(_export)] = _snake
    _KNOWN_HEADERS[_header_key(_snake)] = _snake


def check_suffix(path: Path) -> str:
    """The lower-case suffix of a path the reader and writers understand.

    Raises:
        DataValidationError: the suffix is neither .csv nor .parquet.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataValidationError(
            f"{path}: unknown file type {path.suffix or '(none)'!r}; use a .csv or .parquet file"
        )
    return suffix


# --------------------------------------------------------------------------- reading


def _read_csv_cells(path: Path) -> pd.DataFrame:
    """Every CSV cell as text (NA when empty); row 0 is the header. Adds EXTRA_FIELDS if needed."""
    last_error: Exception | None = None
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return _read_csv_encoded(path, encoding)
        except UnicodeDecodeError as exc:
            last_error = exc
    raise DataValidationError(f"{path}: cannot decode the file as text ({last_error})")


def _read_csv_encoded(path: Path, encoding: str) -> pd.DataFrame:
    # header=None: the header is row 0, so a first data row with one cell too many cannot
    # silently become an index; blank lines are kept so row numbers match the file's lines.
    options: dict[str, object] = {
        "header": None,
        "dtype": str,
        "keep_default_na": False,
        "na_values": [""],
        "skip_blank_lines": False,
        "encoding": encoding,
    }
    try:
        return pd.read_csv(path, **options)  # type: ignore[call-overload, no-any-return]
    except pd.errors.EmptyDataError as exc:
        raise DataValidationError(f"{path}: the file is empty; expected a header row") from exc
    except pd.errors.ParserError:
        # some row has more cells than the header (often an unquoted comma in a description):
        # read again with room for the surplus so those rows can be reported, not lost
        pass
    try:
        width = len(pd.read_csv(path, header=None, nrows=1, dtype=str, encoding=encoding).columns)
        cells = pd.read_csv(
            path,
            names=list(range(width + _MAX_EXTRA_FIELDS)),
            **options,  # type: ignore[arg-type]
        )
    except pd.errors.ParserError as exc:
        raise DataValidationError(
            f"{path}: cannot parse the CSV ({str(exc).strip()}); check quoting on that line"
        ) from exc
    surplus = cells.iloc[:, width:]
    joined = surplus.iloc[:, 0].fillna("")
    for position in range(1, surplus.shape[1]):
        joined = joined + "," + surplus.iloc[:, position].fillna("")
    joined = joined.str.rstrip(",")
    cells = cells.iloc[:, :width].copy()
    cells[EXTRA_FIELDS] = joined.where(joined != "")
    cells.loc[0, EXTRA_FIELDS] = EXTRA_FIELDS
    return cells


def _as_text(column: pd.Series) -> pd.Series:
    """A parquet column as text: dates as YYYY-MM-DD, numbers as written by Python, NA kept."""
    if pd.api.types.is_datetime64_any_dtype(column):
        midnight = column.dt.normalize() == column
        fmt = "%Y-%m-%d" if bool(midnight[column.notna()].all()) else "%Y-%m-%d %H:%M:%S"
        text = column.dt.strftime(fmt)
    elif pd.api.types.is_bool_dtype(column):
        text = column.map({True: "true", False: "false"})
    else:
        text = column
    return text.astype(STRING_DTYPE).where(column.notna())


def _read_parquet_cells(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataValidationError(
            f"{path}: cannot read the parquet file ({type(exc).__name__}: {exc})"
        ) from exc
    header = pd.DataFrame([list(map(str, table.columns))], columns=range(table.shape[1]))
    body = pd.DataFrame({i: _as_text(table.iloc[:, i]) for i in range(table.shape[1])})
    body.index = pd.RangeIndex(1, len(table) + 1)
    return pd.concat([header.astype(STRING_DTYPE), body])


def read_raw(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an export-format CSV or parquet file with every cell as text or NA.

    Columns are renamed to snake_case (`columns.SNAKE_CASE`; the header is matched
    ignoring case, surrounding blanks and `_` vs space) and unknown columns are
    left out. The label column ``is_anomaly`` is kept when present. ``row_number``
    is the 1-based number of the data row in the file, the header not counted, so
    it is the file's line number minus one (unless a quoted cell spans lines).
    Lines whose cells are all empty hold no transaction and are skipped (their
    numbers are not reused). When some CSV row has more cells than the header the
    frame also has ``extra_fields`` holding the surplus cells (NA for other rows);
    validation rejects those rows.

    Raises:
        DataValidationError: the file is missing or unreadable, has an unknown
            suffix, or lacks some export columns (all of them are named).
    """
    source = Path(path)
    suffix = check_suffix(source)
    if not source.is_file():
        raise DataValidationError(f"{source}: no such file; check the path")
    try:
        cells = _read_csv_cells(source) if suffix == ".csv" else _read_parquet_cells(source)
    except OSError as exc:
        raise DataValidationError(f"{source}: cannot read the file ({exc})") from exc

    header = cells.iloc[0]
    body = cells.iloc[1:]
    renamed: dict[object, str] = {}
    for position, name in header.items():
        if position == EXTRA_FIELDS:
            renamed[position] = EXTRA_FIELDS
            continue
        snake = _KNOWN_HEADERS.get(_header_key(name)) if pd.notna(name) else None
        if snake is None:
            continue
        if snake in renamed.values():
            raise DataValidationError(
                f"{source}: column {EXPORT_NAME[snake]!r} appears twice in the header; keep one"
            )
        renamed[position] = snake
    missing = [EXPORT_NAME[c] for c in COLUMNS if c not in renamed.values()]
    if missing:
        raise DataValidationError(
            f"{source}: missing export columns {', '.join(missing)}; the header must be "
            f"{','.join(EXPORT_COLUMNS)}"
        )

    frame = body[list(renamed)].rename(columns=renamed)
    frame = frame.astype(STRING_DTYPE)
    row_numbers = np.arange(1, len(frame) + 1, dtype=np.int64)
    content = [c for c in frame.columns if c != EXTRA_FIELDS]
    has_data = frame[content].notna().any(axis=1).to_numpy().copy()
    if EXTRA_FIELDS in frame.columns:
        has_data |= frame[EXTRA_FIELDS].notna().to_numpy()
    frame = frame.loc[has_data]
    frame.insert(0, ROW_NUMBER, row_numbers[has_data])
    ordered = [ROW_NUMBER, *COLUMNS, *(c for c in LABEL_COLUMNS if c in frame.columns)]
    if EXTRA_FIELDS in frame.columns and frame[EXTRA_FIELDS].notna().any():
        ordered.append(EXTRA_FIELDS)
    return frame[ordered].reset_index(drop=True)


def default_max_bad_share() -> float:
    """The allowed share of rejected rows from Settings (TITANS_MAX_BAD_ROW_SHARE)."""
    from titans.config import get_settings

    settings = get_settings()
    return float(settings.max_bad_row_share)


def load_transactions(
    path: str | os.PathLike[str], max_bad_share: float | None = None
) -> pd.DataFrame:
    """Read and validate an export file; return the valid rows as a typed transactions frame.

    Rejected rows are logged as a warning (run ``titans data validate`` to see and
    quarantine them). ``max_bad_share`` defaults to `Settings.max_bad_row_share`.

    Raises:
        DataValidationError: the file is unreadable, or the share of rejected rows
            is above ``max_bad_share``.
    """
    from titans.data.schema import validate_frame

    if max_bad_share is None:
        max_bad_share = default_max_bad_share()
    report = validate_frame(read_raw(path))
    rejected = report.total_rows - len(report.valid)
    if not report.passed(max_bad_share):
        raise DataValidationError(
            f"{path}: {rejected} of {report.total_rows} rows ({report.bad_share:.1%}) fail "
            f"validation, above the allowed {max_bad_share:.1%}; run `titans data validate "
            f"{path}` to see and quarantine them"
        )
    if rejected:
        logger.warning(
            "%s: %d of %d rows fail validation and were left out; run `titans data validate %s`",
            path,
            rejected,
            report.total_rows,
            path,
        )
    return report.valid


# --------------------------------------------------------------------------- writing


def _format_amounts(amount: pd.Series) -> pd.Series:
    """Amounts as text with exactly two decimals (no '-0.00'); non-numbers kept as text.

    Rounds to the cent half-to-even on amount × 100, with whole-column integer arithmetic.

    >>> _format_amounts(pd.Series([-1234.5, -0.001, 7.0, float("nan")])).tolist()
    ['-1234.50', '0.00', '7.00', nan]
    """
    numbers = pd.to_numeric(amount, errors="coerce").astype("float64")
    values = numbers.to_numpy()
    finite = np.isfinite(values)
    cents = np.zeros(len(values), dtype=np.int64)
    exact = finite & (np.abs(values) < 1e15)
    cents[exact] = np.rint(values[exact] * 100.0).astype(np.int64)
    magnitude = np.abs(cents)
    index = amount.index
    text = (
        pd.Series(np.where(cents < 0, "-", ""), index=index, dtype=STRING_DTYPE)
        + pd.Series(magnitude // 100, index=index).astype(STRING_DTYPE)
        + "."
        + pd.Series(magnitude % 100, index=index).astype(STRING_DTYPE).str.zfill(2)
    )
    if pd.api.types.is_numeric_dtype(amount):
        original = pd.Series(np.nan, index=index, dtype=STRING_DTYPE)
    else:  # keep what is not a number (a fault-injected '$1,234.50') as written
        original = amount.astype(STRING_DTYPE)
    text = text.where(finite, original)
    huge = finite & (np.abs(values) >= 1e15)  # beyond exact int64 cents: format one by one
    if huge.any():
        text[huge] = [f"{v:.2f}" for v in values[huge]]
    return text


def _format_dates(date: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(date):
        return date.dt.strftime("%Y-%m-%d").astype(STRING_DTYPE)
    return date.astype(STRING_DTYPE)


def _format_labels(label: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(label):
        return label.map({True: "true", False: "false"}).astype(STRING_DTYPE)
    return label.astype(STRING_DTYPE)


def to_export_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A typed transactions frame as export-format text, under the export header.

    Columns are exactly `columns.EXPORT_COLUMNS`, then ``Is Anomaly`` when the frame
    has ``is_anomaly``; other columns are left out.

    Raises:
        InputError: the frame lacks some transaction columns.
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(
            f"cannot write transactions: the frame lacks columns {', '.join(missing)}; "
            "pass a transactions frame (see titans.data.columns.COLUMNS)"
        )
    out: dict[str, pd.Series] = {}
    for column in COLUMNS:
        values = frame[column]
        if column == "date":
            text = _format_dates(values)
        elif column == "amount":
            text = _format_amounts(values)
        else:
            text = values.astype(STRING_DTYPE)
        out[EXPORT_NAME[column]] = text
    for label in LABEL_COLUMNS:
        if label in frame.columns:
            out[EXPORT_NAME[label]] = _format_labels(frame[label])
    return pd.DataFrame(out).reset_index(drop=True)


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Write through a temp file in the target folder, then rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        with open(temp, "rb") as stream:
            os.fsync(stream.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return path


def _csv_cell(values: pa.Array) -> pa.Array:
    """Text cells as CSV: quoted (quotes doubled) only when needed, NA as an empty cell."""
    needs_quotes = pc.match_substring_regex(values, '[",\r\n]')
    if not pc.any(needs_quotes).as_py():  # most columns: skip building quoted copies
        return pc.fill_null(values, "")
    quoted = pc.binary_join_element_wise('"', pc.replace_substring(values, '"', '""'), '"', "")
    return pc.fill_null(pc.if_else(needs_quotes, quoted, values), "")


def _write_csv(table: pa.Table, target: Path, rows_per_chunk: int = 100_000) -> None:
    """CSV in pyarrow compute (~2x pandas.to_csv); bytes match to_csv(index=False, '\n')."""
    header = pa.array([str(name) for name in table.column_names], type=pa.string())
    header_line = ",".join(_csv_cell(header).to_pylist())
    with open(target, "wb") as out:
        out.write(header_line.encode("utf-8") + b"\n")
        if not table.num_columns:
            return
        cells = [_csv_cell(table.column(i).combine_chunks()) for i in range(table.num_columns)]
        lines = pc.binary_join_element_wise(*cells, ",")
        for start in range(0, len(lines), rows_per_chunk):
            chunk = lines.slice(start, rows_per_chunk)
            offsets = pa.array([0, len(chunk)], type=pa.int32())
            block = pc.binary_join(pa.ListArray.from_arrays(offsets, chunk), "\n")[0].as_py()
            out.write(block.encode("utf-8") + b"\n")


def _write_text_frame(text: pd.DataFrame, path: Path) -> Path:
    """Write text columns (NA as null) as CSV or parquet by suffix, atomically."""
    suffix = check_suffix(path)
    table = pa.table(
        {str(c): pa.array(text[c], type=pa.string(), from_pandas=True) for c in text.columns}
    )
    if suffix == ".csv":
        return atomic_write(path, lambda target: _write_csv(table, target))
    # no pandas metadata in the file: the bytes depend only on the data and pyarrow
    return atomic_write(path, lambda target: pq.write_table(table, target, compression="zstd"))


def write_raw(raw: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a frame of text cells (e.g. `read_raw` output plus a ``reasons`` column).

    Known snake_case columns get their export header back; other columns keep
    their names. CSV or parquet by suffix; written atomically.
    """
    target = Path(path)
    text = pd.DataFrame(
        {EXPORT_NAME.get(str(c), str(c)): raw[c].astype(STRING_DTYPE) for c in raw.columns}
    ).reset_index(drop=True)
    return _write_text_frame(text, target)


def write_transactions(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a typed transactions frame in the export format; return the path.

    ``.csv`` or ``.parquet`` by suffix. Header exactly `columns.EXPORT_COLUMNS`, then
    ``Is Anomaly`` when the frame has ``is_anomaly``. Dates ``YYYY-MM-DD``, amounts
    with two decimals, NA as an empty cell. The same frame always gives the same
    bytes, and the file appears whole or not at all (temp file, then rename).

    Raises:
        InputError: the frame lacks transaction columns.
        DataValidationError: the suffix is neither .csv nor .parquet.
    """
    target = Path(path)
    check_suffix(target)
    return _write_text_frame(to_export_frame(frame), target)
