"""`titans keys create`: a new API key, shown once, with the settings entry that holds its hash."""

from __future__ import annotations

import json

import typer

from titans.cli import _common

app = typer.Typer(help="Create API keys for the prediction API.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. 'billing-service'."),
    role: list[str] = typer.Option(
        ["predict"],
        "--role",
        "-r",
        help="Role to grant (repeat): predict, admin, approver, requester, alerts.",
    ),
) -> None:
    """Print a new raw key ONCE and the TITANS_API_KEYS entry holding only its SHA-256 hash."""
    from titans.serving.auth import generate_api_key

    raw, api_key = generate_api_key(name, role)
    entry = json.dumps(api_key.model_dump(), separators=(",", ":"))
    console = _common.console
    console.print(f"API key for [bold]{name}[/bold] (shown only now; keep it in a secret store):")
    console.print(raw, highlight=False, soft_wrap=True)
    console.print("\nAdd this entry to the TITANS_API_KEYS JSON list (it holds only the hash):")
    console.print(entry, highlight=False, soft_wrap=True, markup=False)
    example = f"\ne.g. TITANS_API_KEYS='[{entry}]'"
    console.print(example, highlight=False, soft_wrap=True, markup=False)
