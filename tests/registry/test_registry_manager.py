"""ModelRegistryManager on real trained models: gates, refusals, rollback, comparison, locks.

Two amount models are trained once per module (different data seeds); each test works on its
own copy of that MLflow database and its own ops store, so aliases and audit never leak.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from sqlalchemy import select
from typer.testing import CliRunner

from titans.cli import _register_groups, app
from titans.config import GovernanceIdentity, Settings
from titans.data.synth import generate
from titans.errors import InputError, ModelNotFoundError
from titans.governance.audit import AuditLogger
from titans.governance.governance import ModelGovernanceManager
from titans.models.base import get_spec
from titans.models.train import TrainingResult, load_holdout, train_models
from titans.notifications import Notification, Notifier
from titans.registry import ModelRegistryManager
from titans.store import Store
from titans.store.models import Alert, Lock

NAME = "titans-amount"
#: builds Settings on a fresh copy of the template registry (policy YAML, overrides)
SettingsFactory = Callable[..., Settings]
ROWS = 4_000

runner = CliRunner()
_register_groups()


@dataclass
class Template:
    home: Path
    v1: TrainingResult
    v2: TrainingResult


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Versions 1 and 2 of titans-amount, trained on two generated ledgers."""
    home = tmp_path_factory.mktemp("registry-template")
    settings = Settings(home=home)
    (v1,) = train_models(generate(ROWS, seed=1), models=["amount"], seed=1, settings=settings)
    (v2,) = train_models(generate(ROWS, seed=2), models=["amount"], seed=2, settings=settings)
    assert (v1.version, v2.version) == ("1", "2")
    return Template(home, v1, v2)


def _policy_file(directory: Path, body: str) -> Path:
    path = directory / "policy.yaml"
    path.write_text(body, encoding="utf-8")
    return path


NEVER_AUTO = "version: 1\ndefault:\n  auto_approve:\n    enabled: false\n"


@pytest.fixture
def make_settings(template: Template, tmp_path: Path) -> SettingsFactory:
    """Settings on a fresh copy of the template registry and an empty ops store."""
    home = tmp_path / "home"
    home.mkdir()
    with (
        closing(sqlite3.connect(template.home / "mlflow.db")) as source,
        closing(sqlite3.connect(home / "mlflow.db")) as copy,
    ):
        source.backup(copy)

    def build(policy: str | None = None, **overrides: Any) -> Settings:
        if policy is not None:
            overrides["governance_policy_path"] = _policy_file(tmp_path, policy)
        return Settings(home=home, **overrides)

    return build


@pytest.fixture
def settings_(make_settings: SettingsFactory) -> Settings:
    return make_settings()


def _manager(settings: Settings, store: Store | None = None) -> ModelRegistryManager:
    return ModelRegistryManager(settings, store=store)


def _tags(settings: Settings, version: str) -> dict[str, str]:
    return dict(MlflowClient(settings.tracking_uri).get_model_version(NAME, version).tags)


def _actions(manager: ModelRegistryManager) -> list[str]:
    return [e.action for e in manager.audit.entries()]


def _registry_entries(manager: ModelRegistryManager) -> list[Any]:
    return [e for e in manager.audit.entries() if e.action.startswith("registry.")]


# ------------------------------------------------------------------ register


def test_register_model_tags_the_version_from_its_run(settings_: Settings, template: Template):
    manager = _manager(settings_)
    mv = manager.register_model(
        f"runs:/{template.v1.run_id}/model", "titans-amount-copy", "a copy for review"
    )
    assert (mv.name, str(mv.version)) == ("titans-amount-copy", "1")
    assert mv.tags["stage"] == "None"
    assert mv.tags["titans.data_version"] == template.v1.data_version
    assert mv.tags["titans.git_commit"] == _tags(settings_, "1")["titans.git_commit"]
    assert mv.tags["titans.primary_metric"] == "mae"
    assert "mae=" in mv.tags["titans.metrics"]
    assert float(mv.tags["titans.primary_score"]) == pytest.approx(template.v1.evaluation.score)
    assert mv.description == "a copy for review"
    (entry,) = [e for e in manager.audit.entries() if e.action == "registry.registered"]
    assert (entry.model_name, entry.model_version) == ("titans-amount-copy", "1")
    assert entry.details["run_id"] == template.v1.run_id


def test_register_model_refuses_an_unknown_uri(settings_: Settings) -> None:
    with pytest.raises(ModelNotFoundError, match="could not register"):
        _manager(settings_).register_model("runs:/0123456789abcdef/model", "titans-x")


# ------------------------------------------------------------------ promotion


def test_first_version_goes_to_staging_then_production_by_policy(settings_: Settings) -> None:
    manager = _manager(settings_)
    assert manager.promote_model(NAME, "1", "staging", actor="ann") is True
    assert manager.last_refusal is None
    assert manager.get_alias_version(NAME, "staging") == "1"
    assert _tags(settings_, "1")["stage"] == "Staging"
    assert _tags(settings_, "1")["validation_status"] == "passed"

    assert manager.promote_model(NAME, 1, "Production", actor="ann") is True
    assert manager.get_production_model(NAME) == f"models:/{NAME}/1"
    assert manager.get_alias_version(NAME, "staging") is None  # it moved on
    assert _tags(settings_, "1")["stage"] == "Production"
    versions = {v["version"]: v for v in manager.get_versions(NAME)}
    assert versions["1"]["aliases"] == ["production"] and versions["2"]["aliases"] == []

    promoted = [e for e in manager.audit.entries() if e.action == "registry.promoted"]
    assert [(e.details["alias"], e.details["to_version"], e.actor) for e in promoted] == [
        ("staging", "1", "ann"),
        ("production", "1", "ann"),
    ]
    gates = promoted[0].details["gates"]
    assert gates["validation"]["passed"] is True
    assert gates["approval"]["granted_by"] == "policy"
    assert gates["improvement"]["policy_improvement"] is None  # nothing in production yet
    assert "approval.granted" in _actions(manager)
    with manager.store.session() as s:
        alerts = s.scalars(select(Alert).order_by(Alert.id)).all()
    assert [(a.severity, a.status) for a in alerts] == [("info", "resolved")] * 2
    assert "promoted to Production" in alerts[1].name
    assert manager.audit.verify().ok


def test_second_production_version_archives_the_first(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    manager = _manager(settings)
    comparison = manager.compare_models(NAME, "1", "2")
    gain = comparison["primary"]["improvement"]
    assert gain > 0, f"version 2 should beat version 1 on its holdout: {comparison['primary']}"
    assert manager.promote_model(NAME, "1", "production")
    assert manager.promote_model(NAME, "2", "production") is True, manager.last_refusal
    assert manager.get_production_model(NAME) == f"models:/{NAME}/2"
    assert _tags(settings, "1")["stage"] == "Archived"
    assert _tags(settings, "2")["stage"] == "Production"
    last = _registry_entries(manager)[-1]
    assert (last.details["from_version"], last.details["to_version"]) == ("1", "2")
    assert last.details["archived_version"] == "1"
    # the policy judged the improvement measured on version 2's holdout, as compare_models does
    improvement = last.details["gates"]["improvement"]
    assert improvement["production_version"] == "1"
    assert improvement["policy_improvement"] == pytest.approx(gain)
    assert last.details["gates"]["validation"]["champion_uri"] == f"models:/{NAME}/1"


def test_policy_threshold_above_the_measured_improvement_refuses(
    make_settings: SettingsFactory,
) -> None:
    base = make_settings()
    gain = _manager(base).compare_models(NAME, "1", "2")["primary"]["improvement"]
    policy = (
        "version: 1\ndefault:\n  auto_approve:\n"
        f"    min_primary_improvement: {max(gain, 0) + 1.0}\n"
        "    first_version_auto_approve: true\n"
    )
    manager = _manager(make_settings(policy=policy))
    assert manager.promote_model(NAME, "1", "production")
    assert manager.promote_model(NAME, "2", "production") is False
    refusal = manager.last_refusal
    assert refusal is not None and refusal.gate == "approval"
    assert "improves on production by" in refusal.reason
    assert manager.get_alias_version(NAME, "production") == "1"
    assert _tags(manager.settings, "2")["stage"] == "None"


def test_refused_when_validation_fails(make_settings: SettingsFactory) -> None:
    # an MAE floor of 1 currency unit: no amount model gets there
    settings = make_settings(validation={"amount": {"primary_floor": 1.0}})
    manager = _manager(settings)
    assert manager.promote_model(NAME, "1", "staging", actor="ann") is False
    refusal = manager.last_refusal
    assert refusal is not None
    assert (refusal.gate, refusal.model, refusal.version, refusal.stage) == (
        "validation",
        NAME,
        "1",
        "Staging",
    )
    assert "performance" in refusal.reason and "floor" in refusal.reason
    assert manager.get_alias_version(NAME, "staging") is None
    assert _tags(settings, "1")["stage"] == "None"
    assert _tags(settings, "1")["validation_status"] == "failed"
    (entry,) = [e for e in manager.audit.entries() if e.action == "registry.promotion_refused"]
    assert entry.details["gate"] == "validation" and entry.details["reason"] == refusal.reason
    assert entry.actor == "ann"
    assert "approval.requested" not in _actions(manager)  # the gates stop at the first refusal


def test_refused_without_approval_when_the_policy_never_auto_approves(
    make_settings: SettingsFactory,
) -> None:
    manager = _manager(make_settings(policy=NEVER_AUTO))
    assert manager.promote_model(NAME, "1", "production") is False
    refusal = manager.last_refusal
    assert refusal is not None and refusal.gate == "approval"
    assert "disables auto-approval" in refusal.reason
    assert "titans governance request" in refusal.reason
    assert manager.get_alias_version(NAME, "production") is None
    assert _actions(manager)[-2:] == ["approval.policy_declined", "registry.promotion_refused"]


def test_human_approval_by_another_identity_lets_the_promotion_pass(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(
        policy=NEVER_AUTO,
        governance_identities=[
            GovernanceIdentity(name="ann", roles=["requester"]),
            GovernanceIdentity(name="bob", roles=["approver"]),
        ],
    )
    manager = _manager(settings)
    governance = ModelGovernanceManager(settings, manager.store)
    request_id = governance.request_model_approval(f"models:/{NAME}/1", "beats baseline", "ann")
    assert manager.promote_model(NAME, "1", "production", actor="ann") is False  # still pending
    governance.approve(request_id, "bob", "looked at the report")
    assert manager.promote_model(NAME, "1", "production", actor="ann") is True
    promoted = _registry_entries(manager)[-1]
    assert promoted.action == "registry.promoted"
    assert promoted.details["gates"]["approval"] == {"granted_by": "approval request"}
    assert manager.audit.verify().ok


def test_refused_for_unknown_versions_and_models(settings_: Settings) -> None:
    manager = _manager(settings_)
    assert manager.promote_model(NAME, "99", "production") is False
    assert manager.last_refusal is not None and manager.last_refusal.gate == "exists"
    assert "no version '99'" in manager.last_refusal.reason
    assert manager.promote_model("titans-nope", "1", "staging") is False
    assert manager.last_refusal is not None and manager.last_refusal.gate == "exists"
    refused = [e for e in manager.audit.entries() if e.action == "registry.promotion_refused"]
    assert [(e.model_name, e.details["gate"]) for e in refused] == [
        (NAME, "exists"),
        ("titans-nope", "exists"),
    ]
    assert manager.get_alias_version(NAME, "production") is None


def test_a_stage_other_than_staging_or_production_is_bad_input(settings_: Settings) -> None:
    manager = _manager(settings_)
    with pytest.raises(InputError, match="use Staging or Production"):
        manager.promote_model(NAME, "1", "Archived")
    assert manager.last_refusal is not None and manager.last_refusal.gate == "stage"
    (entry,) = manager.audit.entries()
    assert (entry.action, entry.details["gate"]) == ("registry.promotion_refused", "stage")
    assert _tags(settings_, "1")["stage"] == "None"


def test_promoting_the_version_already_there_is_refused(settings_: Settings) -> None:
    manager = _manager(settings_)
    assert manager.promote_model(NAME, "1", "production")
    assert manager.promote_model(NAME, "1", "production") is False
    assert manager.last_refusal is not None and manager.last_refusal.gate == "stage"
    assert manager.promote_model(NAME, "1", "staging") is False
    assert "rollback" in manager.last_refusal.reason


class _Recorder:
    """A notification channel that keeps what it receives (AlertManager plugs in the same way)."""

    def __init__(self) -> None:
        self.received: list[Notification] = []

    def send(self, notification: Notification) -> None:
        self.received.append(notification)


class _Unreachable:
    """A channel whose endpoint is down."""

    def send(self, notification: Notification) -> None:
        raise ConnectionError("slack.example is unreachable")


def test_a_failing_channel_never_fails_the_promotion(settings_: Settings) -> None:
    store = Store(settings_)
    recorder = _Recorder()
    notifier = Notifier(settings_, store, channels=[_Unreachable(), recorder])
    manager = ModelRegistryManager(settings_, store=store, notifier=notifier)
    assert manager.promote_model(NAME, "1", "staging") is True
    (note,) = recorder.received
    assert (note.severity, note.details["version"], note.details["stage"]) == (
        "info",
        "1",
        "Staging",
    )
    with store.session() as s:
        row = s.get(Alert, note.alert_id)
    assert row is not None and row.status == "resolved"
    assert "slack.example is unreachable" in row.details["delivery_errors"][0]
    with pytest.raises(InputError, match="severity 'fatal' is unknown"):
        notifier.notify("fatal", "x", {})


# ------------------------------------------------------------------ rollback


def _two_productions(settings: Settings) -> ModelRegistryManager:
    """Version 1 then version 2 in production (version 2 approved by a person)."""
    manager = _manager(settings)
    assert manager.promote_model(NAME, "1", "production"), manager.last_refusal
    governance = ModelGovernanceManager(settings, manager.store)
    request_id = governance.request_model_approval(f"models:/{NAME}/2", "retrained", "ann")
    governance.approve(request_id, "bob")
    assert manager.promote_model(NAME, "2", "production"), manager.last_refusal
    return manager


_PEOPLE = [
    GovernanceIdentity(name="ann", roles=["requester"]),
    GovernanceIdentity(name="bob", roles=["approver"]),
]


def test_rollback_to_a_previously_validated_version(make_settings: SettingsFactory) -> None:
    settings = make_settings(governance_identities=_PEOPLE)
    manager = _two_productions(settings)
    assert manager.rollback_model(NAME, "1", actor="oncall", reason="MAE alert") is True
    assert manager.get_production_model(NAME) == f"models:/{NAME}/1"
    assert _tags(settings, "1")["stage"] == "Production"
    assert _tags(settings, "2")["stage"] == "Archived"
    entry = _registry_entries(manager)[-1]
    assert (entry.action, entry.actor) == ("registry.rolled_back", "oncall")
    assert (entry.details["from_version"], entry.details["to_version"]) == ("2", "1")
    assert entry.details["reason"] == "MAE alert"
    with manager.store.session() as s:
        last = s.scalars(select(Alert).order_by(Alert.id.desc())).first()
    assert last is not None and (last.severity, last.status) == ("warning", "firing")
    assert "rolled back to version 1" in last.name
    assert manager.audit.verify().ok


def test_rollback_refusals(make_settings: SettingsFactory) -> None:
    settings = make_settings(governance_identities=_PEOPLE)
    manager = _manager(settings)
    assert manager.rollback_model(NAME, "1") is False  # nothing in production yet
    assert manager.last_refusal is not None and manager.last_refusal.gate == "stage"

    manager = _two_productions(settings)
    first_run = manager.get_versions(NAME)[0]["run_id"]
    never_validated = manager.register_model(f"runs:/{first_run}/model", NAME)
    cases = {
        "2": "stage",  # the current production version
        str(never_validated.version): "validation",
        "42": "exists",
    }
    for version, gate in cases.items():
        assert manager.rollback_model(NAME, version) is False
        assert manager.last_refusal is not None
        assert (manager.last_refusal.gate, manager.last_refusal.action) == (gate, "rollback")
    assert "never validated" in manager.audit.entries()[-2].details["reason"]
    refused = [e for e in manager.audit.entries() if e.action == "registry.rollback_refused"]
    assert [e.details["gate"] for e in refused] == ["stage", "stage", "validation", "exists"]
    assert manager.get_production_model(NAME) == f"models:/{NAME}/2"


def test_get_production_model_without_a_production_version(settings_: Settings) -> None:
    manager = _manager(settings_)
    with pytest.raises(ModelNotFoundError, match="no production version; promote one"):
        manager.get_production_model(NAME)
    with pytest.raises(ModelNotFoundError, match="titans-nope has no production version"):
        manager.get_production_model("titans-nope")


# ------------------------------------------------------------------ comparison


def test_compare_models_re_evaluates_both_on_the_newer_holdout(
    settings_: Settings, template: Template
) -> None:
    manager = _manager(settings_)
    result = manager.compare_models(NAME, "1", "2")
    assert {
        "metrics",
        "primary",
        "segments",
        "agreement_rate",
        "latency_ms_per_row",
        "artifact_bytes",
        "holdout",
    } <= set(result)
    assert template.v2.run_id in result["holdout"]["source"]
    # version 2 on its own holdout reproduces its logged score; version 1 is re-scored there
    assert result["primary"]["version2"] == pytest.approx(template.v2.evaluation.score)
    spec = get_spec("amount", settings_)
    holdout = load_holdout(template.v2.run_id, settings_)
    from titans.models.pyfunc import load_trained

    expected_v1 = spec.evaluate(load_trained(f"models:/{NAME}/1"), holdout)["mae"]
    assert result["primary"]["version1"] == pytest.approx(expected_v1)
    assert result["primary"]["version1"] != pytest.approx(template.v1.evaluation.score)
    assert result["metrics"]["delta"]["mae"] == pytest.approx(
        result["primary"]["version2"] - result["primary"]["version1"]
    )
    assert set(result["segments"]) == {"payment_method", "type", "amount_band"}
    rows = sum(s["rows"] for s in result["segments"]["payment_method"].values())
    assert rows == result["holdout"]["scored_rows"]
    assert 0.0 <= result["agreement_rate"] <= 1.0
    assert all(v > 0 for v in result["latency_ms_per_row"].values())
    assert all(v > 10_000 for v in result["artifact_bytes"].values())
    json.dumps(result, allow_nan=False)  # plain JSON all the way down


def test_a_version_agrees_with_itself(settings_: Settings) -> None:
    frame = generate(1_500, seed=99)
    result = _manager(settings_).compare_models(NAME, "1", "1", holdout=frame)
    assert result["holdout"]["source"] == "given frame"
    assert result["agreement_rate"] == 1.0
    assert result["primary"]["improvement"] == 0.0 and result["primary"]["better"] == "tie"
    assert all(d == 0.0 for d in result["metrics"]["delta"].values())


def test_compare_unknown_version_is_a_clear_error(settings_: Settings) -> None:
    with pytest.raises(ModelNotFoundError, match="no version '7'"):
        _manager(settings_).compare_models(NAME, "1", "7")


# ------------------------------------------------------------------ concurrency


def test_concurrent_promotions_are_serialised(settings_: Settings, template: Template) -> None:
    setup = _manager(settings_)
    for result in (template.v1, template.v2):  # versions 3 and 4: same artifacts, new versions
        setup.register_model(result.model_uri, NAME)
    versions = ["1", "2", "3", "4"]
    barrier = threading.Barrier(len(versions))
    outcomes: dict[str, bool] = {}
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        manager = ModelRegistryManager(settings_, store=Store(settings_))
        try:
            barrier.wait(timeout=60)
            outcomes[version] = manager.promote_model(NAME, version, "staging", f"t{version}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert outcomes == dict.fromkeys(versions, True)

    audit = AuditLogger(setup.store)
    promoted = [e for e in audit.entries() if e.action == "registry.promoted"]
    assert sorted(str(e.model_version) for e in promoted) == versions
    # lock order: each promotion saw the alias where the previous one left it
    chain = [e.details["from_version"] for e in promoted]
    assert chain == [None] + [e.details["to_version"] for e in promoted[:-1]]
    final = setup.get_alias_version(NAME, "staging")
    assert final == promoted[-1].model_version
    staged = [v for v in setup.get_versions(NAME) if v["stage"] == "Staging"]
    assert [v["version"] for v in staged] == [final]  # exactly one version carries the stage
    assert audit.verify().ok
    with setup.store.session() as s:
        assert s.scalars(select(Lock)).all() == []  # every lock released


# ------------------------------------------------------------------ ops store parity


def test_promotion_and_audit_on_each_ops_store_backend(
    make_settings: SettingsFactory, store: Store
) -> None:
    settings = make_settings()
    manager = ModelRegistryManager(settings, store=store)
    assert manager.promote_model(NAME, "1", "staging", actor="ann") is True
    assert manager.promote_model(NAME, "5", "staging", actor="ann") is False
    assert manager.rollback_model(NAME, "1", actor="ann") is False
    actions = [e.action for e in manager.audit.entries()]
    assert actions == [
        "approval.requested",
        "approval.granted",
        "registry.promoted",
        "registry.promotion_refused",
        "registry.rollback_refused",
    ]
    assert manager.audit.verify().ok
    with store.session() as s:
        assert s.scalars(select(Lock)).all() == []
        assert [a.severity for a in s.scalars(select(Alert))] == ["info"]


# ------------------------------------------------------------------ CLI


def test_cli_promote_show_and_refusal(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    monkeypatch.setenv("TITANS_HOME", str(settings.home))
    for var in ("TITANS_TRACKING_URI", "TITANS_DATABASE_URL", "TITANS_GOVERNANCE_POLICY_PATH"):
        monkeypatch.delenv(var, raising=False)
    ok = runner.invoke(app, ["registry", "promote", "amount", "1", "staging", "--actor", "ann"])
    assert ok.exit_code == 0, ok.output
    assert "promoted" in ok.output and "titans-amount@staging" in ok.output
    listed = runner.invoke(app, ["registry", "list"])
    assert listed.exit_code == 0 and "titans-amount" in listed.output
    shown = runner.invoke(app, ["registry", "show", "titans-amount"])
    assert shown.exit_code == 0 and "Staging" in shown.output
    refused = runner.invoke(app, ["registry", "rollback", "amount", "2"])
    assert refused.exit_code == 1
    assert "no production version to roll back from" in " ".join(str(refused.exception).split())
    compared = runner.invoke(app, ["registry", "compare", "amount", "1", "2", "--json"])
    assert compared.exit_code == 0, compared.output
    body = compared.output[compared.output.index("{") :]
    assert json.loads(body)["version2"] == "2"
