"""Approval routes (role ``approver``): pending requests, approve, reject.

Decisions go through ModelGovernanceManager with the API key's name as the approver, so the
four-eyes rule, expiry and the audit log apply exactly as in the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from titans.errors import ApprovalError, InputError, PermissionDenied
from titans.governance.approvals import ApprovalRecord
from titans.governance.governance import ModelGovernanceManager
from titans.serving.auth import Identity
from titans.serving.deps import SettingsDep, StoreDep, authenticate
from titans.serving.schemas import ApprovalInfo, DecisionRequest, ErrorResponse, PendingResponse

router = APIRouter(prefix="/approvals", tags=["approvals"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    c: {"model": ErrorResponse} for c in (401, 403, 404, 409, 422)
}


def require_approver(
    identity: Annotated[Identity | None, Depends(authenticate)],
) -> Identity:
    """A key with role ``approver`` (approving needs a name, so never anonymous)."""
    if identity is None:
        raise HTTPException(403, "approval routes need an API key with the role 'approver'")
    if not identity.has_role("approver"):
        raise HTTPException(
            403, f"API key {identity.name!r} lacks the role 'approver'; use a key that has it"
        )
    return identity


ApproverKey = Annotated[Identity, Depends(require_approver)]


def _info(record: ApprovalRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "model_name": record.model_name,
        "model_version": record.model_version,
        "requester": record.requester,
        "justification": record.justification,
        "status": record.status,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat(),
        "decided_by": record.decided_by,
        "comment": record.comment,
    }


@router.get("/pending", response_model=PendingResponse, responses=_ERRORS)
def pending(settings: SettingsDep, store: StoreDep, _: ApproverKey) -> dict[str, Any]:
    """Requests still waiting for a decision, oldest first."""
    governance = ModelGovernanceManager(settings, store)
    return {"pending": [_info(r) for r in governance.pending()]}


def _decide(
    governance: ModelGovernanceManager, request_id: str, approver: str, comment: str, verb: str
) -> dict[str, Any]:
    try:
        governance.get_request(request_id)
    except InputError as exc:
        raise HTTPException(404, str(exc)) from exc
    try:
        if verb == "approve":
            record = governance.approve(request_id, approver, comment)
        else:
            record = governance.reject(request_id, approver, comment)
    except PermissionDenied as exc:
        raise HTTPException(403, str(exc)) from exc
    except ApprovalError as exc:
        raise HTTPException(409, str(exc)) from exc
    except InputError as exc:
        raise HTTPException(422, str(exc)) from exc
    return _info(record)


@router.post("/{request_id}/approve", response_model=ApprovalInfo, responses=_ERRORS)
def approve(
    request_id: str,
    body: DecisionRequest,
    settings: SettingsDep,
    store: StoreDep,
    identity: ApproverKey,
) -> dict[str, Any]:
    """Grant a pending request; 403 for the requester (four eyes), 409 decided or expired."""
    governance = ModelGovernanceManager(settings, store)
    return _decide(governance, request_id, identity.name, body.comment, "approve")


@router.post("/{request_id}/reject", response_model=ApprovalInfo, responses=_ERRORS)
def reject(
    request_id: str,
    body: DecisionRequest,
    settings: SettingsDep,
    store: StoreDep,
    identity: ApproverKey,
) -> dict[str, Any]:
    """Reject a pending request (a comment saying why is required: 422 without one)."""
    governance = ModelGovernanceManager(settings, store)
    return _decide(governance, request_id, identity.name, body.comment, "reject")
