"""Model validation gates: performance, stability and fairness on a model's own holdout."""

from __future__ import annotations

from titans.validation.model_validation import (
    REPORT_ARTIFACT,
    STATUS_TAG,
    ModelValidationPipeline,
)
from titans.validation.result import CheckResult

__all__ = ["REPORT_ARTIFACT", "STATUS_TAG", "CheckResult", "ModelValidationPipeline"]
