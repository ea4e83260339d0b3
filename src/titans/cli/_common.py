"""What every CLI command shares: the rich console, settings, progress bars, error exits."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from titans.config import Settings
from titans.errors import NotBuiltError

# Piped output (CI logs, tests) gets a wide page rather than rich's 80-column default, so
# tables of registry names and ids are not cut.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)


def settings() -> Settings:
    """Settings from the environment, with TITANS_HOME created."""
    s = Settings()
    s.ensure_home()
    return s


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display for long work (transient off, so the steps stay visible)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        yield bar


def not_built(group: str, issue_hint: str) -> typer.Typer:
    """A command group whose work is not built yet: `--help` says so, running it exits 2."""
    app = typer.Typer(
        help=f"[not built yet] {issue_hint}",
        invoke_without_command=True,
        no_args_is_help=False,
    )

    @app.callback()
    def _not_built(ctx: typer.Context) -> None:
        raise NotBuiltError(
            f"'titans {group}' is not built yet ({issue_hint}); see README's component table"
        )

    return app
