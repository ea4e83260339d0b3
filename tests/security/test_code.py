"""Code scans: bandit (medium/high fail) and detect-secrets with a reasoned allowlist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import in_ci
from titans.errors import ConfigError
from titans.security import code
from titans.security.scanner import SecurityScanner

ROOT = Path(__file__).resolve().parents[2]
# assembled at run time so this test file itself holds no secret-shaped literal
FAKE_AWS_KEY = "AKIA" + "Z7QK2M4N6P8R3T5V"


def _need(tool: str) -> None:
    if code.find_tool(tool) is None:
        if in_ci():
            pytest.fail(f"{tool} is missing; CI must install it (dev extra)")
        pytest.skip(f"{tool} is not installed (dev extra)")


def test_bandit_fails_on_a_planted_high_severity_call(tmp_path: Path) -> None:
    _need("bandit")
    src = tmp_path / "src"
    src.mkdir()
    (src / "runner.py").write_text(
        "import subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n"
    )
    result = code.scan_bandit(src, config=ROOT / "pyproject.toml")
    assert result["status"] == "fail"
    (finding,) = [f for f in result["findings"] if f["rule_id"] == "B602"]
    assert (finding["severity"], finding["line"], finding["failing"]) == ("high", 5, True)


def test_bandit_low_severity_is_listed_but_does_not_fail(tmp_path: Path) -> None:
    _need("bandit")
    src = tmp_path / "src"
    src.mkdir()
    (src / "checks.py").write_text("def f(x):\n    assert x\n    return x\n")
    result = code.scan_bandit(src)
    assert result["status"] == "pass"
    assert [(f["rule_id"], f["severity"], f["failing"]) for f in result["findings"]] == [
        ("B101", "low", False)
    ]


def test_bandit_on_the_real_src_reports_the_real_result() -> None:
    _need("bandit")
    result = code.scan_bandit(ROOT / "src", config=ROOT / "pyproject.toml")
    assert result["status"] in {"pass", "fail"}, result
    assert result["files_scanned"] >= 50
    failing = [
        f"{f['rule_id']} {f['severity']} {f['path']}:{f['line']}"
        for f in result["findings"]
        if f["failing"]
    ]
    # the verdict must follow the findings: fail exactly when medium/high findings exist
    assert (result["status"] == "fail") == bool(failing)
    print(f"bandit on src: {result['status']}; failing findings: {failing}")


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "app").mkdir(parents=True)
    (root / "app" / "settings.py").write_text(f'AWS_ACCESS_KEY_ID = "{FAKE_AWS_KEY}"\n')
    (root / "app" / "ok.py").write_text("x = 1\n")
    return root


def test_planted_secret_fails(tmp_path: Path) -> None:
    _need("detect-secrets")
    root = _tree(tmp_path)
    empty = tmp_path / "allow.yaml"
    empty.write_text("[]\n")
    result = code.scan_secrets(root, [empty])
    assert result["status"] == "fail"
    assert [(f["path"], f["line"], f["rule_id"]) for f in result["findings"]] == [
        ("app/settings.py", 1, "AWS Access Key")
    ]


def test_allowlisted_fake_secret_passes_with_its_reason(tmp_path: Path) -> None:
    _need("detect-secrets")
    root = _tree(tmp_path)
    first = code.scan_secrets(root, [_empty(tmp_path)])
    hashed = first["findings"][0]["extra"]["hashed_secret"]
    allow = tmp_path / "allow.yaml"
    allow.write_text(
        yaml.safe_dump(
            [
                {
                    "path": "app/settings.py",
                    "type": "AWS Access Key",
                    "hashed_secret": hashed,
                    "reason": "fake key for a test",
                }
            ]
        )
    )
    result = code.scan_secrets(root, [allow])
    assert result["status"] == "pass"
    assert result["allowlisted"] == [
        {
            "path": "app/settings.py",
            "line": 1,
            "type": "AWS Access Key",
            "reason": "fake key for a test",
        }
    ]


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.yaml"
    path.write_text("[]\n")
    return path


def test_allowlist_entry_without_reason_is_refused(tmp_path: Path) -> None:
    allow = tmp_path / "allow.yaml"
    allow.write_text(yaml.safe_dump([{"path": "a", "type": "b", "hashed_secret": "c"}]))
    with pytest.raises(ConfigError, match="lacks reason"):
        code.load_allowlist(allow)


def test_environment_and_tool_directories_are_not_scanned(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    for skipped in (".venv", ".tools", ".git"):
        (root / skipped).mkdir()
        (root / skipped / "leak.py").write_text(f'K = "{FAKE_AWS_KEY}"\n')
    files = code.repository_files(root)
    assert sorted(files) == ["app/ok.py", "app/settings.py"]


def test_shipped_allowlist_entries_all_carry_reasons() -> None:
    entries = code.load_allowlist(code.DEFAULT_ALLOWLIST)
    assert entries and all(len(e.reason) > 10 for e in entries)


def test_scan_code_combines_bandit_and_secrets(tmp_path: Path) -> None:
    _need("bandit")
    _need("detect-secrets")
    root = _tree(tmp_path)
    (root / "src").mkdir()
    (root / "src" / "m.py").write_text(
        "import pickle\n\n\ndef load(b):\n    return pickle.loads(b)\n"
    )
    scanner = SecurityScanner(root=root, secrets_allowlist=[_empty(tmp_path)])
    result = scanner.scan_code()
    assert result["parts"]["bandit"]["status"] == "fail"  # B301 pickle: medium
    assert result["parts"]["secrets"]["status"] == "fail"
    assert result["status"] == "fail"


def test_the_allowlist_file_itself_is_not_scanned(tmp_path: Path) -> None:
    _need("detect-secrets")
    root = tmp_path / "repo"
    root.mkdir()
    allow = root / "allow.yaml"
    allow.write_text(
        "- path: x\n  type: Secret Keyword\n"
        "  hashed_secret: 9d4e1e23bd5b727046a9e3b4b7db57bd8d6ee684\n  reason: a test entry\n"
    )
    (root / "copy.yaml").write_text(allow.read_text())
    result = code.scan_secrets(root, [allow])
    assert {f["path"] for f in result["findings"]} == {"copy.yaml"}
