"""Deployments: promote through the registry's gates, roll out, and wait until the API serves it."""

from __future__ import annotations

from titans.deployment.deploy import (
    DEFAULT_API_URL,
    DEFAULT_CHART,
    DeploymentRefused,
    DeploymentResult,
    Endpoint,
    K8sTarget,
    LocalTarget,
    Target,
    deploy_production,
    deploy_staging,
    previous_production,
    rollback,
)

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_CHART",
    "DeploymentRefused",
    "DeploymentResult",
    "Endpoint",
    "K8sTarget",
    "LocalTarget",
    "Target",
    "deploy_production",
    "deploy_staging",
    "previous_production",
    "rollback",
]
