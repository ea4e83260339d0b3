"""`titans db`: apply and inspect ops store migrations."""

from __future__ import annotations

import typer

from titans.cli._common import console, settings
from titans.store.db import current_revision, head_revision, redact, upgrade

app = typer.Typer(
    help="Ops store migrations (SQLite by default, Postgres via TITANS_DATABASE_URL)."
)


@app.command("upgrade")
def upgrade_cmd() -> None:
    """Apply every pending migration to the ops store (safe to run again)."""
    s = settings()
    before = current_revision(s)
    after = upgrade(s)
    where = redact(s.database_url)
    if before == after:
        console.print(
            f"ops store at {where} already at revision [bold]{after}[/bold] (head)", soft_wrap=True
        )
    else:
        console.print(
            f"ops store at {where} upgraded from {before or 'empty'} to revision "
            f"[bold]{after}[/bold] (head)",
            soft_wrap=True,
        )


@app.command("current")
def current_cmd() -> None:
    """Show the ops store's migration revision and whether it is the newest."""
    s = settings()
    current = current_revision(s)
    head = head_revision()
    where = redact(s.database_url)
    if current == head:
        console.print(
            f"ops store at {where}: revision [bold]{current}[/bold] (head)", soft_wrap=True
        )
        return
    console.print(
        f"ops store at {where}: revision [bold]{current or 'none'}[/bold], head is {head}; "
        "run `titans db upgrade`",
        soft_wrap=True,
    )
    raise typer.Exit(1)
