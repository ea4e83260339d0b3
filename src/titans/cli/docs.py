"""`titans docs`: build the generated documentation, or check that the committed copy is current."""

from __future__ import annotations

from pathlib import Path

import typer

from titans.cli._common import console, err_console
from titans.config import Settings
from titans.docs.generator import (
    CARDS_DIR,
    DEFAULT_OUT,
    DETERMINISTIC_FILES,
    DocumentationGenerator,
    committed_docs,
    stale_files,
    write_docs,
)

app = typer.Typer(
    help="Generate the API, pipeline and architecture docs and the model cards.",
    no_args_is_help=True,
)

_OUT = typer.Option(DEFAULT_OUT, "--out", "-o", help="Directory of the generated docs.")
_ROOT = typer.Option(Path("."), "--root", help="Project directory holding deploy/compose.yaml.")


def _shown(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.as_posix()


@app.command("build")
def build(
    out: Path = _OUT,
    root: Path = _ROOT,
    cards_out: Path | None = typer.Option(
        None, "--cards-out", help="Where model cards go (default: OUT/model-cards)."
    ),
    cards: bool = typer.Option(
        True, "--cards/--no-cards", help="Also write model cards of the configured registry."
    ),
) -> None:
    """Write api.md, pipeline.md and architecture.md (from default settings) and, when the
    configured registry has models, their model cards (Markdown and HTML)."""
    docs = committed_docs(root)
    written = write_docs(docs, out)
    for name in docs:
        path = out / name
        state = "written" if path in written else "unchanged"
        console.print(f"{_shown(path)}: {state}")
    if not cards:
        return
    # Settings() without creating TITANS_HOME: no registry there means no cards, not a new one
    generator = DocumentationGenerator(Settings(), root=root)
    card_paths = generator.write_model_cards(cards_out or out / CARDS_DIR)
    if card_paths:
        console.print(
            f"model cards: {len(card_paths)} files in {_shown(card_paths[0].parent)} "
            "(registry state, not checked by `titans docs check`)"
        )
    else:
        console.print("model cards: none (the configured registry has no models)")


@app.command("check")
def check(out: Path = _OUT, root: Path = _ROOT) -> None:
    """Exit 1 naming the first stale file when OUT differs from a fresh `titans docs build`."""
    stale = stale_files(committed_docs(root), out)
    if stale:
        path, why = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        err_console.print(
            f"[red]stale:[/red] {_shown(path)} {why}{more}; run `titans docs build` and commit "
            "the result",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(f"{_shown(out)}: up to date ({len(DETERMINISTIC_FILES)} files)")
