"""Dependency scan: offline pip-audit is incomplete (never pass); the OSV export finds pins."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import in_ci
from titans.security import dependencies
from titans.security.dependencies import (
    parse_pip_audit_json,
    parse_requirements,
    scan_dependencies,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "security"
REQUIREMENTS = FIXTURES / "requirements-vulnerable.txt"
OSV = FIXTURES / "osv-demo.json"
CAPTURED_OFFLINE = FIXTURES / "pip-audit-offline.json"


def _need_pip_audit() -> None:
    if shutil.which("pip-audit") is None and dependencies.find_tool("pip-audit") is None:
        if in_ci():
            pytest.fail("pip-audit is missing; CI must install it (dev extra)")
        pytest.skip("pip-audit is not installed (dev extra)")


def test_requirements_parsing_keeps_pins_lines_and_unpinned(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text(
        "# c\n-r other.txt\nA_B[x]==1.0 ; python_version>'3'\nloose>=2\n"
        "git+https://example.invalid/x\n"
    )
    assert [(r.name, r.version, r.line) for r in parse_requirements(req)] == [
        ("A_B", "1.0", 3),
        ("loose", None, 4),
    ]


def test_captured_offline_output_lists_every_package_as_unaudited() -> None:
    # captured on this machine: pip-audit printed "No known vulnerabilities found", exit 0
    vulnerable, unaudited = parse_pip_audit_json(CAPTURED_OFFLINE.read_text())
    assert vulnerable == []
    assert [(u["name"], u["version"]) for u in unaudited] == [
        ("requests", "2.19.0"),
        ("demo-lib", "2.1.0"),
        ("listed-only", "0.9.2"),
    ]
    assert all("could not be audited" in u["reason"] for u in unaudited)


def test_online_shaped_output_yields_findings() -> None:
    report = {
        "dependencies": [
            {
                "name": "requests",
                "version": "2.19.0",
                "vulns": [
                    {
                        "id": "GHSA-j8r2-6x86-q33q",
                        "fix_versions": ["2.31.0"],
                        "aliases": ["CVE-2023-32681"],
                        "description": "leak",
                    }
                ],
            },
            {"name": "idna", "version": "3.7", "vulns": []},
        ],
        "fixes": [],
    }
    vulnerable, unaudited = parse_pip_audit_json(json.dumps(report))
    assert unaudited == []
    assert [(v["name"], v["id"]) for v in vulnerable] == [("requests", "GHSA-j8r2-6x86-q33q")]


def test_captured_offline_output_makes_the_scan_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "pip-audit"
    fake.write_text(
        f"#!/bin/sh\ncat '{CAPTURED_OFFLINE}'\necho 'No known vulnerabilities found' >&2\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(dependencies, "find_tool", lambda name, *extra: str(fake))
    result = scan_dependencies(REQUIREMENTS)
    assert result["status"] == "incomplete"
    assert {u["name"] for u in result["unaudited"]} == {"requests", "demo-lib", "listed-only"}
    assert result["tools"]["pip-audit"]["returncode"] == 0


def test_real_pip_audit_here_is_never_reported_clean() -> None:
    _need_pip_audit()
    result = scan_dependencies(REQUIREMENTS)
    assert result["status"] != "pass"
    if result["unaudited"]:  # offline (this machine): every skipped package is listed
        assert result["status"] == "incomplete"
        assert result["tools"]["pip-audit"]["skipped"] == len(result["unaudited"])
    else:  # online: requests 2.19.0 has known vulnerabilities
        assert result["status"] == "fail"
        assert any(f["extra"]["package"] == "requests" for f in result["findings"])


def test_offline_osv_database_finds_the_vulnerable_pins() -> None:
    result = scan_dependencies(REQUIREMENTS, osv_database=OSV, use_pip_audit=False)
    assert result["status"] == "fail"
    assert result["unaudited"] == []
    found = {(f["extra"]["package"], f["rule_id"], f["line"]) for f in result["findings"]}
    assert found == {("requests", "GHSA-j8r2-6x86-q33q", 2), ("demo-lib", "TITANS-TEST-0001", 3)}


def test_osv_database_clears_what_offline_pip_audit_skipped() -> None:
    _need_pip_audit()
    result = scan_dependencies(REQUIREMENTS, osv_database=OSV)
    assert result["status"] == "fail"
    assert result["unaudited"] == []
    assert "pip-audit" in result["tools"] and result["tools"]["osv-offline"]["records"] == 5


def test_clean_pins_against_the_export_pass(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("requests==2.32.3\ndemo-lib==1.4.2\n")
    result = scan_dependencies(req, osv_database=OSV, use_pip_audit=False)
    assert (result["status"], result["findings"]) == ("pass", [])


def test_unpinned_requirement_is_unaudited(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text("requests>=2\n")
    result = scan_dependencies(req, osv_database=OSV, use_pip_audit=False)
    assert result["status"] == "incomplete"
    assert "not pinned" in result["unaudited"][0]["reason"]


def test_without_any_scanner_the_result_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependencies, "find_tool", lambda name, *extra: None)
    result = scan_dependencies(REQUIREMENTS)
    assert result["status"] == "scanner_unavailable"
    assert result["tools"]["pip-audit"]["status"] == "scanner_unavailable"


def test_installed_environment_is_frozen_without_the_project_itself(tmp_path: Path) -> None:
    pins = dependencies.freeze_environment(tmp_path / "installed.txt")
    parsed = {r.name.lower(): r.version for r in parse_requirements(pins)}
    assert parsed.get("pytest")
    assert "titans-mlops" not in parsed
    assert all(version for version in parsed.values())
