"""The pipeline page: the loop, every command of the real Typer app, schedules and thresholds
of the given settings — and the committed docs ignore the machine's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from titans.config import MODEL_KEYS, RetrainingSettings, Settings
from titans.docs.generator import DocumentationGenerator, committed_docs
from titans.docs.pipeline_docs import LOOP, cli_commands, field_docs

REPO = Path(__file__).resolve().parents[2]


def test_every_command_of_the_real_app_is_listed() -> None:
    import typer
    from typer.testing import CliRunner

    from titans.cli import _register_groups, app

    _register_groups()
    commands = {c["path"]: c for c in cli_commands()}
    # every top-level name `titans --help` shows is a command or the prefix of some
    root = typer.main.get_command(app)
    for name in root.commands:  # type: ignore[attr-defined]
        assert any(p == f"titans {name}" or p.startswith(f"titans {name} ") for p in commands)
    help_text = CliRunner().invoke(app, ["retrain", "--help"]).output
    for sub in ("check", "run", "decide", "schedule", "status"):
        assert sub in help_text and f"titans retrain {sub}" in commands
    scheduler = commands["titans scheduler"]
    check_every = next(p for p in scheduler["params"] if p["names"] == "--check-every")
    assert check_every["default"] == "3600.0" and check_every["kind"] == "option"
    assert [p["kind"] for p in commands["titans registry promote"]["params"]][:2] == [
        "argument",
        "argument",
    ]
    for _, _, command in LOOP:  # the loop names commands that exist
        assert command in commands, command


def test_schedules_and_thresholds_come_from_the_settings(titans_home: Path) -> None:
    settings = Settings(
        retraining=RetrainingSettings(schedules={"category": "0 3 * * *"}, drift_share=0.42)
    )
    text = DocumentationGenerator(settings).generate_pipeline_docs()

    assert "| category | `0 3 * * *` |" in text
    assert (
        "| drift_share | `TITANS_RETRAINING__DRIFT_SHARE` | 0.42 | trigger: share of drifted "
        "input features in the latest window at or above this |" in text
    )
    labels = settings.retraining.min_new_labels
    assert f"| min_new_labels | `TITANS_RETRAINING__MIN_NEW_LABELS` | {labels} |" in text
    delay = settings.monitor.label_delay_seconds
    assert f"| label_delay_seconds | `TITANS_MONITOR__LABEL_DELAY_SECONDS` | {delay} |" in text
    gaps = " | ".join(str(settings.validation.for_model(k).max_fairness_gap) for k in MODEL_KEYS)
    assert f"| max_fairness_gap | {gaps} |" in text  # one column per model
    assert "checks every model's retraining triggers every 3600.0 s" in text
    assert "### `titans retrain check`" in text
    assert "(not in this CLI)" not in text
    assert str(titans_home) not in text

    default = DocumentationGenerator(Settings()).generate_pipeline_docs()
    assert "No cron retraining schedules in the settings" in default


def test_field_docs_read_the_attribute_comments() -> None:
    docs = field_docs(RetrainingSettings)
    assert docs["min_new_labels"] == (
        "trigger (business rule): at least this many new labelled predictions since training"
    )
    assert "data_retention" in docs and "lock_ttl_seconds" in docs


def test_committed_docs_ignore_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_docs: dict[str, str]
) -> None:
    home = tmp_path / "somewhere-else"
    monkeypatch.setenv("TITANS_HOME", str(home))
    monkeypatch.setenv("TITANS_RETRAINING__DRIFT_SHARE", "0.99")
    monkeypatch.setenv("TITANS_OPEN_ROUTES", '["/health"]')
    monkeypatch.setenv("TITANS_RETRAINING__SCHEDULES", '{"amount": "5 4 * * *"}')
    assert Settings().retraining.drift_share == 0.99  # the environment is really set

    docs = committed_docs(REPO)

    assert docs == fresh_docs
    assert "| drift_share | `TITANS_RETRAINING__DRIFT_SHARE` | 0.3 |" in docs["pipeline.md"]
    assert "| GET | `/ready` | open (no key) |" in docs["api.md"]
    for text in docs.values():
        assert str(home) not in text and str(REPO) not in text and "5 4 * * *" not in text
