"""Governance: approvals, policy and the tamper-evident audit trail."""

from __future__ import annotations

from titans.governance.audit import AuditEntry, AuditLogger, VerifyResult

__all__ = ["AuditEntry", "AuditLogger", "VerifyResult"]
