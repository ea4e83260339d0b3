"""`titans docs build` / `check`, and the committed docs/generated being current."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from titans.cli.docs import app
from titans.docs.generator import DETERMINISTIC_FILES, stale_files

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "docs" / "generated"


def test_the_committed_docs_are_current(fresh_docs: dict[str, str]) -> None:
    stale = stale_files(fresh_docs, COMMITTED)
    assert not stale, (
        f"{stale[0][0].relative_to(REPO)} {stale[0][1]}: run `titans docs build` and commit"
    )
    assert sorted(p.name for p in COMMITTED.glob("*.md")) == sorted(DETERMINISTIC_FILES)


def test_build_then_check_then_staleness_named(
    titans_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out, as CI runs it
    runner = CliRunner()
    out = Path("generated")

    built = runner.invoke(app, ["build", "--out", str(out), "--root", str(REPO)])
    assert built.exit_code == 0, built.output
    assert sorted(p.name for p in out.iterdir()) == sorted(DETERMINISTIC_FILES)
    assert "generated/api.md: written" in built.output
    assert "model cards: none (the configured registry has no models)" in built.output
    assert not (titans_home / "mlflow.db").exists()

    again = runner.invoke(app, ["build", "--out", str(out), "--root", str(REPO), "--no-cards"])
    assert "generated/pipeline.md: unchanged" in again.output

    ok = runner.invoke(app, ["check", "--out", str(out), "--root", str(REPO)])
    assert ok.exit_code == 0, ok.output
    assert "up to date (3 files)" in ok.output

    pipeline = out / "pipeline.md"
    pipeline.write_text(pipeline.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    stale = runner.invoke(app, ["check", "--out", str(out), "--root", str(REPO)])
    assert stale.exit_code == 1
    lines = stale.output.strip().splitlines()
    assert len(lines) == 1
    assert "generated/pipeline.md is out of date; run `titans docs build`" in lines[0]

    pipeline.unlink()
    (out / "notes.md").write_text("mine\n", encoding="utf-8")
    missing = runner.invoke(app, ["check", "--out", str(out), "--root", str(REPO)])
    assert missing.exit_code == 1
    assert "generated/pipeline.md is missing (and 1 more)" in missing.output


def test_build_writes_model_cards_of_a_registry_with_models(
    titans_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from titans.config import Settings

    settings = Settings()
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_registered_model("titans-category")
    client.create_model_version("titans-category", source=str(titans_home / "none"))
    out = tmp_path / "out"

    result = CliRunner().invoke(
        app, ["build", "--out", str(out), "--root", str(REPO), "--cards-out", str(tmp_path / "c")]
    )

    assert result.exit_code == 0, result.output
    assert "model cards: 2 files" in result.output
    card = (tmp_path / "c" / "titans-category.md").read_text(encoding="utf-8")
    assert "## Version 1 (newest)" in card
    assert (tmp_path / "c" / "titans-category.html").is_file()
    # cards are registry state: the checked set is unchanged by them
    assert sorted(p.name for p in out.iterdir()) == sorted(DETERMINISTIC_FILES)
