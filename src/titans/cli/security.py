"""`titans security`: run every security scan, write Markdown + SARIF, gate on severity.

Exit codes of `titans security scan`: 1 when a finding at or above ``--fail-on`` exists
(a failed compliance control counts at its own severity; unknown severity counts as high);
otherwise 3 when a scan is incomplete or its scanner unavailable and ``--require-complete``
is given; otherwise 0 — an incomplete scan is then printed in yellow and the report's overall
status stays ``incomplete``, never ``pass``.
"""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.table import Table

from titans.cli._common import console, settings
from titans.errors import InputError
from titans.security.findings import PASS, SEVERITIES
from titans.security.report import all_findings, findings_at_or_above
from titans.security.scanner import DEFAULT_STANDARD, SecurityScanner

app = typer.Typer(
    help="Security scans: dependencies, containers, code, compliance.", no_args_is_help=True
)

EXIT_FINDINGS = 1
EXIT_INCOMPLETE = 3
_STYLE = {
    PASS: "green",
    "fail": "red",
    "incomplete": "yellow",
    "scanner_unavailable": "yellow",
    "error": "yellow",
    "not-applicable": "dim",
}


def default_images(root: Path) -> list[str]:
    """The API image the Helm chart deploys (values.yaml image.repository:tag), if any."""
    values = root / "deploy" / "helm" / "titans" / "values.yaml"
    if not values.is_file():
        return []
    image = (yaml.safe_load(values.read_text()) or {}).get("image") or {}
    if image.get("repository") and image.get("tag"):
        return [f"{image['repository']}:{image['tag']}"]
    return []


def _styled(status: str) -> str:
    return f"[{_STYLE.get(status, 'white')}]{status}[/]"


def _summary_table(results: dict, fail_on: str) -> Table:
    table = Table(title=f"security scan: {_styled(results['status'])}")
    table.add_column("scan", style="bold")
    table.add_column("part")
    table.add_column("status")
    table.add_column("findings", justify="right")
    table.add_column(f">= {fail_on}", justify="right")
    for name, scan in results["scans"].items():
        rows: list[tuple[str, dict]] = list(scan.get("parts", {}).items()) or [("", scan)]
        for part, data in rows:
            found = list(data.get("findings", []))
            if name == "compliance":
                found = [
                    {"severity": c["severity"]}
                    for c in data.get("controls", [])
                    if c["status"] == "fail"
                ]
            gated = [f for f in found if SEVERITIES.index(fail_on) <= _rank(f["severity"])]
            extra = ""
            if data.get("unaudited"):
                extra = f" ({len(data['unaudited'])} unaudited)"
            table.add_row(
                name, part, _styled(data["status"]) + extra, str(len(found)), str(len(gated))
            )
        for control in scan.get("controls", []):
            table.add_row("", control["id"], _styled(control["status"]), "", "")
    return table


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else SEVERITIES.index("high")


@app.command("scan")
def scan(
    fail_on: str = typer.Option(
        "high", "--fail-on", help=f"Exit 1 on a finding at or above: {', '.join(SEVERITIES)}."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Report directory (default <TITANS_HOME>/security)."
    ),
    requirements: Path | None = typer.Option(
        None,
        "--requirements",
        "-r",
        help="Pinned requirements to audit (default: this environment).",
    ),
    osv_db: Path | None = typer.Option(
        None, "--osv-db", help="Offline OSV export (JSON, directory of JSON, or all.zip)."
    ),
    image: list[str] = typer.Option(
        [], "--image", help="Image to scan for CVEs (repeat; default: the chart's API image)."
    ),
    root: Path = typer.Option(Path("."), "--root", help="Repository root."),
    standard: str = typer.Option(DEFAULT_STANDARD, "--standard", help="Compliance control set."),
    allowlist: list[Path] = typer.Option(
        [],
        "--secrets-allowlist",
        help="Allowlist YAML of known non-secrets with reasons (repeat; default: the package's).",
    ),
    only: list[str] = typer.Option(
        [],
        "--scan",
        help="Run only this scan (repeat): "
        "dependencies, containers, code, compliance; default all.",
    ),
    require_complete: bool = typer.Option(
        False,
        "--require-complete",
        help="Exit 3 when a scan is incomplete or its scanner unavailable.",
    ),
) -> None:
    """Run every scan, write Markdown + SARIF reports, print a summary, gate on --fail-on."""
    fail_on = fail_on.lower()
    if fail_on not in SEVERITIES:
        raise InputError(
            f"--fail-on {fail_on!r} is not a severity; use one of {', '.join(SEVERITIES)}"
        )
    root = root.resolve()
    scanner = SecurityScanner(
        settings(), root=root, osv_database=osv_db, secrets_allowlist=allowlist or None
    )
    with console.status(
        "running security scans (pip-audit, trivy/grype, hadolint, checkov, "
        "bandit, detect-secrets, compliance)…"
    ):
        results = scanner.run_all(
            requirements, image or default_images(root), standard, scans=only or None
        )
    scanner.generate_security_report(out, fail_on)
    console.print(_summary_table(results, fail_on))
    gated = findings_at_or_above(results, fail_on)
    for f in gated[:30]:
        where = f"{f.get('path') or ''}:{f.get('line') or ''}".strip(":")
        console.print(
            f"[red]{f['severity']}[/red] {f['tool']} {f['rule_id']} {where} "
            f"{str(f['message'])[:160]}",
            highlight=False,
            soft_wrap=True,
        )
    paths = scanner.last_report_paths
    console.print(f"reports: {paths['markdown']} , {paths['sarif']}", highlight=False)
    console.print(
        f"overall status: {_styled(results['status'])}; "
        f"{len(all_findings(results))} findings, {len(gated)} at or above {fail_on}"
    )
    if gated:
        raise typer.Exit(EXIT_FINDINGS)
    if results["status"] == "incomplete":
        if require_complete:
            console.print("[yellow]incomplete[/yellow]: exiting 3 (--require-complete)")
            raise typer.Exit(EXIT_INCOMPLETE)
        console.print("[yellow]incomplete[/yellow]: some scans could not run; this is not a pass")
