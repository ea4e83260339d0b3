"""Alert rules: what to watch, when it breaches, how long it must hold and how often to tell.

Rules live in YAML (``default_rules.yaml`` ships with the package); each names a metric, a
comparison against a threshold, a severity, ``for`` (consecutive breaching evaluations before
the alert fires), ``keep_firing_for`` (consecutive good evaluations before it resolves, so a
metric flapping around its threshold stays one alert) and a cooldown between repeated
notifications of one alert.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from titans.errors import ConfigError

Category = Literal["performance", "drift", "data_quality", "system", "business"]
Comparison = Literal[">", ">=", "<", "<="]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``: a number of seconds or text such as ``90s``, ``15m``, ``2h``, ``1d``.

    >>> parse_duration("15m"), parse_duration(30), parse_duration("1.5h")
    (900.0, 30.0, 5400.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"duration {value!r} is not a number of seconds or e.g. '15m'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"duration {value!r} is not a number of seconds or e.g. '15m', '2h'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"duration {value!r} must be a finite, non-negative time")
    return seconds


class AlertRule(BaseModel):
    """One rule: ``metric <comparison> threshold`` held for ``for`` evaluations fires an alert.

    >>> rule = AlertRule(name="latency_high", metric="latency_p95_ms", comparison=">",
    ...                  threshold=500, severity="warning", category="system",
    ...                  action="scale the API")
    >>> rule.breached(612.0), rule.breached(500.0)
    (True, False)
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
    metric: str = Field(min_length=1)
    category: Category
    severity: Literal["info", "warning", "critical"]
    comparison: Comparison = ">"
    threshold: float
    #: consecutive breaching evaluations before the alert fires
    for_evaluations: int = Field(default=1, ge=1, alias="for")
    #: consecutive good evaluations before a firing alert resolves
    keep_firing_for: int = Field(default=1, ge=1)
    #: least time between two notifications of one firing alert; None = the settings' cooldown
    cooldown_seconds: float | None = Field(default=None, alias="cooldown")
    #: what the breach means, in a sentence
    description: str = ""
    #: what the person receiving it should do
    action: str = Field(min_length=1)
    #: extra labels every alert of this rule carries (e.g. team, model_name)
    labels: dict[str, str] = {}

    @field_validator("cooldown_seconds", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("threshold")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("threshold must be a finite number")
        return value

    def breached(self, value: float) -> bool:
        """True when ``value`` is on the alerting side of the threshold (NaN counts as breached:
        a metric that cannot be computed is itself a problem)."""
        if math.isnan(value):
            return True
        if self.comparison == ">":
            return value > self.threshold
        if self.comparison == ">=":
            return value >= self.threshold
        if self.comparison == "<":
            return value < self.threshold
        return value <= self.threshold


def rule_fingerprint(rule_name: str, labels: Mapping[str, str]) -> str:
    """The identity of one alert: the rule plus its labels (order-independent).

    >>> rule_fingerprint("r", {"a": "1", "b": "2"}) == rule_fingerprint("r", {"b": "2", "a": "1"})
    True
    """
    subject = json.dumps([rule_name, sorted(labels.items())], separators=(",", ":"))
    return hashlib.sha256(subject.encode("utf-8")).hexdigest()


def default_rules_path() -> Path:
    """The rules YAML shipped with the package."""
    return Path(str(resources.files("titans.monitoring.alerts") / "default_rules.yaml"))


def load_rules(path: str | Path | None = None) -> list[AlertRule]:
    """Rules from a YAML file (``defaults:`` merged into each entry of ``rules:``)."""
    source = Path(path) if path is not None else default_rules_path()
    try:
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"alert rules file {source} cannot be read ({exc.strerror}); set "
            "TITANS_ALERTS__RULES_PATH to an existing YAML file"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"alert rules file {source} is not valid YAML ({exc}); fix it") from exc
    if not isinstance(document, dict) or not isinstance(document.get("rules"), list):
        raise ConfigError(f"alert rules file {source} needs a top-level 'rules:' list")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"alert rules file {source}: 'defaults:' must be a mapping")
    rules: list[AlertRule] = []
    for index, entry in enumerate(document["rules"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"alert rules file {source}: rule #{index + 1} is not a mapping")
        try:
            rules.append(AlertRule.model_validate({**defaults, **entry}))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "rule"
            raise ConfigError(
                f"alert rules file {source}: rule #{index + 1} "
                f"({entry.get('name', 'unnamed')}): {where}: {first['msg']}; fix that field"
            ) from exc
    names = [r.name for r in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"alert rules file {source}: rule names must be unique, repeated: "
            f"{', '.join(duplicates)}"
        )
    return rules
