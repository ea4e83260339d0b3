"""ModelGovernanceManager: approvals with four eyes, policy auto-approval, sampled decisions.

Every request, decision, refusal and expiry is written to the hash-chained audit trail
(``titans.governance.audit``) in the same transaction as the change it records.

Identities come from ``Settings.api_keys`` and ``Settings.governance_identities`` (name and
roles); ``system`` is built in and approves only through the policy. The CLI's ``--as NAME``
is a declaration, not an authentication: the serving API authenticates with API keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

import pandas as pd
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from titans.config import Settings
from titans.errors import (
    ApprovalError,
    InputError,
    ModelNotFoundError,
    PermissionDenied,
    TitansError,
)
from titans.governance.approvals import (
    GOVERNANCE_ROLES,
    SYSTEM_ACTOR,
    ApprovalRecord,
    Identity,
    parse_model_uri,
)
from titans.governance.audit import AuditLogger
from titans.governance.decisions import decision_rows
from titans.governance.policy import GovernancePolicy, PolicyDecision
from titans.store.db import Store, acquire_lock, redact
from titans.store.models import ApprovalRequest, DecisionSample, utcnow

__all__ = [
    "SYSTEM_ACTOR",
    "ApprovalRecord",
    "Identity",
    "ModelGovernanceManager",
    "parse_model_uri",
]

_MIN_ID_PREFIX = 6


class ModelGovernanceManager:
    """Approvals (four eyes, expiry), the auto-approval policy, decision samples, model cards.

    >>> from titans.store import Store
    >>> from titans.config import GovernanceIdentity
    >>> s = Settings(governance_identities=[
    ...     GovernanceIdentity(name="ann", roles=["requester", "approver"]),
    ...     GovernanceIdentity(name="bob", roles=["approver"])])
    >>> gov = ModelGovernanceManager(s, Store(s, url="sqlite://"))
    >>> rid = gov.request_model_approval("models:/titans-category/3", "beats prod", "ann",
    ...                                  check_registry=False)
    >>> gov.approve(rid, "ann")
    Traceback (most recent call last):
    ...
    titans.errors.PermissionDenied: 'ann' requested this approval and cannot approve it \
(four eyes); ask another person with the approver role
    >>> gov.approve(rid, "bob").status, gov.is_approved("titans-category", 3)
    ('approved', True)
    >>> [e.action for e in gov.audit.entries()]
    ['approval.requested', 'approval.refused', 'approval.granted']
    """

    def __init__(self, settings: Settings | None = None, store: Store | None = None) -> None:
        self.settings = settings if settings is not None else Settings()
        self.store = store if store is not None else Store(self.settings)
        self.audit = AuditLogger(self.store)
        self._policy: GovernancePolicy | None = None

    # ------------------------------------------------------------ identities

    def identities(self) -> dict[str, Identity]:
        """Every known identity by name: API keys, governance identities and ``system``."""
        roles: dict[str, set[str]] = {}
        for key in self.settings.api_keys:
            roles.setdefault(key.name, set()).update(r for r in key.roles if r in GOVERNANCE_ROLES)
        for person in self.settings.governance_identities:
            roles.setdefault(person.name, set()).update(person.roles)
        # `system` is the policy, not a person: a configured identity cannot borrow the name
        roles[SYSTEM_ACTOR] = {"requester", "approver"}
        return {name: Identity(name, frozenset(r)) for name, r in roles.items()}

    def identity(self, name: str) -> Identity:
        """The identity called ``name``; PermissionDenied when nobody is."""
        found = self.identities().get(name.strip() if isinstance(name, str) else "")
        if found is None:
            raise PermissionDenied(
                f"{name!r} is not a known identity; add it to TITANS_GOVERNANCE_IDENTITIES "
                "(or to an API key) with the roles it needs"
            )
        return found

    # ------------------------------------------------------------ requests

    def request_model_approval(
        self,
        model_uri: str,
        justification: str,
        requester: str = SYSTEM_ACTOR,
        *,
        check_registry: bool = True,
    ) -> str:
        """Ask for approval to promote ``models:/<name>/<version>``; return the request id.

        The requester needs the requester (or admin) role; the version must exist in the
        MLflow registry (skip with ``check_registry=False``); a version with a request still
        pending cannot get a second one.
        """
        name, version = parse_model_uri(model_uri)
        if not isinstance(justification, str) or not justification.strip():
            raise InputError("a justification is required: say why this version should ship")
        requester = _actor(requester)
        self._authorise(requester, "requester", "request", name, version)
        if check_registry:
            self._check_version_exists(name, version)
        with self._version_lock(name, version, requester), self.store.session() as session:
            request_id = self._create_request(
                session, name, version, requester, justification.strip()
            )
        return request_id

    def _create_request(
        self, session: Session, name: str, version: str, requester: str, justification: str
    ) -> str:
        now = utcnow()
        self._expire_overdue(session, now, name, version)
        open_request = session.scalars(
            select(ApprovalRequest).where(
                ApprovalRequest.model_name == name,
                ApprovalRequest.model_version == version,
                ApprovalRequest.status == "pending",
            )
        ).first()
        if open_request is not None:
            raise ApprovalError(
                f"version {version} of {name} already has pending request {open_request.id} "
                f"(by {open_request.requester}); approve or reject it instead of asking again"
            )
        row = ApprovalRequest(
            id=str(uuid.uuid4()),
            model_name=name,
            model_version=version,
            model_uri=f"models:/{name}/{version}",
            requester=requester,
            justification=justification,
            status="pending",
            created_at=now,
            expires_at=now + self._ttl(),
        )
        session.add(row)
        session.flush()
        self.audit.log(
            "approval.requested",
            requester,
            name,
            version,
            {
                "request_id": row.id,
                "justification": justification,
                "expires_at": row.expires_at.isoformat(timespec="seconds"),
            },
            session=session,
        )
        return row.id

    # ------------------------------------------------------------ decisions

    def approve(self, request_id: str, approver: str, comment: str = "") -> ApprovalRecord:
        """Grant a pending request. Refused (and audited) for the requester, for anyone
        without the approver or admin role, and for ``system`` outside the policy; an expired
        or already decided request raises ApprovalError."""
        return self._decide(request_id, approver, comment or "", "approved")

    def reject(self, request_id: str, approver: str, comment: str) -> ApprovalRecord:
        """Reject a pending request; the comment (why) is required. Same refusals as approve."""
        if not isinstance(comment, str) or not comment.strip():
            raise InputError("rejecting needs a comment saying why, e.g. --comment 'MAE worse'")
        return self._decide(request_id, approver, comment.strip(), "rejected")

    def _decide(
        self,
        request_id: str,
        actor: str,
        comment: str,
        outcome: str,
        *,
        policy: PolicyDecision | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> ApprovalRecord:
        verb = "approve" if outcome == "approved" else "reject"
        actor = _actor(actor)
        request = self.get_request(request_id)
        name, version = request.model_name, request.model_version
        if actor == SYSTEM_ACTOR and policy is None:
            self._refuse(
                actor,
                request,
                verb,
                f"{SYSTEM_ACTOR!r} decides only through the governance policy; {verb} as a "
                "person with the approver role",
            )
        self._authorise(actor, "approver", verb, name, version, request_id=request.id)
        if actor == request.requester and policy is None:
            self._refuse(
                actor,
                request,
                verb,
                f"{actor!r} requested this approval and cannot {verb} it (four eyes); ask "
                "another person with the approver role",
            )
        if request.status == "expired":
            self._refuse_expired(actor, request, verb, utcnow())
        if request.status != "pending":
            self._refuse(
                actor,
                request,
                verb,
                f"request {request.id} was already {request.status} by {request.decided_by} "
                f"at {_when(request.decided_at)}; file a new request to change the decision",
                error=ApprovalError,
            )
        now = utcnow()
        if request.is_expired(now):
            self._refuse_expired(actor, request, verb, now)
        values: dict[str, Any] = {
            "status": outcome,
            "decided_by": actor,
            "decided_at": now,
            "comment": comment,
        }
        if outcome == "approved":
            values["expires_at"] = now + self._ttl()
        with self.store.session() as session:
            changed = session.execute(
                update(ApprovalRequest)
                .where(
                    ApprovalRequest.id == request.id,
                    ApprovalRequest.status == "pending",
                    ApprovalRequest.expires_at > now,
                )
                .values(**values)
            ).rowcount  # type: ignore[attr-defined]
            if changed == 1:
                entry = {
                    "request_id": request.id,
                    "requester": request.requester,
                    "comment": comment,
                    **dict(details or {}),
                }
                if outcome == "approved":
                    entry["valid_until"] = values["expires_at"].isoformat(timespec="seconds")
                if policy is not None:
                    entry.update(by_policy=True, policy_reason=policy.reason, policy=policy.policy)
                action = "approval.granted" if outcome == "approved" else "approval.rejected"
                self.audit.log(action, actor, name, version, entry, session=session)
        if changed != 1:  # someone else decided it, or it expired, between our read and write
            latest = self.get_request(request.id)
            if latest.status == "pending":
                self._refuse_expired(actor, latest, verb, now)
            self._refuse(
                actor,
                latest,
                verb,
                f"request {latest.id} was decided meanwhile ({latest.status} by "
                f"{latest.decided_by}); nothing changed",
                error=ApprovalError,
            )
        return self.get_request(request.id)

    def _authorise(
        self,
        actor: str,
        role: str,
        verb: str,
        name: str,
        version: str,
        request_id: str | None = None,
    ) -> Identity:
        try:
            identity = self.identity(actor)
        except PermissionDenied as exc:
            self._audit_refusal(actor, verb, name, version, str(exc), request_id)
            raise
        if not identity.can(role):
            held = ", ".join(sorted(identity.roles)) or "none"
            message = (
                f"{actor!r} (roles: {held}) cannot {verb}: it needs the {role} or admin role; "
                "ask an admin to grant it"
            )
            self._audit_refusal(actor, verb, name, version, message, request_id)
            raise PermissionDenied(message)
        return identity

    def _refuse_expired(
        self, actor: str, request: ApprovalRecord, verb: str, now: datetime
    ) -> NoReturn:
        if request.status == "pending":
            with self.store.session() as session:
                self._expire_overdue(session, now, request.model_name, request.model_version)
        self._refuse(
            actor,
            request,
            verb,
            f"request {request.id} expired at {_when(request.expires_at)} undecided; request "
            f"approval for {request.model_uri} again",
            error=ApprovalError,
        )

    def _refuse(
        self,
        actor: str,
        request: ApprovalRecord,
        verb: str,
        message: str,
        error: type[Exception] = PermissionDenied,
    ) -> NoReturn:
        self._audit_refusal(
            actor, verb, request.model_name, request.model_version, message, request.id
        )
        raise error(message)

    def _audit_refusal(
        self,
        actor: str,
        verb: str,
        name: str,
        version: str,
        reason: str,
        request_id: str | None,
    ) -> None:
        details: dict[str, Any] = {"attempted": verb, "reason": reason}
        if request_id is not None:
            details["request_id"] = request_id
        who = actor.strip() if isinstance(actor, str) and actor.strip() else "<unnamed>"
        self.audit.log("approval.refused", who, name, version, details)

    def _expire_overdue(
        self,
        session: Session,
        now: datetime,
        name: str | None = None,
        version: str | None = None,
    ) -> int:
        """Mark pending requests past their deadline expired, one audit entry each."""
        stmt = select(ApprovalRequest).where(
            ApprovalRequest.status == "pending", ApprovalRequest.expires_at <= now
        )
        if name is not None:
            stmt = stmt.where(ApprovalRequest.model_name == name)
        if version is not None:
            stmt = stmt.where(ApprovalRequest.model_version == version)
        expired = 0
        for row in session.scalars(stmt).all():
            changed = session.execute(
                update(ApprovalRequest)
                .where(ApprovalRequest.id == row.id, ApprovalRequest.status == "pending")
                .values(status="expired")
            ).rowcount  # type: ignore[attr-defined]
            if changed == 1:
                expired += 1
                self.audit.log(
                    "approval.expired",
                    SYSTEM_ACTOR,
                    row.model_name,
                    row.model_version,
                    {
                        "request_id": row.id,
                        "requester": row.requester,
                        "expired_at": row.expires_at.isoformat(timespec="seconds"),
                    },
                    session=session,
                )
        return expired

    # ------------------------------------------------------------ reading

    def get_request(self, request_id: str) -> ApprovalRecord:
        """The request with this id (or a unique prefix of at least 6 characters)."""
        wanted = request_id.strip().lower() if isinstance(request_id, str) else ""
        if len(wanted) < _MIN_ID_PREFIX:
            raise InputError(
                f"request id {request_id!r} is too short; give the id shown by "
                "`titans governance pending` (at least 6 characters)"
            )
        with self.store.session() as session:
            row = session.get(ApprovalRequest, wanted)
            if row is not None:
                return ApprovalRecord.from_row(row)
            escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = session.scalars(
                select(ApprovalRequest)
                .where(ApprovalRequest.id.like(f"{escaped}%", escape="\\"))
                .limit(2)
            ).all()
        if not rows:
            raise InputError(
                f"no approval request {request_id!r}; list open ones with "
                "`titans governance pending`"
            )
        if len(rows) > 1:
            raise InputError(f"request id prefix {request_id!r} is ambiguous; give more of it")
        return ApprovalRecord.from_row(rows[0])

    def pending(self, model_name: str | None = None) -> list[ApprovalRecord]:
        """Requests still waiting for a decision, oldest first (overdue ones expire first)."""
        with self.store.session() as session:
            self._expire_overdue(session, utcnow(), model_name)
        return self.requests(model_name=model_name, status="pending")

    def requests(
        self,
        model_name: str | None = None,
        status: str | None = None,
        version: str | int | None = None,
    ) -> list[ApprovalRecord]:
        """Every request (optionally of one model, version or status), oldest first."""
        stmt = select(ApprovalRequest).order_by(ApprovalRequest.created_at, ApprovalRequest.id)
        if model_name is not None:
            stmt = stmt.where(ApprovalRequest.model_name == model_name)
        if version is not None:
            stmt = stmt.where(ApprovalRequest.model_version == str(version))
        if status is not None:
            stmt = stmt.where(ApprovalRequest.status == status)
        with self.store.session() as session:
            return [ApprovalRecord.from_row(r) for r in session.scalars(stmt)]

    def is_approved(self, model_name: str, version: str | int) -> bool:
        """True when a granted approval for this version exists and has not expired."""
        with self.store.session() as session:
            found = session.scalar(
                select(ApprovalRequest.id)
                .where(
                    ApprovalRequest.model_name == model_name,
                    ApprovalRequest.model_version == str(version),
                    ApprovalRequest.status == "approved",
                    ApprovalRequest.expires_at > utcnow(),
                )
                .limit(1)
            )
        return found is not None

    # ------------------------------------------------------------ policy

    @property
    def policy(self) -> GovernancePolicy:
        """The governance policy (read once from Settings.governance_policy_path or the default)."""
        if self._policy is None:
            self._policy = GovernancePolicy.load(self.settings.governance_policy_path)
        return self._policy

    def evaluate_policy(
        self, model_name: str, validation_passed: bool, primary_improvement: float | None
    ) -> PolicyDecision:
        """Whether the policy approves a version of ``model_name`` without a person, and why.

        ``primary_improvement``: direction-aware improvement of the primary metric over the
        current production version in the metric's units; None when nothing is in production.
        """
        return self.policy.evaluate(model_name, bool(validation_passed), primary_improvement)

    def auto_approve_if_allowed(
        self,
        model_uri: str,
        validation_passed: bool,
        primary_improvement: float | None,
        requester: str = SYSTEM_ACTOR,
        *,
        check_registry: bool = True,
    ) -> str | None:
        """Approve ``model_uri`` as ``system`` when the policy allows; return the request id.

        A request already pending for the version is the one approved; otherwise one is filed.
        Returns None (and audits ``approval.policy_declined``) when a person must decide.
        """
        name, version = parse_model_uri(model_uri)
        requester = _actor(requester)
        decision = self.evaluate_policy(name, validation_passed, primary_improvement)
        facts = {
            "validation_passed": bool(validation_passed),
            "primary_improvement": (
                None if primary_improvement is None else float(primary_improvement)
            ),
        }
        if not decision.auto_approve:
            self.audit.log(
                "approval.policy_declined",
                SYSTEM_ACTOR,
                name,
                version,
                {"reason": decision.reason, "policy": decision.policy, **facts},
            )
            return None
        self._authorise(requester, "requester", "request", name, version)
        if check_registry:
            self._check_version_exists(name, version)
        with self._version_lock(name, version, SYSTEM_ACTOR):
            granted = [r for r in self.requests(name, "approved", version) if r.active]
            if granted:  # already approved and still valid: nothing to decide
                return granted[-1].id
            open_requests = [
                r for r in self.requests(name, "pending", version) if not r.is_expired()
            ]
            if open_requests:
                request_id = open_requests[0].id
            else:
                with self.store.session() as session:
                    request_id = self._create_request(
                        session, name, version, requester, f"policy: {decision.reason}"
                    )
            self._decide(
                request_id,
                SYSTEM_ACTOR,
                decision.reason,
                "approved",
                policy=decision,
                details=facts,
            )
        return request_id

    # ------------------------------------------------------------ decisions of the models

    def audit_model_decisions(
        self,
        model_name: str,
        predictions: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        seed: int | None = None,
    ) -> int:
        """Keep a seeded sample of model decisions for compliance review; return how many.

        ``predictions``: rows with the input fields (or one ``input`` column of dicts), the
        output (``output``/``prediction``/``score``/``confidence``/``probability``), the model
        version (``model_version``) and optionally ``timestamp`` (default: now) and
        ``prediction_id``. Each row is kept with probability ``decision_sample_rate`` (at
        least one row per non-empty call); the choice depends only on the row's content and
        the seed, so a replay keeps the same rows. Stored: SHA-256 of the input's canonical
        JSON, the output as JSON, the version and the decision time.
        """
        rows = decision_rows(
            model_name,
            predictions,
            self.settings.decision_sample_rate,
            self.settings.seed if seed is None else seed,
        )
        if rows:
            with self.store.session() as session:
                session.execute(insert(DecisionSample), rows)
        return len(rows)

    def prune_decisions(self, model_name: str | None = None) -> int:
        """Delete decision samples older than ``decision_retention_days``; return how many.

        A deletion is audited (``decisions.pruned``), so retention is provable.
        """
        cutoff = utcnow() - timedelta(days=self.settings.decision_retention_days)
        stmt = delete(DecisionSample).where(DecisionSample.ts < cutoff)
        if model_name is not None:
            stmt = stmt.where(DecisionSample.model_name == model_name)
        with self.store.session() as session:
            deleted = int(session.execute(stmt).rowcount or 0)  # type: ignore[attr-defined]
            if deleted:
                self.audit.log(
                    "decisions.pruned",
                    SYSTEM_ACTOR,
                    model_name,
                    None,
                    {
                        "deleted": deleted,
                        "older_than": cutoff.isoformat(timespec="seconds"),
                        "retention_days": self.settings.decision_retention_days,
                    },
                    session=session,
                )
        return deleted

    def decision_samples(self, model_name: str | None = None) -> list[dict[str, Any]]:
        """The kept decision samples, oldest first, as plain dicts."""
        stmt = select(DecisionSample).order_by(DecisionSample.ts, DecisionSample.id)
        if model_name is not None:
            stmt = stmt.where(DecisionSample.model_name == model_name)
        with self.store.session() as session:
            return [
                {
                    "ts": r.ts,
                    "model_name": r.model_name,
                    "model_version": r.model_version,
                    "input_hash": r.input_hash,
                    "output": r.output,
                }
                for r in session.scalars(stmt)
            ]

    # ------------------------------------------------------------ documentation

    def generate_model_documentation(self, model_name: str) -> str:
        """A Markdown model card: intended use, versions, lineage, metrics vs baseline,
        validation and fairness, approvals and limitations ("not recorded" where missing)."""
        from titans.governance.model_card import (
            attach_approvals,
            model_card_context,
            render_model_card,
        )

        context = model_card_context(model_name, self.settings)
        attach_approvals(context, self.requests(context["name"]))
        return render_model_card(context)

    # ------------------------------------------------------------ plumbing

    def _ttl(self) -> timedelta:
        return timedelta(hours=self.settings.approval_ttl_hours)

    def _version_lock(self, name: str, version: str, holder: str) -> Any:
        return acquire_lock(self.store, f"approval:{name}:{version}", holder, ttl_seconds=60)

    def _check_version_exists(self, name: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        from titans.governance.model_card import registry_client

        client = registry_client(self.settings)
        try:
            client.get_model_version(name, version)
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise ModelNotFoundError(
                    f"version {version} of {name} is not in the registry; list versions with "
                    "`titans registry list` or train one with `titans train`"
                ) from exc
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.error_code
            raise TitansError(
                f"the model registry at {redact(self.settings.tracking_uri)} could not say "
                f"whether {name} version {version} exists ({first_line}); check "
                "TITANS_TRACKING_URI"
            ) from exc


def _actor(name: str) -> str:
    """An identity name as given, without surrounding blanks ("" when not a string)."""
    return name.strip() if isinstance(name, str) else ""


def _when(value: datetime | None) -> str:
    return "an unknown time" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")
