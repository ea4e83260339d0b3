"""CheckResult: one validation check's verdict, the thresholds it used, its numbers and reasons."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class CheckResult:
    """The verdict of one check; ``reasons`` say why it failed, ``notes`` what else to know.

    >>> result = CheckResult("performance")
    >>> result.fail("macro_f1 0.40 is below the floor 0.50")
    >>> result.passed, result.to_dict()["reasons"]
    (False, ['macro_f1 0.40 is below the floor 0.50'])
    """

    name: str
    passed: bool = True
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        """Record a reason and mark the check failed."""
        self.passed = False
        self.reasons.append(reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "thresholds": json_safe(self.thresholds),
            "details": json_safe(self.details),
        }


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf as None, keys as strings.

    >>> json_safe({"a": np.float64("nan"), 1: [np.int64(2), (3.5, float("inf"))]})
    {'a': None, '1': [2, [3.5, None]]}
    """
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def fmt(value: float) -> str:
    """A metric for a message: 4 significant digits.

    >>> fmt(0.123456), fmt(1234.5678), fmt(float("nan"))
    ('0.1235', '1235', 'nan')
    """
    return f"{value:.4g}"
