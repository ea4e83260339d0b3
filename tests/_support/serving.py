"""What the serving tests share: settings whose promotions need a person, a transaction, and
a registry with trained models promoted through every gate."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from titans.config import (
    MODEL_KEYS,
    ApiKey,
    GovernanceIdentity,
    Settings,
    ValidationSettings,
)

#: a policy under which no version is auto-approved: ann requests, bob approves
NEVER_AUTO = "version: 1\ndefault:\n  auto_approve:\n    enabled: false\n"
#: gates loose enough for models trained on a few thousand rows; promotion still runs them all
RELAXED = {
    "primary_floor": None,
    "min_margin_over_baseline": 0.0,
    "champion_tolerance": 100.0,
    "max_fairness_gap": 1.0,
    "max_flip_rate": 1.0,
    "max_relative_change": 100.0,
}
TRANSACTION: dict[str, Any] = {
    "date": "2024-05-02",
    "type": "Expense",
    "description": "Adobe Creative Cloud subscription",
    "amount": -59.99,
    "payment_method": "Credit Card",
    "reference": "INV-1",
    "status": "Completed",
    "entity_id": "customer-7",
}


def bearer(raw_key: str) -> dict[str, str]:
    """The Authorization header for a raw API key."""
    return {"Authorization": f"Bearer {raw_key}"}


def call(client: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    """One request through a TestClient: GET without a body, POST with a JSON body."""
    if method == "get":
        return client.get(path, headers=headers)
    return client.post(path, json=body, headers=headers)


def serving_settings(home: Path, api_keys: list[ApiKey], **overrides: Any) -> Settings:
    """Settings under ``home`` with the human-approval policy, relaxed gates and these keys."""
    policy = home / "policy.yaml"
    policy.write_text(NEVER_AUTO, encoding="utf-8")
    return Settings(
        home=home,
        governance_policy_path=policy,
        governance_identities=[
            GovernanceIdentity(name="ann", roles=["requester"]),
            GovernanceIdentity(name="bob", roles=["approver"]),
        ],
        validation=ValidationSettings.model_validate({key: RELAXED for key in MODEL_KEYS}),
        api_keys=api_keys,
        **overrides,
    )


def promote(settings: Settings, name: str, version: str) -> None:
    """Promote to production through every gate, approved by a person (ann asks, bob approves)."""
    from titans.governance.governance import ModelGovernanceManager
    from titans.registry.registry_manager import ModelRegistryManager

    manager = ModelRegistryManager(settings)
    governance = ModelGovernanceManager(settings, manager.store)
    request_id = governance.request_model_approval(f"models:/{name}/{version}", "test", "ann")
    governance.approve(request_id, "bob", "ok")
    assert manager.promote_model(name, version, "production", actor="ann"), manager.last_refusal


def train_and_promote_all(settings: Settings, rows: int, seed: int) -> None:
    """Version 1 of every model, trained on generated rows and promoted to production."""
    from titans.data.synth import generate
    from titans.models.train import train_models

    for result in train_models(generate(rows, seed=seed), seed=seed, settings=settings):
        promote(settings, result.registered_name, result.version)


def train_version(settings: Settings, model: str, rows: int, seed: int) -> str:
    """Train and register one more version of ``model`` (not promoted); its version number."""
    from titans.data.synth import generate
    from titans.models.train import train_models

    (result,) = train_models(
        generate(rows, seed=seed), models=[model], seed=seed, settings=settings
    )
    return str(result.version)


def copy_registry(source_home: Path, target_home: Path) -> Path:
    """A consistent copy of ``source_home``'s MLflow database (artifacts stay shared)."""
    target_home.mkdir(parents=True, exist_ok=True)
    with (
        closing(sqlite3.connect(source_home / "mlflow.db")) as source,
        closing(sqlite3.connect(target_home / "mlflow.db")) as copy,
    ):
        source.backup(copy)
    return target_home
