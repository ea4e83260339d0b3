"""One error root for the platform; each subclass marks the boundary it comes from.

Every message says what was wrong and what to do about it, on one line.
"""

from __future__ import annotations


class TitansError(Exception):
    """Root of every error the platform raises on purpose."""

    #: process exit code the CLI uses: 2 for bad input, 1 for a failed operation
    exit_code: int = 1


class InputError(TitansError):
    """Something a user or client supplied is wrong (file, argument, payload)."""

    exit_code = 2


class ConfigError(InputError):
    """A setting is missing or invalid."""


class DataValidationError(InputError):
    """Data does not match the export format or the quality rules."""


class NotFittedError(TitansError, ValueError):
    """An estimator or monitor was used before `fit`."""


class ModelNotFoundError(TitansError):
    """A registered model, version or alias does not exist."""


class TrainingError(TitansError):
    """Training could not produce a model."""


class PromotionRefused(TitansError):
    """A promotion gate refused to move an alias."""


class NotBuiltError(TitansError):
    """A command group whose work is not built yet."""

    exit_code = 2


class ExperimentNotFoundError(InputError):
    """An MLflow experiment named or numbered by the user does not exist."""


class RunNotFoundError(InputError):
    """No MLflow run matches what was asked for (e.g. none logged the metric)."""


class PermissionDenied(TitansError):
    """An identity lacks the role for an action, or the action breaks the four-eyes rule."""

    exit_code = 2


class ApprovalError(TitansError):
    """An approval request cannot be decided in its current state (expired, already decided)."""


class DeploymentError(TitansError):
    """A rollout could not start or did not finish (target missing, API unreachable, timeout)."""
