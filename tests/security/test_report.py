"""The report: Markdown for people, SARIF 2.1.0 for tools; incomplete is never shown as pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from titans.config import Settings
from titans.security.report import findings_at_or_above, to_markdown, to_sarif
from titans.security.scanner import SecurityScanner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "security"


def _results(tmp_path: Path) -> dict[str, Any]:
    """Real scan results: the OSV export finds two pins; a pin nobody audited is incomplete."""
    scanner = SecurityScanner(
        root=tmp_path, osv_database=FIXTURES / "osv-demo.json", use_pip_audit=False
    )
    vulnerable = scanner.scan_dependencies(FIXTURES / "requirements-vulnerable.txt")
    loose = tmp_path / "loose.txt"
    loose.write_text("requests>=2\n")
    unaudited = SecurityScanner(root=tmp_path, use_pip_audit=False).scan_dependencies(loose)
    return {
        "status": "fail",
        "generated_at": "2026-11-27T00:00:00+00:00",
        "scans": {"dependencies": vulnerable, "extra-deps": unaudited},
    }


def test_sarif_is_2_1_0_with_rules_levels_and_locations(tmp_path: Path) -> None:
    sarif = to_sarif(_results(tmp_path), FIXTURES.parents[1])
    assert sarif["version"] == "2.1.0" and sarif["$schema"].endswith("sarif-2.1.0.json")
    (osv_run,) = [r for r in sarif["runs"] if r["tool"]["driver"]["name"] == "osv-offline"]
    by_rule = {r["ruleId"]: r for r in osv_run["results"]}
    assert set(by_rule) == {"GHSA-j8r2-6x86-q33q", "TITANS-TEST-0001"}
    assert by_rule["TITANS-TEST-0001"]["level"] == "error"  # critical
    assert by_rule["GHSA-j8r2-6x86-q33q"]["level"] == "warning"  # medium
    location = by_rule["GHSA-j8r2-6x86-q33q"]["locations"][0]["physicalLocation"]
    assert location == {
        "artifactLocation": {"uri": "fixtures/security/requirements-vulnerable.txt"},
        "region": {"startLine": 2},
    }
    rules = [r["id"] for r in osv_run["tool"]["driver"]["rules"]]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in osv_run["results"])
    summary = sarif["runs"][-1]
    assert summary["invocations"][0]["executionSuccessful"] is False  # extra-deps incomplete
    assert {"level": "warning", "message": {"text": "extra-deps: incomplete"}} in (
        summary["invocations"][0]["toolExecutionNotifications"]
    )


def test_markdown_names_statuses_findings_and_unaudited(tmp_path: Path) -> None:
    text = to_markdown(_results(tmp_path), "high")
    assert "- overall status: **fail**" in text
    assert "| dependencies | fail | 2 |" in text and "| extra-deps | incomplete | 0 |" in text
    assert "- findings at or above high: 1" in text  # the critical one; the medium is below
    assert "unaudited packages (1): requests" in text
    relative = to_markdown(_results(tmp_path), "high", FIXTURES.parents[1])
    assert "| fixtures/security/requirements-vulnerable.txt:2 |" in relative


def test_gate_counts_unknown_severity_as_high(tmp_path: Path) -> None:
    results = _results(tmp_path)
    assert [f["rule_id"] for f in findings_at_or_above(results, "high")] == ["TITANS-TEST-0001"]
    results["scans"]["dependencies"]["findings"][0]["severity"] = "unknown"
    assert len(findings_at_or_above(results, "high")) == 2
    assert len(findings_at_or_above(results, "critical")) == 1


def test_generate_security_report_writes_both_files(tmp_path: Path, settings: Settings) -> None:
    scanner = SecurityScanner(
        settings, root=tmp_path, osv_database=FIXTURES / "osv-demo.json", use_pip_audit=False
    )
    scanner.last_results = _results(tmp_path)
    markdown = scanner.generate_security_report()
    paths = scanner.last_report_paths
    assert paths["markdown"] == settings.home_dir / "security" / "security-report.md"
    assert paths["markdown"].read_text() == markdown
    assert json.loads(paths["sarif"].read_text())["version"] == "2.1.0"
    assert json.loads(paths["json"].read_text())["status"] == "fail"
