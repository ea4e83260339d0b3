"""Shared pieces of the security scans: severities, findings, scan statuses and tool lookup."""

from __future__ import annotations

import logging
import os
import shutil

# the scans run fixed tool binaries without a shell
import subprocess  # nosec B404
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: severities from least to most serious; "unknown" ranks as "high" for gating (fail closed)
SEVERITIES: tuple[str, ...] = ("info", "low", "medium", "high", "critical")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}
UNKNOWN_RANK = _RANK["high"]

#: scan statuses: only PASS means a tool ran over everything and found nothing that fails
# a status name, not a password (bandit B105 reads "pass" as one)
PASS = "pass"  # nosec B105
FAIL = "fail"
INCOMPLETE = "incomplete"
UNAVAILABLE = "scanner_unavailable"
ERROR = "error"
NOT_APPLICABLE = "not-applicable"


def severity_rank(severity: str) -> int:
    """Rank of a severity; unknown or unrecognised severities rank as high.

    >>> severity_rank("medium") < severity_rank("high") == severity_rank("unknown")
    True
    """
    return _RANK.get(severity.lower(), UNKNOWN_RANK)


def at_or_above(severity: str, threshold: str) -> bool:
    """True when ``severity`` is at least ``threshold`` (unknown counts as high)."""
    return severity_rank(severity) >= severity_rank(threshold)


@dataclass
class Finding:
    """One problem a tool reported: what, how bad, where, and by which tool."""

    tool: str
    rule_id: str
    severity: str
    message: str
    path: str | None = None
    line: int | None = None
    #: whether this finding makes its scan fail (tools' own policy, e.g. bandit >= medium)
    failing: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def combine_status(statuses: list[str]) -> str:
    """Overall status of several parts: fail beats incomplete, which beats pass.

    >>> combine_status(["pass", "scanner_unavailable"]), combine_status(["incomplete", "fail"])
    ('incomplete', 'fail')
    """
    relevant = [s for s in statuses if s != NOT_APPLICABLE]
    if FAIL in relevant:
        return FAIL
    if any(s != PASS for s in relevant):
        return INCOMPLETE
    return PASS if relevant else NOT_APPLICABLE


def find_tool(name: str, *extra: Path) -> str | None:
    """Path of an executable: given candidates first, then beside this Python, then PATH."""
    candidates = [*extra, Path(sys.executable).parent / name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


@dataclass
class ToolRun:
    """What a tool did: its command line, exit code and output."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str

    def summary(self, limit: int = 2000) -> dict[str, Any]:
        """The command and its exit code plus the tail of stderr, for evidence."""
        return {
            "command": " ".join(self.command),
            "returncode": self.returncode,
            "stderr_tail": self.stderr[-limit:],
        }


def run_tool(command: list[str], *, cwd: Path | None = None, timeout: float = 900) -> ToolRun:
    """Run a tool without a shell; a timeout becomes returncode -1 (never an exception)."""
    log.info("running %s", " ".join(command))
    try:
        # a fixed tool argv, no shell
        done = subprocess.run(  # nosec B603
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return ToolRun(command, -1, out, f"timed out after {timeout:.0f} s")
    return ToolRun(command, done.returncode, done.stdout, done.stderr)
