"""Model cards from a real registry: a trained, validated, approved and promoted model."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient

from _support.serving import promote, serving_settings
from titans.config import Settings
from titans.docs.generator import DocumentationGenerator
from titans.errors import InputError, ModelNotFoundError
from titans.governance.governance import ModelGovernanceManager


@dataclass
class Trained:
    settings: Settings
    name: str
    version: str
    tags: dict[str, str]
    request_id: str


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """titans-amount version 1: trained, validated, approved by bob, promoted to production."""
    from threadpoolctl import threadpool_limits

    from titans.data.synth import generate
    from titans.models.train import train_models
    from titans.validation import ModelValidationPipeline

    settings = serving_settings(tmp_path_factory.mktemp("docs-home"), api_keys=[])
    with threadpool_limits(1):
        [result] = train_models(generate(3000, seed=1), models=["amount"], settings=settings)
        ModelValidationPipeline(settings).run_full_validation(result.registry_uri)
    promote(settings, result.registered_name, str(result.version))
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    version = client.get_model_version(result.registered_name, str(result.version))
    [request] = ModelGovernanceManager(settings).requests(result.registered_name)
    return Trained(settings, result.registered_name, str(result.version), version.tags, request.id)


def test_markdown_card_holds_the_registry_facts(trained: Trained) -> None:
    card = DocumentationGenerator(trained.settings).generate_model_cards(trained.name)

    tags = trained.tags
    assert card.startswith("# Model card: titans-amount\n")
    assert "## Intended use" in card
    assert f"## Version {trained.version} (@production)" in card
    assert f"- Data version: {tags['titans.data_version']}" in card
    assert f"| {trained.version} | Production | production | passed | approved |" in card
    score, baseline = float(tags["titans.primary_score"]), float(tags["titans.baseline_score"])
    assert f"model {score:.4g}, trivial baseline {baseline:.4g}" in card
    assert "- Status: passed" in card
    assert "| payment_method |" in card  # fairness per segment feature
    assert f"| {trained.request_id[:8]} | {trained.version} | approved | ann | bob |" in card
    assert "### Limitations" in card and "synthetic transactions" in card
    history = card.split("## History (audit trail)", 1)[1]
    actions = re.findall(r"^\| \d+ \| [0-9: -]+ \| (\w+) \| ([\w.]+) \| (\S+) \|$", history, re.M)
    assert ("ann", "approval.requested", trained.version) in actions
    assert ("bob", "approval.granted", trained.version) in actions
    assert ("ann", "registry.promoted", trained.version) in actions, actions


def test_html_card_is_a_page_of_the_same_facts(trained: Trained, tmp_path: Path) -> None:
    generator = DocumentationGenerator(trained.settings)
    page = generator.generate_model_cards("amount", fmt="html")  # the short key works too

    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Model card: titans-amount</title>" in page
    assert "<h1>Model card: titans-amount</h1>" in page
    assert f"<li>Data version: {trained.tags['titans.data_version']}</li>" in page
    assert re.search(r"<th>metric</th>\s*<th>model</th>\s*<th>baseline</th>", page)
    assert "<script" not in page

    written = generator.write_model_cards(tmp_path / "cards")
    assert sorted(p.name for p in written) == ["titans-amount.html", "titans-amount.md"]
    markdown = (tmp_path / "cards" / "titans-amount.md").read_text(encoding="utf-8")
    assert f"- Data version: {trained.tags['titans.data_version']}" in markdown


def test_unknown_model_and_format(trained: Trained) -> None:
    generator = DocumentationGenerator(trained.settings)
    with pytest.raises(ModelNotFoundError, match="no registered model 'titans-nothing'"):
        generator.generate_model_cards("titans-nothing")
    with pytest.raises(InputError, match="format 'pdf' is unknown"):
        generator.generate_model_cards(trained.name, fmt="pdf")  # type: ignore[arg-type]


def test_no_registry_means_no_cards(settings: Settings, tmp_path: Path) -> None:
    generator = DocumentationGenerator(settings)
    assert generator.registered_models() == []
    assert generator.write_model_cards(tmp_path / "cards") == []
    assert not (tmp_path / "cards").exists()
    assert not (settings.home_dir / "mlflow.db").exists()  # listing created no registry
