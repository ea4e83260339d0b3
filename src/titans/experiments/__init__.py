"""Experiment tracking and comparison on MLflow (ExperimentManager) and A/B testing.

Names are imported lazily, so `import titans.experiments.<module>` does not load MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from titans.experiments.experiment_manager import (
        METRIC_DIRECTIONS,
        ExperimentManager,
        metric_direction,
    )

__all__ = ["METRIC_DIRECTIONS", "ExperimentManager", "metric_direction"]

_LAZY = {name: "titans.experiments.experiment_manager" for name in __all__}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'titans.experiments' has no attribute {name!r}")
