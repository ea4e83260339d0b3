"""`titans governance`: approval requests and decisions, and the audit trail."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from titans.cli._common import console, settings
from titans.governance.audit import AuditEntry, AuditLogger
from titans.governance.governance import ApprovalRecord, ModelGovernanceManager

app = typer.Typer(
    help="Approvals, policy and the tamper-evident audit trail.", no_args_is_help=True
)
audit_app = typer.Typer(help="Show and verify the hash-chained audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


_DETAILS_WIDTH = 60


def _entry_table(entries: list[AuditEntry], title: str) -> Table:
    # narrow terminals drop the hash prefix and the year so names stay readable
    wide = console.width >= 120
    table = Table(title=title)
    table.add_column("seq", style="bold", justify="right", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("actor", style="cyan")
    table.add_column("action", style="magenta")
    table.add_column("model")
    table.add_column("ver", no_wrap=True)
    table.add_column("details", style="dim")
    if wide:
        table.add_column("hash", style="dim", no_wrap=True)
    for e in entries:
        details = json.dumps(e.details, ensure_ascii=False, sort_keys=True)
        if len(details) > _DETAILS_WIDTH:
            details = details[: _DETAILS_WIDTH - 1] + "…"
        row = [
            str(e.seq),
            e.ts.strftime("%Y-%m-%d %H:%M:%S" if wide else "%m-%d %H:%M:%S"),
            e.actor,
            e.action,
            e.model_name or "",
            e.model_version or "",
            details,
        ]
        table.add_row(*row, *([e.entry_hash[:10]] if wide else []))
    return table


@audit_app.command("verify")
def verify_cmd(
    expected_head: str | None = typer.Option(
        None,
        "--expected-head",
        help="A head hash kept outside the database; it must be in the chain.",
    ),
) -> None:
    """Recompute the hash chain; exit 1 and name the first broken entry if it does not hold."""
    audit = AuditLogger(settings())
    result = audit.verify(expected_head=expected_head)
    if result.ok:
        console.print(
            f"[green]audit chain ok[/green]: {result.entries_checked} entries, "
            f"head {result.head_hash}"
        )
        _verify_aliases(audit)
        return
    where = f"entry {result.first_broken_seq}" if result.first_broken_seq else "the chain's end"
    console.print(f"[red]audit chain BROKEN[/red] at {where}: {result.reason}")
    console.print(f"entries verified before the break: {result.entries_checked}")
    if result.first_broken_seq is not None:
        entry = audit.get(result.first_broken_seq)
        if entry is not None:
            console.print(_entry_table([entry], "first broken entry (as stored)"))
    raise typer.Exit(1)


def _verify_aliases(audit: AuditLogger) -> None:
    """Exit 1 when a registry alias differs from the last move the audit trail records."""
    from titans.registry.registry_manager import ALIAS_MOVES, ModelRegistryManager

    entries = audit.entries()
    if not any(e.action in ALIAS_MOVES for e in entries):
        return  # the trail moved no alias: nothing to compare with the registry
    try:
        problems = ModelRegistryManager(settings(), audit.store).alias_disagreements(entries)
    except Exception as exc:  # the chain held, but the comparison could not be made
        console.print(
            f"[red]aliases not checked[/red]: the model registry is unreachable "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "retry when it is back"
        )
        raise typer.Exit(1) from exc
    if not problems:
        console.print("[green]registry aliases agree with the audit trail[/green]")
        return
    for problem in problems:
        console.print(f"[red]alias disagrees with the audit trail[/red]: {problem}")
    raise typer.Exit(1)


@audit_app.command("show")
def show_cmd(
    limit: int = typer.Option(20, "--limit", "-n", min=1, help="How many of the newest entries."),
    model: str | None = typer.Option(None, "--model", help="Only entries about this model."),
) -> None:
    """Show the newest audit entries."""
    audit = AuditLogger(settings())
    entries = audit.entries(limit=limit, model_name=model)
    if not entries:
        console.print("the audit trail is empty" + (f" for {model}" if model else ""))
        return
    console.print(_entry_table(entries, f"audit trail (newest {len(entries)})"))
    console.print(f"head {audit.head()}")


# ---------------------------------------------------------------- approvals


def _manager() -> ModelGovernanceManager:
    return ModelGovernanceManager(settings())


def _approval_line(record: ApprovalRecord) -> str:
    until = record.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    if record.status == "approved":
        return f"valid until {until}"
    if record.status == "pending":
        return f"decide before {until}"
    return ""


@app.command("request")
def request_cmd(
    model_uri: str = typer.Argument(..., help="The version to approve: models:/NAME/VERSION."),
    justification: str = typer.Option(
        ..., "--justification", "-j", help="Why this version should go to production."
    ),
    as_name: str = typer.Option(
        "system", "--as", help="Who asks (an identity with the requester role)."
    ),
) -> None:
    """Ask for approval to promote a model version; prints the request id."""
    gov = _manager()
    request_id = gov.request_model_approval(model_uri, justification, requester=as_name)
    record = gov.get_request(request_id)
    console.print(
        f"[green]requested[/green] approval {request_id} for {record.model_uri} "
        f"({_approval_line(record)})"
    )


@app.command("approve")
def approve_cmd(
    request_id: str = typer.Argument(..., help="Request id (or its first 6+ characters)."),
    as_name: str = typer.Option(..., "--as", help="Who approves (approver or admin role)."),
    comment: str = typer.Option("", "--comment", "-c", help="Why it is approved."),
) -> None:
    """Approve a pending request (never your own)."""
    record = _manager().approve(request_id, as_name, comment)
    console.print(
        f"[green]approved[/green] {record.model_uri} (request {record.id}) by {as_name}, "
        f"{_approval_line(record)}"
    )


@app.command("reject")
def reject_cmd(
    request_id: str = typer.Argument(..., help="Request id (or its first 6+ characters)."),
    as_name: str = typer.Option(..., "--as", help="Who rejects (approver or admin role)."),
    comment: str = typer.Option(..., "--comment", "-c", help="Why it is rejected (required)."),
) -> None:
    """Reject a pending request with a reason."""
    record = _manager().reject(request_id, as_name, comment)
    console.print(
        f"[yellow]rejected[/yellow] {record.model_uri} (request {record.id}) by {as_name}"
    )


@app.command("pending")
def pending_cmd(
    model: str | None = typer.Option(None, "--model", help="Only requests for this model."),
) -> None:
    """List requests waiting for a decision, oldest first."""
    records = _manager().pending(model)
    if not records:
        console.print("no pending approval requests" + (f" for {model}" if model else ""))
        return
    table = Table(title=f"pending approval requests ({len(records)})")
    # the id is what people copy into `approve`: never truncate it, fold the rest instead
    table.add_column("request", style="bold", no_wrap=True, min_width=36)
    table.add_column("model", overflow="fold")
    table.add_column("ver", justify="right", no_wrap=True)
    table.add_column("requester", style="cyan", overflow="fold")
    table.add_column("requested (UTC)", overflow="fold")
    table.add_column("expires (UTC)", overflow="fold")
    table.add_column("justification", style="dim", overflow="fold")
    for r in records:
        table.add_row(
            r.id,
            r.model_name,
            r.model_version,
            r.requester,
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.expires_at.strftime("%Y-%m-%d %H:%M"),
            r.justification,
        )
    console.print(table)
