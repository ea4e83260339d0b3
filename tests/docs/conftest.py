"""Shared by the docs tests: the repository root and one rendering of the committed docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from titans.docs.generator import committed_docs

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "docs"


@pytest.fixture(scope="session")
def fresh_docs() -> dict[str, str]:
    """The committed docs as `titans docs build` renders them now (default settings)."""
    return committed_docs(REPO)
