"""Approval requests as read from the ops store, identities and model version URIs."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from titans.errors import InputError
from titans.store.models import ApprovalRequest, utcnow

__all__ = [
    "GOVERNANCE_ROLES",
    "SYSTEM_ACTOR",
    "ApprovalRecord",
    "Identity",
    "parse_model_uri",
]

#: the built-in identity that approves when the policy allows (never a person)
SYSTEM_ACTOR = "system"
GOVERNANCE_ROLES = ("requester", "approver", "admin")

_MODEL_URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)/(?P<version>[1-9][0-9]*)$")


def parse_model_uri(model_uri: str) -> tuple[str, str]:
    """Registered name and version of ``models:/<name>/<version>``.

    >>> parse_model_uri("models:/titans-category/3")
    ('titans-category', '3')
    >>> parse_model_uri("models:/titans-category@production")
    Traceback (most recent call last):
    ...
    titans.errors.InputError: 'models:/titans-category@production' is not a model version URI; \
use models:/NAME/VERSION, e.g. models:/titans-category/3
    """
    match = _MODEL_URI.match(model_uri.strip()) if isinstance(model_uri, str) else None
    if match is None:
        raise InputError(
            f"{model_uri!r} is not a model version URI; use models:/NAME/VERSION, "
            "e.g. models:/titans-category/3"
        )
    return match["name"], match["version"]


@dataclass(frozen=True)
class Identity:
    """Someone (or ``system``) who may act in governance, and the roles they hold."""

    name: str
    roles: frozenset[str]

    def can(self, role: str) -> bool:
        """True when the identity holds ``role`` or is an admin."""
        return role in self.roles or "admin" in self.roles


@dataclass(frozen=True)
class ApprovalRecord:
    """One approval request and its decision, as stored.

    A pending request must be decided before ``expires_at``; once granted, ``expires_at`` is
    when the approval stops counting (``approval_ttl_hours`` after the grant).
    """

    id: str
    model_name: str
    model_version: str
    model_uri: str
    requester: str
    justification: str
    status: str
    created_at: datetime
    expires_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None

    @classmethod
    def from_row(cls, row: ApprovalRequest) -> ApprovalRecord:
        return cls(
            id=row.id,
            model_name=row.model_name,
            model_version=row.model_version,
            model_uri=row.model_uri,
            requester=row.requester,
            justification=row.justification,
            status=row.status,
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_by=row.decided_by,
            decided_at=row.decided_at,
            comment=row.comment,
        )

    def is_expired(self, now: datetime | None = None) -> bool:
        """True once ``expires_at`` has passed."""
        return self.expires_at <= (now or utcnow())

    @property
    def active(self) -> bool:
        """A granted approval that still counts for promotion."""
        return self.status == "approved" and not self.is_expired()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (timestamps as ISO 8601 UTC)."""
        out = asdict(self)
        for key in ("created_at", "expires_at", "decided_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat(timespec="seconds")
        out["active"] = self.active
        return out
