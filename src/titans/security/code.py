"""Code scans: bandit over the Python sources, detect-secrets over the repository's files."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from titans.errors import ConfigError
from titans.security.findings import (
    ERROR,
    FAIL,
    PASS,
    UNAVAILABLE,
    Finding,
    at_or_above,
    find_tool,
    run_tool,
)

log = logging.getLogger(__name__)

#: the allowlist shipped with the package (this repository's known false positives)
DEFAULT_ALLOWLIST = Path(__file__).with_name("secrets_allowlist.yaml")
#: never scanned for secrets: environments and tool caches, not the project's files
EXCLUDED_DIRS = frozenset(
    {".git", ".venv", ".tools", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)
#: bandit findings at or above this severity fail the scan
BANDIT_FAIL_SEVERITY = "medium"


def scan_bandit(target: Path, config: Path | None = None, timeout: float = 900) -> dict[str, Any]:
    """bandit over ``target``: medium and high severity findings fail, low ones are listed."""
    bandit = find_tool("bandit")
    result: dict[str, Any] = {"tool": "bandit", "target": str(target), "findings": []}
    if bandit is None:
        return {**result, "status": UNAVAILABLE, "detail": "bandit is not installed (dev extra)"}
    command = [bandit, "-r", str(target), "-f", "json", "-q"]
    if config is not None and config.is_file():
        command[1:1] = ["-c", str(config)]
    run = run_tool(command, timeout=timeout)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        return {**result, "status": ERROR, **run.summary()}
    findings = [
        Finding(
            tool="bandit",
            rule_id=item["test_id"],
            severity=item["issue_severity"].lower(),
            message=f"{item['test_name']}: {item['issue_text']}",
            path=item["filename"],
            line=item.get("line_number"),
            failing=at_or_above(item["issue_severity"].lower(), BANDIT_FAIL_SEVERITY),
            extra={
                "confidence": item.get("issue_confidence", "").lower(),
                "more_info": item.get("more_info", ""),
            },
        )
        for item in report.get("results", [])
    ]
    errors = report.get("errors", [])
    files = len(report.get("metrics", {})) - 1 if report.get("metrics") else 0
    status = FAIL if any(f.failing for f in findings) else (ERROR if errors else PASS)
    return {
        **result,
        "status": status,
        "files_scanned": max(files, 0),
        "findings": [f.to_dict() for f in findings],
        "errors": errors,
        **run.summary(),
    }


@dataclass(frozen=True)
class AllowedSecret:
    """A reported string that is known not to be a secret, and why."""

    path: str
    type: str
    hashed_secret: str
    reason: str


def load_allowlist(path: Path) -> list[AllowedSecret]:
    """Entries of an allowlist YAML file; each must give path, type, hashed_secret, reason."""
    entries = yaml.safe_load(path.read_text()) or []
    allowed: list[AllowedSecret] = []
    for i, entry in enumerate(entries, start=1):
        missing = [k for k in ("path", "type", "hashed_secret", "reason") if not entry.get(k)]
        if missing:
            raise ConfigError(
                f"secrets allowlist {path} entry {i} lacks {', '.join(missing)}; every entry "
                "needs path, type, hashed_secret and a reason"
            )
        allowed.append(AllowedSecret(**{k: str(entry[k]) for k in AllowedSecret.__annotations__}))
    return allowed


def repository_files(root: Path) -> list[str]:
    """Files to scan, relative to ``root``: in a git checkout the tracked files and untracked
    ones that .gitignore does not exclude, else a walk;
    anything under an excluded directory (.venv, .tools, .git, ...) is left out."""
    git = find_tool("git")
    if (root / ".git").exists() and git is not None:
        # tracked files plus new ones not ignored yet: a secret is caught before its commit
        run = run_tool(
            [git, "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            timeout=120,
        )
        if run.returncode == 0:
            names = [n for n in run.stdout.split("\0") if n]
            return [
                n
                for n in names
                if not (set(Path(n).parts) & EXCLUDED_DIRS) and (root / n).is_file()
            ]
        log.warning("git ls-files failed in %s (%s); walking the tree", root, run.stderr[-200:])
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS)
        rel = Path(dirpath).relative_to(root)
        found += [str(rel / f) for f in sorted(filenames)]
    return found


def scan_secrets(
    root: Path, allowlist: list[Path] | None = None, timeout: float = 900
) -> dict[str, Any]:
    """detect-secrets over the repository; allowlisted strings are listed with their reasons."""
    result: dict[str, Any] = {"tool": "detect-secrets", "root": str(root), "findings": []}
    tool = find_tool("detect-secrets")
    if tool is None:
        return {
            **result,
            "status": UNAVAILABLE,
            "detail": "detect-secrets is not installed (dev extra)",
        }
    allowlists = list(allowlist or [DEFAULT_ALLOWLIST])
    allowed = [a for p in allowlists for a in load_allowlist(p)]
    # the allowlists hold only detect-secrets' SHA-1 hashes, which read as hex secrets
    own = {p.resolve() for p in allowlists}
    files = [f for f in repository_files(root) if (root / f).resolve() not in own]
    if not files:
        return {**result, "status": PASS, "files_scanned": 0, "allowlisted": []}
    run = run_tool([tool, "scan", *files], cwd=root, timeout=timeout)
    try:
        report = json.loads(run.stdout)
    except ValueError:
        return {**result, "status": ERROR, **run.summary()}
    findings: list[Finding] = []
    allowlisted: list[dict[str, Any]] = []
    for path, secrets in sorted(report.get("results", {}).items()):
        for secret in secrets:
            match = next(
                (
                    a
                    for a in allowed
                    if a.path == path
                    and a.type == secret["type"]
                    and a.hashed_secret == secret["hashed_secret"]
                ),
                None,
            )
            where = {"path": path, "line": secret.get("line_number"), "type": secret["type"]}
            if match is not None:
                allowlisted.append({**where, "reason": match.reason})
                continue
            findings.append(
                Finding(
                    tool="detect-secrets",
                    rule_id=secret["type"],
                    severity="high",
                    message=f"possible secret ({secret['type']}); remove it and rotate it, or "
                    "allowlist it with a reason if it is not a secret",
                    path=path,
                    line=secret.get("line_number"),
                    extra={"hashed_secret": secret["hashed_secret"]},
                )
            )
    return {
        **result,
        "status": FAIL if findings else PASS,
        "files_scanned": len(files),
        "findings": [f.to_dict() for f in findings],
        "allowlisted": allowlisted,
        "command": f"{tool} scan <{len(files)} files>",
        "returncode": run.returncode,
    }
