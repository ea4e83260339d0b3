"""ModelGovernanceManager: four-eyes approvals, expiry, policy, sampled decisions, model cards.

Runs on the shared `store` fixture (SQLite, and Postgres when TITANS_TEST_POSTGRES_URL is set)
against a real MLflow registry in a temp TITANS_HOME.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sqlalchemy import update

from titans.config import ApiKey, GovernanceIdentity, Settings
from titans.errors import (
    ApprovalError,
    ConfigError,
    InputError,
    ModelNotFoundError,
    PermissionDenied,
)
from titans.governance import ModelGovernanceManager
from titans.governance.audit import canonical_json
from titans.governance.policy import DEFAULT_POLICY_PATH
from titans.models.amount import AmountSpec
from titans.store import Store
from titans.store.models import ApprovalRequest, utcnow

CATEGORY = "titans-category"
IDENTITIES = [
    GovernanceIdentity(name="ann", roles=["requester"]),
    GovernanceIdentity(name="bob", roles=["approver"]),
    GovernanceIdentity(name="carol", roles=["admin"]),
    GovernanceIdentity(name="dave", roles=["requester", "approver"]),
]
# an API key that may predict but has no governance role
PREDICT_KEY = ApiKey(name="eve", key_sha256="0" * 64, roles=["predict"])


@dataclass
class Registry:
    home: Path
    tracking_uri: str


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A real MLflow registry with versions 1-4 of titans-category (no artifacts needed)."""
    home = tmp_path_factory.mktemp("registry-home")
    settings = Settings(home=home, TITANS_TRACKING_URI=None)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_registered_model(CATEGORY)
    for _ in range(4):
        client.create_model_version(CATEGORY, source=str(home / "no-artifact"))
    return Registry(home, settings.tracking_uri)


def _settings(registry: Registry, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": registry.home,
        "TITANS_TRACKING_URI": registry.tracking_uri,
        "governance_identities": IDENTITIES,
        "api_keys": [PREDICT_KEY],
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def gov(registry: Registry, store: Store) -> ModelGovernanceManager:
    return ModelGovernanceManager(_settings(registry), store)


def _actions(gov: ModelGovernanceManager) -> list[str]:
    return [e.action for e in gov.audit.entries()]


def _move_expiry(store: Store, request_id: str, delta: timedelta) -> None:
    """Time passes: move the stored deadline as the clock would (through the store)."""
    with store.session() as session:
        session.execute(
            update(ApprovalRequest)
            .where(ApprovalRequest.id == request_id)
            .values(expires_at=utcnow() + delta)
        )


# ---------------------------------------------------------------- request / approve / reject


def test_request_then_approval_by_another_person(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(
        f"models:/{CATEGORY}/2", "macro-F1 up 3 points", requester="ann"
    )

    [waiting] = gov.pending()
    assert (waiting.id, waiting.model_version, waiting.requester) == (request_id, "2", "ann")
    ttl = waiting.expires_at - waiting.created_at
    assert ttl == timedelta(hours=72)
    assert not gov.is_approved(CATEGORY, 2)

    decided = gov.approve(request_id, "bob", comment="checked the report")

    assert (decided.status, decided.decided_by, decided.comment) == (
        "approved",
        "bob",
        "checked the report",
    )
    assert gov.is_approved(CATEGORY, "2") and gov.is_approved(CATEGORY, 2)
    assert gov.pending() == []
    requested, granted = gov.audit.entries()
    assert (requested.action, requested.actor, requested.model_version) == (
        "approval.requested",
        "ann",
        "2",
    )
    assert requested.details["justification"] == "macro-F1 up 3 points"
    assert (granted.action, granted.actor, granted.details["request_id"]) == (
        "approval.granted",
        "bob",
        request_id,
    )
    assert gov.audit.verify().ok


def test_rejection_needs_a_reason_and_blocks_the_version(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/3", "faster", requester="ann")

    with pytest.raises(InputError, match="comment"):
        gov.reject(request_id, "bob", "  ")
    rejected = gov.reject(request_id, "carol", "MAE worse on card payments")

    assert (rejected.status, rejected.decided_by) == ("rejected", "carol")
    assert not gov.is_approved(CATEGORY, 3)
    assert _actions(gov) == ["approval.requested", "approval.rejected"]
    assert gov.audit.entries()[-1].details["comment"] == "MAE worse on card payments"
    assert gov.audit.verify().ok


def test_the_requester_can_never_decide_their_own_request(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/1", "retrained", "dave")

    with pytest.raises(PermissionDenied, match="four eyes"):
        gov.approve(request_id, "dave")
    with pytest.raises(PermissionDenied, match="four eyes"):
        gov.reject(request_id, "dave", "never mind")
    admin_request = gov.request_model_approval(f"models:/{CATEGORY}/2", "hotfix", "carol")
    with pytest.raises(PermissionDenied, match="four eyes"):
        gov.approve(admin_request, "carol")  # admins too

    assert gov.get_request(request_id).status == "pending"
    assert not gov.is_approved(CATEGORY, 1) and not gov.is_approved(CATEGORY, 2)
    refusals = [e for e in gov.audit.entries() if e.action == "approval.refused"]
    assert [(e.actor, e.details["attempted"]) for e in refusals] == [
        ("dave", "approve"),
        ("dave", "reject"),
        ("carol", "approve"),
    ]
    assert refusals[0].details["request_id"] == request_id
    assert "four eyes" in refusals[0].details["reason"]
    assert gov.audit.verify().ok


def test_identities_without_the_role_are_refused_and_audited(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/1", "baseline", "ann")

    with pytest.raises(PermissionDenied, match="needs the approver or admin role"):
        gov.approve(request_id, "ann")  # a requester only
    with pytest.raises(PermissionDenied, match="not a known identity"):
        gov.approve(request_id, "mallory")
    with pytest.raises(PermissionDenied, match="only through the governance policy"):
        gov.approve(request_id, "system")  # nobody borrows the policy's name
    with pytest.raises(PermissionDenied, match="needs the requester or admin role"):
        gov.request_model_approval(f"models:/{CATEGORY}/2", "why not", "bob")
    with pytest.raises(PermissionDenied, match="needs the requester or admin role"):
        gov.request_model_approval(f"models:/{CATEGORY}/2", "why not", "eve")  # predict key

    assert gov.get_request(request_id).status == "pending"
    refused = [(e.actor, e.details["attempted"]) for e in gov.audit.entries()[1:]]
    assert refused == [
        ("ann", "approve"),
        ("mallory", "approve"),
        ("system", "approve"),
        ("bob", "request"),
        ("eve", "request"),
    ]
    assert set(_actions(gov)[1:]) == {"approval.refused"}
    assert gov.audit.verify().ok


def test_an_expired_request_cannot_be_approved(gov: ModelGovernanceManager, store: Store) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/4", "new features", "ann")
    _move_expiry(store, request_id, timedelta(seconds=-1))

    with pytest.raises(ApprovalError, match="expired"):
        gov.approve(request_id, "bob")

    assert gov.get_request(request_id).status == "expired"
    assert not gov.is_approved(CATEGORY, 4)
    assert gov.pending() == []
    assert _actions(gov) == ["approval.requested", "approval.expired", "approval.refused"]
    assert "expired" in gov.audit.entries()[-1].details["reason"]
    # a fresh request for the same version is possible and works
    again = gov.request_model_approval(f"models:/{CATEGORY}/4", "second try", "ann")
    assert gov.approve(again, "bob").status == "approved"
    assert gov.audit.verify().ok


def test_a_tiny_ttl_expires_pending_requests_when_listed(registry: Registry, store: Store) -> None:
    gov = ModelGovernanceManager(_settings(registry, approval_ttl_hours=1e-9), store)
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/1", "quick", "ann")

    assert gov.pending() == []
    assert gov.get_request(request_id).status == "expired"
    with pytest.raises(ApprovalError, match=r"expired at .* undecided"):
        gov.approve(request_id, "bob")
    assert _actions(gov) == ["approval.requested", "approval.expired", "approval.refused"]


def test_a_decided_request_cannot_be_decided_again(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/2", "better", "ann")
    gov.approve(request_id, "bob")

    with pytest.raises(ApprovalError, match="already approved by bob"):
        gov.approve(request_id, "carol")
    with pytest.raises(ApprovalError, match="already approved"):
        gov.reject(request_id, "carol", "changed my mind")

    record = gov.get_request(request_id)
    assert (record.status, record.decided_by) == ("approved", "bob")
    assert _actions(gov).count("approval.granted") == 1
    assert _actions(gov)[-2:] == ["approval.refused", "approval.refused"]


def test_two_approvers_at_once_decide_exactly_once(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/3", "race", "ann")
    outcomes: dict[str, str] = {}
    start = threading.Barrier(2)

    def decide(who: str) -> None:
        start.wait(timeout=10)
        try:
            gov.approve(request_id, who) if who == "bob" else gov.reject(request_id, who, "no")
            outcomes[who] = "won"
        except ApprovalError:
            outcomes[who] = "refused"

    threads = [threading.Thread(target=decide, args=(w,)) for w in ("bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert sorted(outcomes.values()) == ["refused", "won"]
    winner = next(w for w, o in outcomes.items() if o == "won")
    assert gov.get_request(request_id).decided_by == winner
    decisions = [a for a in _actions(gov) if a in {"approval.granted", "approval.rejected"}]
    assert len(decisions) == 1
    assert gov.audit.verify().ok


def test_is_approved_only_for_a_granted_unexpired_approval(
    gov: ModelGovernanceManager, store: Store
) -> None:
    pending = gov.request_model_approval(f"models:/{CATEGORY}/1", "a", "ann")
    rejected = gov.request_model_approval(f"models:/{CATEGORY}/2", "b", "ann")
    granted = gov.request_model_approval(f"models:/{CATEGORY}/3", "c", "ann")
    gov.reject(rejected, "bob", "no")
    record = gov.approve(granted, "bob")

    # a granted approval stays valid for the TTL counted from the grant
    assert record.decided_at is not None
    assert record.expires_at - record.decided_at == timedelta(hours=72)
    assert [gov.is_approved(CATEGORY, v) for v in (1, 2, 3, 4)] == [False, False, True, False]
    assert not gov.is_approved("titans-amount", 3)
    assert gov.get_request(pending).status == "pending"

    _move_expiry(store, granted, timedelta(seconds=-1))
    assert not gov.is_approved(CATEGORY, 3)
    assert not gov.get_request(granted).active


def test_requests_are_checked_before_they_are_stored(gov: ModelGovernanceManager) -> None:
    for bad in (
        f"models:/{CATEGORY}@production",
        f"models:/{CATEGORY}/latest",
        "runs:/abc/model",
        f"models:/{CATEGORY}/0",
        "titans-category",
    ):
        with pytest.raises(InputError, match="models:/NAME/VERSION"):
            gov.request_model_approval(bad, "why", "ann")
    with pytest.raises(InputError, match="justification"):
        gov.request_model_approval(f"models:/{CATEGORY}/1", " ", "ann")
    with pytest.raises(ModelNotFoundError, match="version 9 of titans-category"):
        gov.request_model_approval(f"models:/{CATEGORY}/9", "ghost", "ann")
    first = gov.request_model_approval(f"models:/{CATEGORY}/1", "one", "ann")
    with pytest.raises(ApprovalError, match=f"already has pending request {first}"):
        gov.request_model_approval(f"models:/{CATEGORY}/1", "two", "dave")

    assert [r.id for r in gov.requests()] == [first]
    assert _actions(gov) == ["approval.requested"]


def test_requests_can_be_named_by_a_unique_prefix(gov: ModelGovernanceManager) -> None:
    request_id = gov.request_model_approval(f"models:/{CATEGORY}/1", "one", "ann")

    assert gov.approve(request_id[:8].upper(), "bob").id == request_id
    with pytest.raises(InputError, match="too short"):
        gov.get_request(request_id[:3])
    with pytest.raises(InputError, match="no approval request"):
        gov.get_request("ffffffff-0000")


# ---------------------------------------------------------------- policy


POLICY = """
version: 1
default:
  auto_approve:
    requires_validation: true
    min_primary_improvement: 0.01
    first_version_auto_approve: false
models:
  titans-category:
    auto_approve:
      min_primary_improvement: 0.02
  anomaly:
    auto_approve:
      enabled: false
  amount:
    auto_approve:
      requires_validation: false
      first_version_auto_approve: true
"""


@pytest.fixture
def policy_gov(registry: Registry, store: Store, tmp_path: Path) -> ModelGovernanceManager:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return ModelGovernanceManager(_settings(registry, governance_policy_path=path), store)


def test_policy_auto_approves_only_validated_versions_that_improve_enough(
    policy_gov: ModelGovernanceManager,
) -> None:
    gov = policy_gov
    assert gov.evaluate_policy(CATEGORY, True, 0.02).auto_approve
    assert gov.evaluate_policy(CATEGORY, True, 0.05).auto_approve
    below = gov.evaluate_policy(CATEGORY, True, 0.019)
    assert not below.auto_approve and "0.019 < required 0.02" in below.reason
    assert below.policy["min_primary_improvement"] == 0.02
    assert below.policy["matched"] == "models.titans-category"
    unvalidated = gov.evaluate_policy(CATEGORY, False, 0.5)
    assert not unvalidated and "validation did not pass" in unvalidated.reason
    assert not gov.evaluate_policy(CATEGORY, True, None)  # no production, flag off
    assert not gov.evaluate_policy(CATEGORY, True, float("nan"))
    # other models fall back to the default, or to their short-key entry
    assert gov.evaluate_policy("titans-cashflow", True, 0.01).auto_approve
    assert not gov.evaluate_policy("titans-anomaly", True, 10.0)
    amount = gov.evaluate_policy("titans-amount", False, None)
    assert amount.auto_approve and "validation not required" in amount.reason


def test_auto_approval_files_and_grants_a_request_as_system(
    policy_gov: ModelGovernanceManager,
) -> None:
    gov = policy_gov
    assert gov.auto_approve_if_allowed(f"models:/{CATEGORY}/2", True, 0.01) is None
    assert not gov.is_approved(CATEGORY, 2)
    assert gov.requests() == []

    request_id = gov.auto_approve_if_allowed(f"models:/{CATEGORY}/3", True, 0.03)

    assert request_id is not None and gov.is_approved(CATEGORY, 3)
    record = gov.get_request(request_id)
    assert (record.status, record.requester, record.decided_by) == ("approved", "system", "system")
    declined, requested, granted = gov.audit.entries()
    assert declined.action == "approval.policy_declined" and declined.model_version == "2"
    assert "< required 0.02" in declined.details["reason"]
    assert requested.action == "approval.requested"
    assert granted.action == "approval.granted" and granted.actor == "system"
    assert granted.details["by_policy"] is True
    assert "0.03 >= required 0.02" in granted.details["policy_reason"]
    assert granted.details["policy"]["sha256"] == gov.policy.sha256
    # asking again while the approval holds changes nothing
    assert gov.auto_approve_if_allowed(f"models:/{CATEGORY}/3", True, 0.03) == request_id
    assert len(gov.audit.entries()) == 3
    assert gov.audit.verify().ok


def test_auto_approval_decides_a_pending_human_request(policy_gov: ModelGovernanceManager) -> None:
    human = policy_gov.request_model_approval(f"models:/{CATEGORY}/1", "please", "ann")

    assert policy_gov.auto_approve_if_allowed(f"models:/{CATEGORY}/1", True, 0.1) == human
    assert policy_gov.get_request(human).decided_by == "system"
    assert len(policy_gov.requests()) == 1


def test_the_shipped_default_policy_lets_a_validated_first_version_through(
    gov: ModelGovernanceManager,
) -> None:
    assert gov.policy.source == str(DEFAULT_POLICY_PATH)
    first = gov.evaluate_policy(CATEGORY, True, None)
    assert first.auto_approve and "first_version_auto_approve" in first.reason
    assert not gov.evaluate_policy(CATEGORY, False, None)
    assert not gov.evaluate_policy(CATEGORY, True, 0.0)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            "default:\n  auto_approve:\n    min_primary_improvement: lots\n",
            "min_primary_improvement",
        ),
        (
            "default:\n  auto_approve:\n    min_primary_improvement: -0.1\n",
            "min_primary_improvement",
        ),
        (
            "models:\n  titans-category:\n    auto_aprove: {}\n",
            "models.titans-category.auto_aprove",
        ),
        ("default:\n  auto_approve:\n    enabled: maybe\n", "default.auto_approve.enabled"),
        ("version: 2\n", "version"),
        ("default: [1, 2]\n", "default"),
        ("default:\n  auto_approve: {enabled: true\n", "line"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_a_bad_policy_file_names_the_file_and_the_field(
    registry: Registry, store: Store, tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "broken-policy.yaml"
    path.write_text(text)
    gov = ModelGovernanceManager(_settings(registry, governance_policy_path=path), store)

    with pytest.raises(ConfigError) as caught:
        gov.evaluate_policy(CATEGORY, True, 0.5)

    message = str(caught.value)
    assert str(path) in message and field in message
    assert "\n" not in message


def test_a_missing_policy_file_is_a_config_error(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "nowhere.yaml"
    gov = ModelGovernanceManager(_settings(registry, governance_policy_path=path), store)
    with pytest.raises(ConfigError, match=r"nowhere\.yaml cannot be read"):
        gov.auto_approve_if_allowed(f"models:/{CATEGORY}/1", True, 1.0)


# ---------------------------------------------------------------- sampled decisions


def _predictions(n: int, start: pd.Timestamp, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "prediction_id": [f"p{seed}-{i}" for i in range(n)],
            "description": rng.choice(["coffee", "rent", "café crème", "taxi"], n),
            "amount": -rng.gamma(2.0, 30.0, n).round(2),
            "payment_method": rng.choice(np.array(["credit_card", "cash", None], dtype=object), n),
            "prediction": rng.choice(["food", "transport", "housing"], n),
            "confidence": rng.random(n),
            "model_version": "3",
            "timestamp": start + pd.to_timedelta(np.arange(n), unit="s"),
        }
    )


def test_decisions_are_sampled_with_their_input_hash(registry: Registry, store: Store) -> None:
    gov = ModelGovernanceManager(_settings(registry, decision_sample_rate=0.05), store)
    batch = _predictions(2000, pd.Timestamp("2026-11-01", tz="UTC"))

    kept = gov.audit_model_decisions(CATEGORY, batch)

    assert 60 <= kept <= 140  # Binomial(2000, 0.05): mean 100, sd 9.7
    samples = gov.decision_samples(CATEGORY)
    assert len(samples) == kept
    by_id = batch.set_index("prediction_id")
    for sample in samples[:5]:
        row = by_id.loc[sample["output"]["prediction_id"]]
        fields = {
            "description": row["description"],
            "amount": float(row["amount"]),
            # a missing value is null in the canonical input, whatever pandas held it as
            "payment_method": None if pd.isna(row["payment_method"]) else row["payment_method"],
        }
        expected = hashlib.sha256(canonical_json(fields).encode()).hexdigest()
        assert sample["input_hash"] == expected
        assert sample["output"]["prediction"] == row["prediction"]
        assert sample["model_version"] == "3"
        assert sample["ts"] == row["timestamp"].to_pydatetime()
    # seeded: the same batch keeps the same rows; another seed keeps others
    again = ModelGovernanceManager(_settings(registry, decision_sample_rate=0.05), store)
    assert again.audit_model_decisions("replay", batch) == kept
    replay = {s["input_hash"] for s in again.decision_samples("replay")}
    assert replay == {s["input_hash"] for s in samples}
    other = ModelGovernanceManager(
        _settings(registry, decision_sample_rate=0.05, seed=7), store
    ).audit_model_decisions("other-seed", batch)
    other_hashes = {s["input_hash"] for s in gov.decision_samples("other-seed")}
    assert other > 0 and other_hashes != replay


def test_every_non_empty_batch_keeps_at_least_one_decision(
    registry: Registry, store: Store
) -> None:
    gov = ModelGovernanceManager(_settings(registry, decision_sample_rate=1e-6), store)
    as_dicts = [
        {"input": {"description": "rent", "amount": -900.0}, "output": {"category": "housing"},
         "model_version": 2, "timestamp": "2026-11-02T10:00:00+01:00"},
        {"input": {"description": "taxi", "amount": -12.0}, "output": {"category": "transport"},
         "model_version": 2, "timestamp": "2026-11-02T11:00:00+01:00"},
    ]  # fmt: skip

    assert gov.audit_model_decisions(CATEGORY, as_dicts) == 1
    assert gov.audit_model_decisions(CATEGORY, []) == 0
    [sample] = gov.decision_samples(CATEGORY)
    source = next(d for d in as_dicts if d["output"] == sample["output"])
    assert (
        sample["input_hash"] == hashlib.sha256(canonical_json(source["input"]).encode()).hexdigest()
    )
    assert sample["model_version"] == "2"
    assert sample["ts"].utcoffset() == timedelta(0)
    with pytest.raises(InputError, match="model_version"):
        gov.audit_model_decisions(CATEGORY, [{"amount": 1.0, "prediction": "x"}])
    with pytest.raises(InputError, match="no output column"):
        gov.audit_model_decisions(CATEGORY, [{"amount": 1.0, "model_version": "1"}])


def test_pruning_deletes_only_samples_past_retention(registry: Registry, store: Store) -> None:
    gov = ModelGovernanceManager(
        _settings(registry, decision_sample_rate=1.0, decision_retention_days=30), store
    )
    now = pd.Timestamp(utcnow())
    gov.audit_model_decisions(CATEGORY, _predictions(6, now - pd.Timedelta(days=45), seed=1))
    gov.audit_model_decisions(CATEGORY, _predictions(4, now - pd.Timedelta(days=5), seed=2))
    gov.audit_model_decisions("titans-amount", _predictions(3, now - pd.Timedelta(days=90)))

    assert gov.prune_decisions(CATEGORY) == 6
    assert len(gov.decision_samples(CATEGORY)) == 4
    assert len(gov.decision_samples("titans-amount")) == 3
    assert gov.prune_decisions() == 3
    assert gov.prune_decisions() == 0
    pruned = [e for e in gov.audit.entries() if e.action == "decisions.pruned"]
    assert [e.details["deleted"] for e in pruned] == [6, 3]
    assert pruned[0].details["retention_days"] == 30
    assert gov.audit.verify().ok


# ---------------------------------------------------------------- model card


@dataclass
class CardWorld:
    settings: Settings
    name: str
    trained_version: str


@pytest.fixture(scope="module")
def card_world(tmp_path_factory: pytest.TempPathFactory) -> CardWorld:
    """A really trained and validated amount model (version 1) and a bare version 2."""
    from threadpoolctl import threadpool_limits

    from titans.data.synth import generate
    from titans.models.train import train_models
    from titans.validation import ModelValidationPipeline

    settings = Settings(
        home=tmp_path_factory.mktemp("card-home"),
        TITANS_TRACKING_URI=None,
        governance_identities=IDENTITIES,
    )
    with threadpool_limits(1):
        [result] = train_models(generate(3000, seed=1), models=["amount"], settings=settings)
        ModelValidationPipeline(settings).run_full_validation(result.registry_uri)
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.create_model_version(result.registered_name, source=str(settings.home_dir / "bare"))
    return CardWorld(settings, result.registered_name, result.version)


def test_model_card_says_not_recorded_for_what_nobody_recorded(
    card_world: CardWorld, store: Store
) -> None:
    client = MlflowClient(card_world.settings.tracking_uri, card_world.settings.tracking_uri)
    for alias in ("production", "staging"):
        client.delete_registered_model_alias(card_world.name, alias)
    gov = ModelGovernanceManager(card_world.settings, store)

    card = gov.generate_model_documentation(card_world.name)

    assert card.startswith("# Model card: titans-amount\n")
    assert AmountSpec.description in card
    assert "| 1 | None | none | passed | none |" in card  # the trained, validated version
    assert "| 2 | not recorded | none | not recorded | none | not recorded |" in card
    assert "- Production version: none" in card
    assert "## Version 2 (newest)" in card  # nothing in production: the newest is detailed
    assert "- Data version: not recorded" in card
    assert "Primary metric: not recorded." in card
    assert "Validation report: not recorded" in card
    assert "Fairness results: not recorded." in card
    assert "- Parent version (retrained from): not recorded" in card
    assert "No approval requested yet." in card


def test_model_card_details_the_production_version(card_world: CardWorld, store: Store) -> None:
    settings = card_world.settings
    client = MlflowClient(settings.tracking_uri, settings.tracking_uri)
    client.set_registered_model_alias(card_world.name, "production", card_world.trained_version)
    version = client.get_model_version(card_world.name, card_world.trained_version)
    gov = ModelGovernanceManager(settings, store)
    request_id = gov.request_model_approval(
        f"models:/{card_world.name}/{card_world.trained_version}", "first amount model", "ann"
    )
    gov.approve(request_id, "bob", "report reviewed")

    card = gov.generate_model_documentation("amount")  # the short key works too

    assert "## Version 1 (@production)" in card
    assert "| 1 | None | production | passed | approved |" in card
    assert "- Production version: 1" in card
    assert f"- Data version: {version.tags['titans.data_version']}" in card
    assert f"- Code version (git commit): {version.tags['titans.git_commit']}" in card
    assert "- Parent version (retrained from): not recorded" in card
    score = float(version.tags["titans.primary_score"])
    baseline = float(version.tags["titans.baseline_score"])
    assert (
        f"Primary metric **mae** (lower is better): model {score:.4g}, trivial baseline "
        f"{baseline:.4g}, improvement over the baseline {baseline - score:.4g}." in card
    )
    assert re.search(r"\| r2 \| [-0-9.e]+ \| [-0-9.e]+ \|", card)
    assert "- Status: passed" in card
    assert "| performance | passed |" in card and "| fairness | passed |" in card
    assert "| payment_method |" in card and "| amount_band |" in card
    assert "synthetic transactions" in card  # a limitation of generated training data
    assert f"| {request_id[:8]} | 1 | approved | ann | bob |" in card
    assert "report reviewed" in card


def test_model_card_of_an_unknown_model(card_world: CardWorld, store: Store) -> None:
    gov = ModelGovernanceManager(card_world.settings, store)
    with pytest.raises(ModelNotFoundError, match="no registered model 'titans-nothing'"):
        gov.generate_model_documentation("titans-nothing")


# ---------------------------------------------------------------- CLI


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from titans.cli import main

    monkeypatch.setattr(sys, "argv", ["titans", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_cli_request_pending_approve_reject(
    registry: Registry,
    titans_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TITANS_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv(
        "TITANS_GOVERNANCE_IDENTITIES",
        '[{"name": "ann", "roles": ["requester", "approver"]}, '
        '{"name": "bob", "roles": ["approver"]}]',
    )
    monkeypatch.setenv("COLUMNS", "200")
    uri = f"models:/{CATEGORY}/2"

    assert (
        _cli(monkeypatch, "governance", "request", uri, "--justification", "x", "--as", "ann") == 0
    )
    out = capsys.readouterr().out
    request_id = re.search(r"approval ([0-9a-f-]{36})", out)[1]  # type: ignore[index]
    assert _cli(monkeypatch, "governance", "pending", "--model", CATEGORY) == 0
    listed = capsys.readouterr().out
    assert request_id in listed and "ann" in listed

    assert _cli(monkeypatch, "governance", "approve", request_id, "--as", "ann") == 2
    assert "four eyes" in capsys.readouterr().err
    assert _cli(monkeypatch, "governance", "reject", request_id, "--as", "bob") == 2  # no comment
    assert _cli(monkeypatch, "governance", "approve", request_id[:8], "--as", "bob") == 0
    assert "approved" in capsys.readouterr().out
    assert _cli(monkeypatch, "governance", "approve", request_id, "--as", "bob") == 1
    assert "already approved" in capsys.readouterr().err
    assert _cli(monkeypatch, "governance", "request", "models:/x@prod", "-j", "y") == 2
    assert _cli(monkeypatch, "governance", "request", uri, "-j", "y", "--as", "mallory") == 2
    assert _cli(monkeypatch, "governance", "pending") == 0
    assert "no pending approval requests" in capsys.readouterr().out

    gov = ModelGovernanceManager(Settings())
    assert gov.is_approved(CATEGORY, 2)
    assert gov.audit.verify().ok
    assert _cli(monkeypatch, "governance", "audit", "verify") == 0
