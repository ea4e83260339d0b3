"""Governance policy (YAML): when a model version is approved by policy instead of a person.

A policy file has a ``default`` rule and optional per-model rules that override only the
fields they name (see ``default_policy.yaml`` shipped beside this module)::

    version: 1
    default:
      auto_approve: {requires_validation: true, min_primary_improvement: 0.005}
    models:
      titans-amount:
        auto_approve: {min_primary_improvement: 1.0}
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from titans.errors import ConfigError

__all__ = [
    "DEFAULT_POLICY_PATH",
    "AutoApproveRule",
    "GovernancePolicy",
    "PolicyDecision",
]

#: the policy used when Settings.governance_policy_path is unset
DEFAULT_POLICY_PATH = Path(__file__).resolve().with_name("default_policy.yaml")


class AutoApproveRule(BaseModel):
    """When a version is approved without a person (all fields documented in the YAML)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    enabled: bool = True
    requires_validation: bool = True
    #: direction-aware improvement over production, in the primary metric's units
    min_primary_improvement: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    first_version_auto_approve: bool = False


class _PartialRule(BaseModel):
    """A per-model override: only the fields written in the file replace the default's."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    requires_validation: bool | None = None
    min_primary_improvement: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    first_version_auto_approve: bool | None = None


class _DefaultSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_approve: AutoApproveRule = AutoApproveRule()


class _ModelSection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    auto_approve: _PartialRule = _PartialRule()


class _PolicyDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    default: _DefaultSection = _DefaultSection()
    models: dict[str, _ModelSection] = {}


@dataclass(frozen=True)
class PolicyDecision:
    """The policy's verdict for one version, why, and the rule it applied."""

    auto_approve: bool
    reason: str
    policy: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.auto_approve

    def to_dict(self) -> dict[str, Any]:
        return {"auto_approve": self.auto_approve, "reason": self.reason, "policy": self.policy}


class GovernancePolicy:
    """A parsed, validated policy file.

    >>> policy = GovernancePolicy.from_mapping(
    ...     {"default": {"auto_approve": {"min_primary_improvement": 0.01}},
    ...      "models": {"titans-amount": {"auto_approve": {"min_primary_improvement": 2}}}})
    >>> policy.evaluate("titans-category", True, 0.02).auto_approve
    True
    >>> decision = policy.evaluate("titans-amount", True, 1.5)
    >>> decision.auto_approve
    False
    >>> decision.reason
    'primary metric improves on production by 1.5 < required 2; a person with the approver role must approve'
    """  # noqa: E501

    def __init__(self, document: _PolicyDocument, source: str, sha256: str) -> None:
        self._document = document
        self.source = source
        self.sha256 = sha256

    # ------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: Path | str | None = None) -> GovernancePolicy:
        """Read and validate a policy file (the shipped default when ``path`` is None)."""
        file = Path(path).expanduser() if path is not None else DEFAULT_POLICY_PATH
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"governance policy {file} cannot be read ({exc.strerror or exc}); fix "
                "TITANS_GOVERNANCE_POLICY_PATH or unset it to use the default policy"
            ) from exc
        try:
            data = yaml.safe_load(raw.decode("utf-8")) if raw.strip() else {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(
                f"governance policy {file} is not valid YAML{where} ({problem}); fix the file"
            ) from exc
        return cls.from_mapping(data, source=str(file), sha256=hashlib.sha256(raw).hexdigest())

    @classmethod
    def from_mapping(
        cls, data: Any, source: str = "<policy>", sha256: str | None = None
    ) -> GovernancePolicy:
        """Validate an already parsed policy; errors name ``source`` and the field."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"governance policy {source} must be a mapping with 'default' and 'models', "
                f"not a {type(data).__name__}; fix the file"
            )
        try:
            document = _PolicyDocument.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from exc
        if sha256 is None:
            text = json.dumps(data, sort_keys=True, default=str)
            sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(document, source, sha256)

    # ------------------------------------------------------------ using

    def rule_for(self, model_name: str) -> tuple[AutoApproveRule, str]:
        """The effective rule for ``model_name`` and which entry it came from.

        Entries match the registered name (``titans-amount``) or, failing that, the name
        without its prefix (``amount``).
        """
        default = self._document.default.auto_approve
        section = self._document.models.get(model_name)
        key = model_name
        if section is None and "-" in model_name:
            key = model_name.split("-", 1)[1]
            section = self._document.models.get(key)
        if section is None:
            return default, "default"
        override = section.auto_approve
        changes = {name: getattr(override, name) for name in override.model_fields_set}
        return default.model_copy(update=changes), f"models.{key}"

    def evaluate(
        self, model_name: str, validation_passed: bool, primary_improvement: float | None
    ) -> PolicyDecision:
        """Whether ``model_name``'s new version is approved by policy, and why.

        ``primary_improvement`` is the direction-aware improvement of the primary metric over
        the current production version (None when nothing is in production).
        """
        rule, matched = self.rule_for(model_name)
        policy = {**rule.model_dump(), "matched": matched, "source": self.source}
        policy["sha256"] = self.sha256

        def no(reason: str) -> PolicyDecision:
            return PolicyDecision(
                False, f"{reason}; a person with the approver role must approve", policy
            )

        if not rule.enabled:
            return no(f"the policy ({matched}) disables auto-approval for {model_name}")
        if rule.requires_validation and not validation_passed:
            return no("validation did not pass and the policy requires it")
        checked = "validation passed" if validation_passed else "validation not required"
        if primary_improvement is None:
            if rule.first_version_auto_approve:
                return PolicyDecision(
                    True,
                    f"no production version to compare with and first_version_auto_approve is "
                    f"on; {checked}",
                    policy,
                )
            return no("no production version to compare with and first_version_auto_approve is off")
        gain = float(primary_improvement)
        if not math.isfinite(gain):
            return no(f"the primary improvement {gain} is not a finite number")
        needed = rule.min_primary_improvement
        if gain >= needed:
            return PolicyDecision(
                True,
                f"primary metric improves on production by {gain:.4g} >= required {needed:.4g}; "
                f"{checked}",
                policy,
            )
        return no(f"primary metric improves on production by {gain:.4g} < required {needed:.4g}")


def _describe(exc: ValidationError, source: str) -> str:
    """One line naming the file, the first bad field and what is wrong with it."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "<top level>"
    if first["type"] == "extra_forbidden":
        known = ", ".join(AutoApproveRule.model_fields)
        problem = (
            "is not a known field (the file holds version, default and models; each rule is "
            f"auto_approve: {{{known}}})"
        )
    else:
        problem = f"{first['msg'][:1].lower()}{first['msg'][1:]} (got {first.get('input')!r})"
    more = len(exc.errors()) - 1
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"governance policy {source}: field '{where}' {problem}{extra}; fix the file"
