"""Governance: approvals, policy and the tamper-evident audit trail."""

from __future__ import annotations

from titans.governance.audit import AuditEntry, AuditLogger, VerifyResult
from titans.governance.governance import ApprovalRecord, ModelGovernanceManager
from titans.governance.policy import GovernancePolicy, PolicyDecision

__all__ = [
    "ApprovalRecord",
    "AuditEntry",
    "AuditLogger",
    "GovernancePolicy",
    "ModelGovernanceManager",
    "PolicyDecision",
    "VerifyResult",
]
