"""Architecture diagrams: the import graph read with ast, and Compose services and links."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from titans.config import Settings
from titans.docs.diagrams import compose_mermaid, import_graph, import_mermaid, read_compose
from titans.docs.generator import DocumentationGenerator
from titans.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "docs" / "compose.yaml"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_import_graph_resolves_absolute_relative_and_lazy_imports(tmp_path: Path) -> None:
    package = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg import serving\n",  # the package root is no group
            "base.py": "import os\n",
            "store/__init__.py": "from .models import Row\n",  # within its own group
            "store/models.py": "from ..base import x\n",  # relative, two levels
            "serving/app.py": "def f():\n    import pkg.store.models\n",  # lazy
            "serving/routes/__init__.py": "from ... import cli\n",  # `from pkg import cli`
            "cli.py": "from pkg import serving, base\nfrom pkg.nothing import y\n",
        },
    )

    graph = import_graph(package, package="pkg")

    assert graph.groups == ["base", "cli", "serving", "store"]
    assert graph.edges == {
        ("cli", "base"): 1,
        ("cli", "serving"): 1,
        ("serving", "cli"): 1,
        ("serving", "store"): 1,
        ("store", "base"): 1,
    }
    assert graph.imported_by("base") == ["cli", "store"]
    # base imports nothing and two of the three others import it: a foundation, not drawn
    assert graph.foundations == ["base"]
    diagram = import_mermaid(graph)
    assert "g_serving --> g_store" in diagram and "g_cli --> g_serving" in diagram
    assert "g_base" not in diagram


def test_a_module_that_does_not_parse_is_named(tmp_path: Path) -> None:
    package = _write(tmp_path / "pkg", {"ok.py": "x = 1\n", "bad/mod.py": "def (:\n"})
    with pytest.raises(ConfigError, match=r"pkg/bad/mod.py does not parse \(line 1"):
        import_graph(package, package="pkg")


def test_the_real_package_graph_follows_the_layering() -> None:
    graph = import_graph(REPO / "src" / "titans")

    for group in ("cli", "serving", "registry", "store", "monitoring", "docs"):
        assert group in graph.groups
    assert ("cli", "serving") in graph.edges
    assert ("serving", "models") in graph.edges
    assert ("docs", "serving") in graph.edges
    # the ops store sits below everything that uses it
    assert not [b for (a, b) in graph.edges if a == "store" and b not in ("config", "errors")]
    assert "config" in graph.foundations


def test_compose_services_and_links_in_both_spec_forms() -> None:
    services = {s.name: s for s in read_compose(FIXTURE) or []}

    assert sorted(services) == ["api", "postgres", "redis", "sidecar", "worker"]
    api, worker = services["api"], services["worker"]
    assert api.depends_on == [("postgres", "service_healthy"), ("redis", "service_started")]
    assert api.networks == ["back", "front"] and api.ports == ["8000:8000"]
    assert worker.depends_on == [("api", None), ("postgres", None)]  # list form
    assert worker.networks == ["back"]  # mapping form
    assert worker.links == ["redis"] and worker.build == "deploy/docker/api.Dockerfile"
    assert services["redis"].networks == ["default"]  # no networks: the default one
    assert services["sidecar"].networks == [] and services["sidecar"].links == ["api"]

    diagram = compose_mermaid(list(services.values()))
    assert "s_api -->|service_healthy| s_postgres" in diagram
    assert "s_worker --> s_api" in diagram
    assert "s_worker -.->|link| s_redis" in diagram
    assert "s_api -.- n_front" in diagram and "s_redis -.- n_default" in diagram


def test_compose_missing_and_broken(tmp_path: Path) -> None:
    assert read_compose(tmp_path / "compose.yaml") is None
    broken = tmp_path / "broken.yaml"
    broken.write_text("services:\n  api:\n    depends_on: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml: services.api.depends_on must be a list"):
        read_compose(broken)
    broken.write_text("version: '3'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no `services:` mapping"):
        read_compose(broken)


def test_architecture_page_draws_compose_or_says_it_is_missing(
    tmp_path: Path, settings: Settings
) -> None:
    without = DocumentationGenerator(settings, root=tmp_path)
    text = without.update_architecture_diagrams()
    assert "`deploy/compose.yaml` does not exist, so there is no service diagram" in text
    assert "postgres" not in text

    (tmp_path / "deploy").mkdir()
    shutil.copy(FIXTURE, tmp_path / "deploy" / "compose.yaml")
    out = tmp_path / "out"
    text = DocumentationGenerator(settings, root=tmp_path).update_architecture_diagrams(out)

    assert (out / "architecture.md").read_text(encoding="utf-8") == text
    assert "s_api -->|service_healthy| s_postgres" in text
    assert "| api | titans-api:test | 8000:8000 | postgres (service_healthy), redis" in text
    assert "g_cli --> g_serving" in text
    assert str(tmp_path) not in text  # no machine paths
