"""SecurityScanner: dependency, container, code and compliance scans with honest statuses.

Every scan returns a dict with a ``status``: ``pass`` (the tools ran over everything and
found nothing that fails), ``fail``, ``incomplete`` (part could not be checked: offline
pip-audit, a missing tool, a control that could not be judged) or ``scanner_unavailable``.
Only ``pass`` is a pass.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from titans.config import Settings
from titans.errors import InputError
from titans.security import code, compliance, containers, dependencies, report
from titans.security.findings import ERROR, FAIL, INCOMPLETE, PASS, UNAVAILABLE, combine_status

log = logging.getLogger(__name__)

DEFAULT_STANDARD = "titans-baseline"
#: the scans run_all runs, in order
SCANS: tuple[str, ...] = ("dependencies", "containers", "code", "compliance")


class SecurityScanner:
    """Runs the scans over the repository at ``root`` (default: the current directory).

    ``osv_database``: an offline OSV export (JSON record/list, directory or all.zip) used
    besides pip-audit; ``secrets_allowlist``: allowlist YAML files (default: the package's).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        root: Path | None = None,
        osv_database: Path | None = None,
        secrets_allowlist: list[Path] | None = None,
        use_pip_audit: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        self.root = (root or Path.cwd()).resolve()
        self.osv_database = osv_database
        self.secrets_allowlist = secrets_allowlist
        self.use_pip_audit = use_pip_audit
        self.last_results: dict[str, Any] | None = None
        self.last_report_paths: dict[str, Path] = {}
        self._secrets: dict[str, Any] | None = None

    # ------------------------------------------------------------ dependencies

    def scan_dependencies(self, requirements_file: Path | str | None = None) -> dict[str, Any]:
        """Vulnerabilities in pinned dependencies (pip-audit + the offline OSV export).

        Without a file, the distributions installed in this environment are audited.
        """
        if requirements_file is not None:
            return dependencies.scan_dependencies(
                Path(requirements_file),
                osv_database=self.osv_database,
                use_pip_audit=self.use_pip_audit,
            )
        with tempfile.TemporaryDirectory() as tmp:
            frozen = dependencies.freeze_environment(Path(tmp) / "installed.txt")
            result = dependencies.scan_dependencies(
                frozen, osv_database=self.osv_database, use_pip_audit=self.use_pip_audit
            )
        result["requirements_file"] = "installed distributions of this environment"
        for finding in result["findings"]:
            finding["path"] = None
        return result

    # ------------------------------------------------------------ containers

    def docker_dir(self) -> Path:
        return self.root / "deploy" / "docker"

    def scan_docker_images(self, image_tags: list[str] | None = None) -> dict[str, Any]:
        """Image CVEs (trivy/grype, else ``scanner_unavailable``) plus hadolint and checkov on
        the Dockerfiles in deploy/docker/."""
        files = containers.dockerfiles(self.docker_dir())
        images = containers.scan_images(
            list(image_tags or []), scanner_dirs=[self.root / ".tools" / "bin"]
        )
        parts = {
            "images": images,
            "hadolint": containers.run_hadolint(files),
            "checkov": containers.run_checkov(files, self.root),
        }
        return {
            "scan": "containers",
            "status": combine_status([p["status"] for p in parts.values()]),
            "image_status": images["status"],
            "dockerfiles": [str(p) for p in files],
            "parts": parts,
        }

    # ------------------------------------------------------------ code

    def scan_secrets(self) -> dict[str, Any]:
        """detect-secrets over the repository's tracked files (cached for this scanner)."""
        if self._secrets is None:
            self._secrets = code.scan_secrets(self.root, self.secrets_allowlist)
        return self._secrets

    def scan_code(self, target: Path | None = None) -> dict[str, Any]:
        """bandit on ``src/`` (medium and high fail) and detect-secrets over the repository."""
        config = self.root / "pyproject.toml"
        parts = {
            "bandit": code.scan_bandit(target or self.root / "src", config=config),
            "secrets": self.scan_secrets(),
        }
        return {
            "scan": "code",
            "status": combine_status([p["status"] for p in parts.values()]),
            "parts": parts,
        }

    # ------------------------------------------------------------ compliance

    def check_compliance(
        self, compliance_standard: str = DEFAULT_STANDARD, only: set[str] | None = None
    ) -> dict[str, Any]:
        """Each control of the named set with pass / fail / not-applicable and its evidence."""
        needs_secrets = only is None or "no-secrets" in only
        ctx = compliance.ComplianceContext(
            root=self.root,
            settings=self.settings,
            secrets_scan=self.scan_secrets() if needs_secrets else None,
            secrets_allowlist=self.secrets_allowlist,
        )
        controls = compliance.run_controls(compliance_standard, ctx, only)
        statuses = [c.status for c in controls]
        if FAIL in statuses:
            status = FAIL
        elif ERROR in statuses:
            status = INCOMPLETE
        else:
            status = PASS
        return {
            "scan": "compliance",
            "standard": compliance_standard,
            "status": status,
            "controls": [c.to_dict() for c in controls],
        }

    # ------------------------------------------------------------ everything + report

    def run_all(
        self,
        requirements_file: Path | str | None = None,
        image_tags: list[str] | None = None,
        compliance_standard: str = DEFAULT_STANDARD,
        scans: list[str] | None = None,
    ) -> dict[str, Any]:
        """Every scan (or those named in ``scans``); ``status`` is fail if any failed, else
        incomplete if any did not complete, else pass."""
        wanted = list(scans or SCANS)
        unknown = sorted(set(wanted) - set(SCANS))
        if unknown:
            raise InputError(f"unknown scans {unknown}; choose from {', '.join(SCANS)}")
        runners: dict[str, Callable[[], dict[str, Any]]] = {
            "dependencies": lambda: self.scan_dependencies(requirements_file),
            "containers": lambda: self.scan_docker_images(image_tags),
            "code": self.scan_code,
            "compliance": lambda: self.check_compliance(compliance_standard),
        }
        scans_done = {name: runners[name]() for name in SCANS if name in wanted}
        statuses = [s["status"] for s in scans_done.values()]
        overall = combine_status([INCOMPLETE if s in {UNAVAILABLE, ERROR} else s for s in statuses])
        self.last_results = {
            "status": overall,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "root": str(self.root),
            "scans": scans_done,
        }
        return self.last_results

    def generate_security_report(self, out_dir: Path | None = None, fail_on: str = "high") -> str:
        """Write the Markdown, SARIF 2.1.0 and JSON reports and return the Markdown TEXT.

        Uses the last :meth:`run_all` results (running every scan first if there are none).
        Files go to ``out_dir`` (default ``<TITANS_HOME>/security``); their paths are kept in
        ``last_report_paths`` (keys ``markdown``, ``sarif``).
        """
        results = self.last_results if self.last_results is not None else self.run_all()
        target = out_dir if out_dir is not None else self.settings.home_dir / "security"
        md_path, sarif_path, markdown = report.write_reports(results, target, self.root, fail_on)
        self.last_report_paths = {
            "markdown": md_path,
            "sarif": sarif_path,
            "json": target / "security-report.json",
        }
        return markdown
