"""`titans data`: generate, validate and version transaction data in the export format."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from titans.cli._common import console, progress
from titans.errors import InputError, TitansError

if TYPE_CHECKING:
    import pandas as pd

app = typer.Typer(
    help="Generate, validate and version transaction data.",
    no_args_is_help=True,
)

#: issues listed in the terminal; the quarantine file holds all of them
SHOWN_ISSUES = 50


@app.command()
def generate(
    rows: int | None = typer.Option(
        None, "--rows", min=1, help="Number of transactions (default from settings: ci_rows)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default from settings)."),
    start: str | None = typer.Option(
        None, "--start", help="First date, YYYY-MM-DD (default: the generator's)."
    ),
    days: int | None = typer.Option(
        None, "--days", min=1, help="Number of days covered (default: the generator's)."
    ),
    drift: list[str] | None = typer.Option(
        None,
        "--drift",
        help="SCENARIO@YYYY-MM-DD:SEVERITY, e.g. amount_inflation@2024-09-01:1.3 (repeatable).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write (.csv or .parquet)."),
) -> None:
    """Write synthetic transactions in the export format; same seed, same bytes."""
    from titans.config import get_settings
    from titans.data import synth
    from titans.data.io import check_suffix, read_raw, write_transactions
    from titans.data.schema import validate_frame
    from titans.data.versions import data_version

    check_suffix(output)  # fail before minutes of work, not after
    drifts = [synth.parse_drift(spec) for spec in drift or []]
    settings = get_settings()
    rows = settings.ci_rows if rows is None else rows
    seed = settings.seed if seed is None else seed
    window: dict[str, Any] = {}  # left out: the generator's own defaults apply
    if start is not None:
        window["start"] = start
    if days is not None:
        window["days"] = days
    with progress() as bar:
        task = bar.add_task(f"generating {rows:,} rows (seed {seed})", total=3)
        frame = synth.generate(rows, seed, drifts=drifts, **window)
        bar.update(task, advance=1, description=f"writing {output}")
        path = write_transactions(frame, output)
        bar.update(task, advance=1, description="reading back for the data version")
        report = validate_frame(read_raw(path))
        version = data_version(report.valid)
        bar.update(task, advance=1, description="done")
    summary = f"wrote {len(frame):,} rows to {escape(str(path))} (data version {version})"
    if len(report.rejected):
        summary += (
            f"; {len(report.rejected):,} rows fail validation (injected drift or faults) and "
            "are not in that version"
        )
    console.print(summary, highlight=False, soft_wrap=True)


def _issue_table(issues: pd.DataFrame) -> Table:
    """The first SHOWN_ISSUES issues as a table, titled with the total count."""
    import pandas as pd

    total = len(issues)
    shown = issues.head(SHOWN_ISSUES)
    title = f"{total:,} issues" + (f" (first {SHOWN_ISSUES} shown)" if total > len(shown) else "")
    table = Table(title=title, title_justify="left")
    table.add_column("row", justify="right")
    for name in ("column", "value", "rule", "suggestion"):
        table.add_column(name, overflow="fold")
    for record in shown.itertuples(index=False):
        value = "" if pd.isna(record.value) else str(record.value)
        hint = "" if pd.isna(record.suggestion) else str(record.suggestion)
        table.add_row(
            str(record.row_number),
            escape(str(record.column)),
            escape(repr(value) if value else "(blank)"),
            escape(str(record.rule)),
            escape(hint),
        )
    return table


@app.command()
def validate(
    path: Path = typer.Argument(..., help="Export file to check (.csv or .parquet)."),
    valid_out: Path | None = typer.Option(
        None, "--valid-out", help="Valid rows go here (default <stem>.valid.csv beside PATH)."
    ),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Rejected rows with a `reasons` column (default <stem>.quarantine.csv beside PATH).",
    ),
    max_bad_share: float | None = typer.Option(
        None,
        "--max-bad-share",
        min=0.0,
        max=1.0,
        help="Largest share of rejected rows that still passes (default from settings).",
    ),
) -> None:
    """Check every row; write valid rows on and rejected rows to quarantine with reasons.

    Exit 0: the share of rejected rows is at most the threshold; 1: above it; 2: unreadable.
    """
    from titans.data.io import (
        check_suffix,
        default_max_bad_share,
        read_raw,
        write_raw,
        write_transactions,
    )
    from titans.data.schema import validate_frame

    threshold = default_max_bad_share() if max_bad_share is None else max_bad_share
    valid_out = valid_out or path.with_name(f"{path.stem}.valid.csv")
    quarantine = quarantine or path.with_name(f"{path.stem}.quarantine.csv")
    source = path.resolve()
    for name, target in (("--valid-out", valid_out), ("--quarantine", quarantine)):
        check_suffix(target)
        if target.resolve() == source:
            raise InputError(f"{name} {target} is the input file; choose another path")
    if valid_out.resolve() == quarantine.resolve():
        raise InputError("--valid-out and --quarantine are the same file; choose two paths")

    with console.status(f"validating {escape(str(path))}"):
        report = validate_frame(read_raw(path))
        write_transactions(report.valid, valid_out)
        write_raw(report.quarantine_frame(), quarantine)

    if len(report.issues):
        console.print(_issue_table(report.issues))
    console.print(
        f"{report.total_rows:,} rows: {len(report.valid):,} valid → {escape(str(valid_out))}, "
        f"{len(report.rejected):,} rejected → {escape(str(quarantine))} "
        f"(bad share {report.bad_share:.2%}, allowed {threshold:.2%})",
        highlight=False,
        soft_wrap=True,
    )
    if not report.passed(threshold):
        # a failed check, not bad input: TitansError exits 1 through the root's error handler
        raise TitansError(
            f"{report.bad_share:.2%} of rows fail validation, above the allowed {threshold:.2%}; "
            f"fix the rows listed in {quarantine} or raise --max-bad-share"
        )
    console.print("[green]passed[/green]")


@app.command()
def version(
    path: Path = typer.Argument(..., help="Export file (.csv or .parquet)."),
    manifest_dir: Path | None = typer.Option(
        None, "--manifest-dir", help="Also write the manifest to <dir>/<version>.json."
    ),
) -> None:
    """Print the data version id of a file's valid rows, and its manifest."""
    from titans.data.io import read_raw
    from titans.data.schema import validate_frame
    from titans.data.versions import build_manifest, write_manifest

    with console.status(f"hashing {escape(str(path))}"):
        report = validate_frame(read_raw(path))
        if manifest_dir is None:
            manifest = build_manifest(report.valid, path)
        else:
            manifest = write_manifest(report.valid, path, manifest_dir)
    console.print(f"data version [bold]{manifest.version}[/bold]", highlight=False)
    console.print_json(manifest.to_json())
    if len(report.rejected):
        console.print(
            f"[yellow]{len(report.rejected):,} of {report.total_rows:,} rows fail validation and "
            f"are not part of this version; see `titans data validate {escape(str(path))}`",
            highlight=False,
            soft_wrap=True,
        )
    if manifest_dir is not None:
        console.print(
            f"manifest → {escape(str(Path(manifest_dir) / f'{manifest.version}.json'))}",
            highlight=False,
        )
