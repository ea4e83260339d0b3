"""Vulnerabilities in pinned Python dependencies: pip-audit, plus an offline OSV export.

pip-audit without network access skips every package ("could not be audited"), prints "No
known vulnerabilities found" and exits 0. Its JSON report keeps a ``skip_reason`` per skipped
package: those packages are listed as ``unaudited`` and the scan is ``incomplete``, never
``pass``, unless an offline OSV export (``osv_database``) covered them.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from titans.errors import InputError
from titans.security.findings import (
    ERROR,
    FAIL,
    INCOMPLETE,
    PASS,
    UNAVAILABLE,
    Finding,
    find_tool,
    run_tool,
)
from titans.security.osv import OsvDatabase, normalize_name

log = logging.getLogger(__name__)

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*===?\s*([^\s;#\\]+)")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")

#: the project itself is installed editable and is not on PyPI
SELF_DISTRIBUTIONS = frozenset({"titans-mlops"})


@dataclass(frozen=True)
class Requirement:
    """One line of a requirements file: a name and, when pinned with ==, its version."""

    name: str
    version: str | None
    line: int


def parse_requirements(path: Path) -> list[Requirement]:
    """Requirements of a pip requirements file; unpinned ones have ``version=None``.

    Options (``-r``, ``--hash`` continuation lines), comments and URLs are skipped.
    """
    if not path.is_file():
        raise InputError(
            f"requirements file {path} does not exist; pass a pinned requirements file"
        )
    found: list[Requirement] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text or text.startswith(("-", "--")) or "://" in text:
            continue
        pinned = _PIN.match(text)
        if pinned:
            found.append(Requirement(pinned.group(1), pinned.group(3), number))
            continue
        named = _NAME.match(text)
        if named:
            found.append(Requirement(named.group(1), None, number))
    return found


def freeze_environment(target: Path) -> Path:
    """Write the installed distributions (this venv) as ``name==version`` lines."""
    pins = sorted(
        {
            f"{dist.metadata['Name']}=={dist.version}"
            for dist in metadata.distributions()
            if dist.metadata["Name"]
            and normalize_name(dist.metadata["Name"]) not in SELF_DISTRIBUTIONS
        },
        key=str.lower,
    )
    target.write_text("\n".join(pins) + "\n")
    return target


def parse_pip_audit_json(text: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """``(vulnerable, unaudited)`` from pip-audit's ``-f json`` report.

    ``vulnerable``: one dict per (package, vulnerability); ``unaudited``: name, version (when
    pip-audit names it) and the skip reason of each package pip-audit could not audit.
    """
    report = json.loads(text)
    vulnerable: list[dict[str, Any]] = []
    unaudited: list[dict[str, str]] = []
    for dep in report.get("dependencies", []):
        if dep.get("skip_reason"):
            reason = str(dep["skip_reason"])
            version = dep.get("version") or _version_in_reason(reason)
            unaudited.append({"name": dep["name"], "version": version, "reason": reason})
            continue
        for vuln in dep.get("vulns") or []:
            vulnerable.append({"name": dep["name"], "version": dep.get("version", ""), **vuln})
    return vulnerable, unaudited


def _version_in_reason(reason: str) -> str:
    found = re.search(r"\(([^()]+)\)\s*$", reason)
    return found.group(1) if found else ""


def scan_dependencies(
    requirements_file: Path,
    *,
    osv_database: Path | None = None,
    use_pip_audit: bool = True,
    timeout: float = 900,
) -> dict[str, Any]:
    """Audit a pinned requirements file; see the module docstring for the statuses."""
    requirements = parse_requirements(requirements_file)
    tools: dict[str, Any] = {}
    findings: list[Finding] = []
    unaudited: dict[str, dict[str, str]] = {}
    for req in requirements:
        if req.version is None:
            unaudited[normalize_name(req.name)] = {
                "name": req.name,
                "version": "",
                "reason": f"not pinned with == (line {req.line}); its version is unknown",
            }
    pinned = [r for r in requirements if r.version is not None]
    pip_audited: set[str] = set()

    pip_audit = find_tool("pip-audit") if use_pip_audit else None
    if use_pip_audit and pip_audit is None:
        tools["pip-audit"] = {"status": UNAVAILABLE, "detail": "pip-audit is not installed"}
    elif pip_audit is not None and pinned:
        with tempfile.TemporaryDirectory() as tmp:
            pins = Path(tmp) / "requirements.txt"
            pins.write_text("".join(f"{r.name}=={r.version}\n" for r in pinned))
            run = run_tool(
                [
                    pip_audit,
                    "-r",
                    str(pins),
                    "--no-deps",
                    "--disable-pip",
                    "-f",
                    "json",
                    "--progress-spinner",
                    "off",
                ],
                timeout=timeout,
            )
        try:
            vulnerable, skipped = parse_pip_audit_json(run.stdout)
        except (ValueError, AttributeError):
            tools["pip-audit"] = {"status": ERROR, **run.summary()}
            skipped = [
                {"name": r.name, "version": r.version or "", "reason": "pip-audit failed"}
                for r in pinned
            ]
            vulnerable = []
        else:
            tools["pip-audit"] = {
                "status": INCOMPLETE if skipped else (FAIL if vulnerable else PASS),
                "audited": len(pinned) - len(skipped),
                "skipped": len(skipped),
                **run.summary(),
            }
        skipped_names = {normalize_name(s["name"]) for s in skipped}
        pip_audited = {normalize_name(r.name) for r in pinned} - skipped_names
        for s in skipped:
            unaudited.setdefault(normalize_name(s["name"]), s)
        for v in vulnerable:
            findings.append(
                Finding(
                    tool="pip-audit",
                    rule_id=str(v.get("id")),
                    severity="unknown",
                    message=f"{v['name']} {v['version']}: {v.get('description', '')[:300]}",
                    path=str(requirements_file),
                    line=_line_of(requirements, v["name"]),
                    extra={
                        "package": v["name"],
                        "version": v["version"],
                        "aliases": v.get("aliases", []),
                        "fixed_versions": v.get("fix_versions", []),
                    },
                )
            )

    if osv_database is not None:
        db = OsvDatabase.load(osv_database)
        tools["osv-offline"] = {
            "status": PASS,
            "database": str(osv_database),
            "records": db.record_count,
        }
        seen = {(f.extra["package"], f.rule_id) for f in findings}
        seen_aliases = {a for f in findings for a in f.extra.get("aliases", [])}
        for req in pinned:
            unaudited.pop(normalize_name(req.name), None)
            for vuln in db.match(req.name, str(req.version)):
                if (req.name, vuln.id) in seen or vuln.id in seen_aliases:
                    continue
                findings.append(
                    Finding(
                        tool="osv-offline",
                        rule_id=vuln.id,
                        severity=vuln.severity,
                        message=f"{req.name} {req.version}: {vuln.summary}",
                        path=str(requirements_file),
                        line=req.line,
                        extra={
                            "package": req.name,
                            "version": req.version,
                            "aliases": vuln.aliases,
                            "fixed_versions": vuln.fixed_versions,
                        },
                    )
                )
        if findings:
            tools["osv-offline"]["status"] = FAIL
    # a package pip-audit audited is not unaudited even if the OSV export lacks it
    for name in pip_audited:
        unaudited.pop(name, None)

    ran = [t for t in tools.values() if t["status"] not in {UNAVAILABLE, ERROR}]
    if findings:
        status = FAIL
    elif not ran and pinned:
        status = UNAVAILABLE
    elif unaudited or any(t["status"] == ERROR for t in tools.values()):
        status = INCOMPLETE
    else:
        status = PASS
    return {
        "scan": "dependencies",
        "status": status,
        "requirements_file": str(requirements_file),
        "packages": len(requirements),
        "unaudited": sorted(unaudited.values(), key=lambda u: u["name"].lower()),
        "findings": [f.to_dict() for f in findings],
        "tools": tools,
    }


def _line_of(requirements: list[Requirement], name: str) -> int | None:
    wanted = normalize_name(name)
    return next((r.line for r in requirements if normalize_name(r.name) == wanted), None)
