"""`titans security scan`: reports written, summary printed, exit codes follow --fail-on."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from conftest import in_ci
from titans.cli.security import EXIT_FINDINGS, EXIT_INCOMPLETE, app
from titans.config import Settings
from titans.security.findings import find_tool
from titans.store import Store

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "security"


def _cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="security")
    return root


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_cli(), ["security", "scan", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _need(*tools: str) -> None:
    for tool in tools:
        if find_tool(tool) is None:
            if in_ci():
                pytest.fail(f"{tool} is missing; CI must install it")
            pytest.skip(f"{tool} is not installed")


def _clean_repo(root: Path) -> Path:
    files = {
        "src/pkg/__init__.py": '"""A clean package."""\n',
        "pyproject.toml": '[project]\nname = "demo"\ndependencies = ["a>=1,<2"]\n',
        "deploy/docker/api.Dockerfile": (ROOT / "deploy/docker/api.Dockerfile").read_text(),
        "deploy/k8s/ingress.yaml": textwrap.dedent("""\
            apiVersion: networking.k8s.io/v1
            kind: Ingress
            metadata: {name: api}
            spec:
              tls: [{hosts: [a.example.com], secretName: a-tls}]
            """),
        "deploy/k8s/api.yaml": textwrap.dedent("""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: api}
            spec:
              template:
                spec:
                  securityContext: {runAsNonRoot: true}
                  containers: [{name: api, image: "a:1"}]
            """),
    }
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    return root


def test_offline_dependency_scan_is_incomplete_exit_0_or_3(
    tmp_path: Path, settings: Settings
) -> None:
    _need("pip-audit")
    out = tmp_path / "out"
    args = [
        "--scan",
        "dependencies",
        "-r",
        str(FIXTURES / "requirements-vulnerable.txt"),
        "--out",
        str(out),
        "--root",
        str(tmp_path),
    ]
    code, output = _run(*args)
    report = json.loads((out / "security-report.json").read_text())
    if not report["scans"]["dependencies"]["unaudited"]:
        pytest.skip("pip-audit reached its vulnerability service: the scan is not offline here")
    assert code == 0
    assert "incomplete (3 unaudited)" in output and "this is not a pass" in output
    assert report["status"] == "incomplete"
    code, output = _run(*args, "--require-complete")
    assert code == EXIT_INCOMPLETE


def test_vulnerable_pins_fail_at_their_severity(tmp_path: Path, settings: Settings) -> None:
    args = [
        "--scan",
        "dependencies",
        "-r",
        str(FIXTURES / "requirements-vulnerable.txt"),
        "--osv-db",
        str(FIXTURES / "osv-demo.json"),
        "--out",
        str(tmp_path / "o"),
    ]
    code, output = _run(*args, "--fail-on", "critical")
    assert code == EXIT_FINDINGS
    assert "critical osv-offline TITANS-TEST-0001" in output
    assert (tmp_path / "o" / "security-report.md").is_file()
    assert (tmp_path / "o" / "security-report.sarif").is_file()


def test_bandit_high_finding_exits_1(tmp_path: Path, settings: Settings) -> None:
    _need("bandit", "detect-secrets")
    root = _clean_repo(tmp_path / "repo")
    (root / "src" / "pkg" / "run.py").write_text(
        "import subprocess\n\n\ndef go(c):\n    return subprocess.call(c, shell=True)\n"
    )
    code, output = _run("--scan", "code", "--root", str(root), "--fail-on", "high")
    assert code == EXIT_FINDINGS
    assert "high bandit B602" in output
    code, _ = _run("--scan", "code", "--root", str(root), "--fail-on", "critical")
    assert code == 0  # a high finding is below a critical gate


def test_bad_fail_on_is_an_input_error(tmp_path: Path, settings: Settings) -> None:
    result = CliRunner().invoke(_cli(), ["security", "scan", "--fail-on", "severe"])
    assert result.exit_code != 0
    assert "is not a severity" in str(result.exception)


@pytest.mark.slow
def test_full_scan_of_a_clean_tree_is_incomplete_without_an_image_scanner(
    tmp_path: Path, settings: Settings
) -> None:
    """Every scan for real on a small clean tree: nothing fails, but no trivy/grype here."""
    _need("bandit", "detect-secrets", "hadolint")
    if shutil.which("trivy") or shutil.which("grype"):
        pytest.skip("an image scanner is installed: the image part is not unavailable here")
    root = _clean_repo(tmp_path / "repo")
    store = Store(settings)
    store.upgrade()
    store.dispose()
    req = tmp_path / "req.txt"
    req.write_text("requests==2.32.3\n")
    allow = tmp_path / "allow.yaml"
    allow.write_text(
        "- path: deploy/k8s/ingress.yaml\n  type: Secret Keyword\n"
        f"  hashed_secret: {hashlib.sha1(b'a-tls').hexdigest()}\n"  # detect-secrets' hash
        "  reason: names the TLS Secret, holds no value\n"
    )
    out = tmp_path / "out"
    code, output = _run(
        "--secrets-allowlist",
        str(allow),
        "--fail-on",
        "high",
        "--root",
        str(root),
        "--out",
        str(out),
        "-r",
        str(req),
        "--osv-db",
        str(FIXTURES / "osv-demo.json"),
        "--image",
        "titans-api:test",
    )
    report = json.loads((out / "security-report.json").read_text())
    statuses = {name: scan["status"] for name, scan in report["scans"].items()}
    controls = {c["id"]: c["status"] for c in report["scans"]["compliance"]["controls"]}
    assert controls == {
        "admin-routes-auth": "pass",
        "api-keys-hashed": "pass",
        "no-secrets": "pass",
        "audit-chain": "pass",
        "containers-non-root": "pass",
        "terraform-storage": "not-applicable",
        "dependencies-bounded": "pass",
        "ingress-tls": "pass",
    }
    assert statuses["containers"] == "incomplete"
    assert report["scans"]["containers"]["image_status"] == "scanner_unavailable"
    assert report["status"] == "incomplete" and code == 0
    assert "scanner_unavailable" in output
