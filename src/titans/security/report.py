"""The security report: Markdown for people, SARIF 2.1.0 for code-scanning tools."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import titans
from titans.security.findings import PASS, at_or_above

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}


def all_findings(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finding of every scan, plus one per failed compliance control."""
    found: list[dict[str, Any]] = []
    for scan in results["scans"].values():
        found += scan.get("findings", [])
        for part in scan.get("parts", {}).values():
            found += part.get("findings", [])
        for control in scan.get("controls", []):
            if control["status"] == "fail":
                where: dict[str, Any] = next((e for e in control["evidence"] if e.get("file")), {})
                found.append(
                    {
                        "tool": "titans-compliance",
                        "rule_id": control["id"],
                        "severity": control["severity"],
                        "message": f"{control['title']}: "
                        + "; ".join(
                            str(e["detail"])
                            for e in control["evidence"]
                            if e.get("passed") is False or len(control["evidence"]) == 1
                        )[:600],
                        "path": where.get("file"),
                        "line": where.get("line"),
                        "failing": True,
                        "extra": {},
                    }
                )
    return found


def findings_at_or_above(results: dict[str, Any], threshold: str) -> list[dict[str, Any]]:
    """Findings whose severity is at least ``threshold`` (unknown severity counts as high)."""
    return [f for f in all_findings(results) if at_or_above(f["severity"], threshold)]


def _uri(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    p = Path(path)
    try:
        return (
            p.resolve().relative_to(root.resolve()).as_posix() if p.is_absolute() else p.as_posix()
        )
    except ValueError:
        return p.as_posix()


def to_sarif(results: dict[str, Any], root: Path) -> dict[str, Any]:
    """SARIF 2.1.0: one run per tool; scans that did not complete say so in their invocation."""
    by_tool: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for finding in all_findings(results):
        by_tool[finding["tool"]].append(finding)
    runs = []
    for tool, findings in sorted(by_tool.items()):
        rules = sorted({f["rule_id"] for f in findings})
        sarif_results = []
        for f in findings:
            result: dict[str, Any] = {
                "ruleId": f["rule_id"],
                "ruleIndex": rules.index(f["rule_id"]),
                "level": _LEVEL.get(f["severity"], "error"),
                "message": {"text": f["message"] or f["rule_id"]},
                "properties": {"severity": f["severity"]},
            }
            uri = _uri(f.get("path"), root)
            if uri:
                location: dict[str, Any] = {"artifactLocation": {"uri": uri}}
                if f.get("line"):
                    location["region"] = {"startLine": int(f["line"])}
                result["locations"] = [{"physicalLocation": location}]
            sarif_results.append(result)
        runs.append(
            {
                "tool": {"driver": {"name": tool, "rules": [{"id": r} for r in rules]}},
                "results": sarif_results,
            }
        )
    notes = [
        {"level": "warning", "message": {"text": f"{name}: {scan['status']}"}}
        for name, scan in results["scans"].items()
        if scan["status"] != PASS
    ]
    runs.append(
        {
            "tool": {
                "driver": {
                    "name": "titans-security",
                    "version": titans.__version__,
                    "informationUri": "https://github.com/titans-finance",
                }
            },
            "results": [],
            "invocations": [
                {
                    "executionSuccessful": all(
                        s["status"] in {PASS, "fail"} for s in results["scans"].values()
                    ),
                    "toolExecutionNotifications": notes,
                }
            ],
            "properties": {"overall_status": results["status"]},
        }
    )
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}


def to_markdown(results: dict[str, Any], fail_on: str = "high", root: Path | None = None) -> str:
    """A readable report: the verdict, each scan's status, findings and compliance evidence."""
    lines = [
        "# Titans security report",
        "",
        f"- overall status: **{results['status']}**",
        f"- generated: {results.get('generated_at', '')}",
        f"- findings at or above {fail_on}: {len(findings_at_or_above(results, fail_on))}",
        "",
        "| scan | status | findings |",
        "| --- | --- | --- |",
    ]
    for name, scan in results["scans"].items():
        count = (
            len(scan.get("findings", []))
            + sum(len(p.get("findings", [])) for p in scan.get("parts", {}).values())
            + sum(1 for c in scan.get("controls", []) if c["status"] == "fail")
        )
        lines.append(f"| {name} | {scan['status']} | {count} |")
    for name, scan in results["scans"].items():
        lines += ["", f"## {name}: {scan['status']}", ""]
        for part_name, part in scan.get("parts", {}).items():
            detail = part.get("detail", "")
            lines.append(f"- {part_name}: **{part['status']}** {detail}".rstrip())
        if scan.get("unaudited"):
            lines.append(
                f"- unaudited packages ({len(scan['unaudited'])}): "
                + ", ".join(f"{u['name']} {u['version']}" for u in scan["unaudited"][:50])
                + (" …" if len(scan["unaudited"]) > 50 else "")
            )
            lines.append(f"  - reason (first): {scan['unaudited'][0]['reason']}")
        findings = list(scan.get("findings", []))
        for part in scan.get("parts", {}).values():
            findings += part.get("findings", [])
        if findings:
            lines += [
                "",
                "| severity | tool | rule | where | message |",
                "| --- | --- | --- | --- | --- |",
            ]
            for f in findings:
                path = _uri(f.get("path"), root) if root is not None else f.get("path")
                where = f"{path or ''}:{f.get('line') or ''}".strip(":")
                msg = str(f["message"]).replace("|", "\\|").replace("\n", " ")[:200]
                lines.append(
                    f"| {f['severity']} | {f['tool']} | {f['rule_id']} | {where} | {msg} |"
                )
        for control in scan.get("controls", []):
            lines += [
                "",
                f"### {control['id']}: {control['status']} ({control['severity']})",
                "",
                control["title"],
                "",
            ]
            for e in control["evidence"]:
                where = f"{e.get('file') or ''}:{e.get('line') or ''}".strip(":")
                lines.append(f"- {where + ': ' if where else ''}{e['detail']}")
    return "\n".join(lines) + "\n"


def write_reports(
    results: dict[str, Any], out_dir: Path, root: Path, fail_on: str = "high"
) -> tuple[Path, Path, str]:
    """Write security-report.md, security-report.sarif and security-report.json; return the
    Markdown and SARIF paths and the Markdown text."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(results, fail_on, root)
    md_path = out_dir / "security-report.md"
    sarif_path = out_dir / "security-report.sarif"
    md_path.write_text(markdown)
    sarif_path.write_text(json.dumps(to_sarif(results, root), indent=2))
    (out_dir / "security-report.json").write_text(json.dumps(results, indent=2, default=str))
    return md_path, sarif_path, markdown
