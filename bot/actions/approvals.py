"""The life of an action request: decided by policy, approved in the thread, run exactly once, audited.

States: `denied`, `pending` (waiting for approvals), `approved` (ready to run), `running`, `succeeded`,
`failed`, `rejected`, `cancelled`, `expired`, `needs_attention` (a run was interrupted and the action
is not idempotent, so a person decides). Every transition is a conditional UPDATE (only one click, one
replica, wins) written in the same transaction as its audit entry.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bot.actions.models import ActionRequest, ActionSpec, Actor, ApprovalRequirement, Decision
from bot.store.actions import action_requests, append_audit, approvals
from bot.store.schema import upgrade

PENDING, APPROVED, RUNNING = "pending", "approved", "running"
DENIED, REJECTED, CANCELLED, EXPIRED = "denied", "rejected", "cancelled", "expired"
SUCCEEDED, FAILED, NEEDS_ATTENTION = "succeeded", "failed", "needs_attention"
FINISHED = frozenset({DENIED, REJECTED, CANCELLED, EXPIRED, SUCCEEDED, FAILED, NEEDS_ATTENTION})
REDACTED = "[redacted]"


class Gate(Protocol):
    """What approvals need from the policy: decisions, approver checks and the action catalog."""

    @property
    def version(self) -> str:
        """The policy version (hash of the policy files)."""
        ...

    def decide(self, request: ActionRequest, actor: Actor, now: dt.datetime) -> Decision:
        """Deny, allow or require approval."""
        ...

    def may_approve(self, user: str, requester: str, requirement: ApprovalRequirement) -> tuple[bool, str]:
        """Whether `user` counts towards `requirement`, and why not."""
        ...

    def action(self, name: str) -> ActionSpec | None:
        """An action of the catalog."""
        ...


@dataclass(frozen=True)
class RequestView:
    """A request as the approval card and the CLI show it."""

    request_id: str
    action: str
    params: dict[str, Any]
    requester: str
    channel: str | None
    thread_ts: str | None
    status: str
    rule: str | None
    reason: str
    policy_version: str
    required_count: int
    required_groups: tuple[str, ...]
    deadline: float | None
    approvers: tuple[str, ...] = ()
    result_summary: str | None = None
    result_output: str | None = None


@dataclass(frozen=True)
class ClickResult:
    """What a click did: whether anything changed, what to tell the clicker, and the request now."""

    changed: bool
    message: str
    request: RequestView | None
    ready_to_run: bool = False


@dataclass
class ApprovalService:
    """Requests, approvals and execution claims over the state database."""

    engine: Engine
    gate: Callable[[], Gate]
    clock: Callable[[], float] = time.time
    _ready: bool = field(default=False, init=False)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        if not self._ready:
            upgrade(self.engine)
            self._ready = True
        with self.engine.begin() as connection:
            yield connection

    # -- reading -------------------------------------------------------------------------------

    def get(self, request_id: str) -> RequestView | None:
        """A request with its current approvers."""
        with self._begin() as connection:
            return self._view(connection, request_id)

    def _view(self, connection: Connection, request_id: str) -> RequestView | None:
        row = connection.execute(
            sa.select(action_requests).where(action_requests.c.request_id == request_id)
        ).first()
        if row is None:
            return None
        m = row._mapping
        approvers = connection.execute(
            sa.select(approvals.c.approver)
            .where(
                approvals.c.request_id == request_id,
                approvals.c.fingerprint == m["fingerprint"],
                approvals.c.revoked_at.is_(None),
            )
            .order_by(approvals.c.approval_id)
        ).scalars()
        return RequestView(
            request_id=m["request_id"],
            action=m["action"],
            params=json.loads(m["params"]),
            requester=m["requester"],
            channel=m["channel"],
            thread_ts=m["thread_ts"],
            status=m["status"],
            rule=m["rule"],
            reason=m["reason"],
            policy_version=m["policy_version"],
            required_count=int(m["required_count"] or 0),
            required_groups=tuple(json.loads(m["required_groups"] or "[]")),
            deadline=m["deadline"],
            approvers=tuple(str(a) for a in approvers),
            result_summary=m["result_summary"],
            result_output=m["result_output"],
        )

    # -- requesting ----------------------------------------------------------------------------

    def submit(
        self, request: ActionRequest, actor: Actor, thread_ts: str | None = None
    ) -> tuple[RequestView, Decision]:
        """Decide a request by policy and record it: denied, approved (allowed) or pending approval."""
        gate = self.gate()
        now = self.clock()
        decision = gate.decide(request, actor, dt.datetime.fromtimestamp(now, tz=dt.UTC))
        requirement = decision.approval
        request_id = str(uuid.uuid4())
        stored = _redacted(request, gate.action(request.action))
        with self._begin() as connection:
            connection.execute(
                sa.insert(action_requests).values(
                    request_id=request_id,
                    action=request.action,
                    requester=actor.user_id,
                    channel=actor.channel,
                    thread_ts=thread_ts,
                    created_at=now,
                    **_decided_columns(request, stored, decision, now),
                )
            )
            append_audit(
                connection,
                at=now,
                kind="requested",
                request_id=request_id,
                actor=actor.user_id,
                data={"action": request.action, "params": stored, "channel": actor.channel},
            )
            append_audit(
                connection,
                at=now,
                kind="decided",
                request_id=request_id,
                actor="policy",
                data={
                    "outcome": decision.outcome,
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "policy_version": decision.policy_version,
                    "approval": requirement.model_dump() if requirement else None,
                },
            )
            view = self._view(connection, request_id)
        assert view is not None
        return view, decision

    # -- clicks --------------------------------------------------------------------------------

    def approve(self, request_id: str, user: str) -> ClickResult:
        """Count one approval; the request becomes runnable when enough valid approvals are in."""
        try:
            return self._approve(request_id, user)
        except IntegrityError:  # the same person's concurrent click won the race
            return ClickResult(False, "You have already approved this request.", self.get(request_id))

    def _approve(self, request_id: str, user: str) -> ClickResult:
        now = self.clock()
        gate = self.gate()
        with self._begin() as connection:
            view, refusal = self._decider(connection, request_id, user, gate, now)
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            fingerprint = ActionRequest(action=view.action, params=view.params).fingerprint(gate.version)
            if gate.version != view.policy_version:
                # The policy changed since the request: decide again; earlier approvals no longer count.
                return self._redecide(connection, view, gate, now)
            if user in view.approvers:
                return ClickResult(False, "You have already approved this request.", view)
            # An approval given, revoked and given again is the same row, live again.
            renewed = connection.execute(
                sa.update(approvals)
                .where(
                    approvals.c.request_id == request_id,
                    approvals.c.approver == user,
                    approvals.c.fingerprint == fingerprint,
                    approvals.c.revoked_at.is_not(None),
                )
                .values(revoked_at=None, decided_at=now)
            ).rowcount
            if not renewed:
                connection.execute(
                    sa.insert(approvals).values(
                        request_id=request_id, approver=user, fingerprint=fingerprint, decided_at=now
                    )
                )
            append_audit(connection, at=now, kind="approval", request_id=request_id, actor=user, data={})
            view = self._view(connection, request_id)
            assert view is not None
            if len(view.approvers) < view.required_count:
                missing = view.required_count - len(view.approvers)
                return ClickResult(True, f"Approved. {missing} more approval(s) needed.", view)
            moved = _move(connection, request_id, PENDING, APPROVED, now)
            if moved:
                append_audit(
                    connection,
                    at=now,
                    kind="approved",
                    request_id=request_id,
                    actor=None,
                    data={"approvers": list(view.approvers)},
                )
            view = self._view(connection, request_id)
        return ClickResult(True, "Approved: the action will run now.", view, ready_to_run=bool(moved))

    def reject(self, request_id: str, user: str, reason: str) -> ClickResult:
        """An eligible approver rejects; nothing will run."""
        now = self.clock()
        gate = self.gate()
        with self._begin() as connection:
            view, refusal = self._decider(connection, request_id, user, gate, now)
            if refusal is not None or view is None:
                refusal = refusal or ClickResult(False, "There is no such request.", None)
                return ClickResult(
                    refusal.changed, refusal.message.replace("approve", "reject"), refusal.request
                )
            if not _move(connection, request_id, PENDING, REJECTED, now):
                return ClickResult(False, "This request is no longer waiting for approval.", view)
            append_audit(
                connection,
                at=now,
                kind="rejected",
                request_id=request_id,
                actor=user,
                data={"reason": reason},
            )
            view = self._view(connection, request_id)
        return ClickResult(True, "Rejected.", view)

    def cancel(self, request_id: str, user: str) -> ClickResult:
        """The requester withdraws a request that has not started running."""
        now = self.clock()
        with self._begin() as connection:
            view = self._view(connection, request_id)
            if view is None:
                return ClickResult(False, "There is no such request.", None)
            if user != view.requester:
                return ClickResult(False, "Only the requester can cancel this request.", view)
            moved = _move(connection, request_id, PENDING, CANCELLED, now) or _move(
                connection, request_id, APPROVED, CANCELLED, now
            )
            if not moved:
                return ClickResult(
                    False, f"This request is {view.status}; it can no longer be cancelled.", view
                )
            append_audit(connection, at=now, kind="cancelled", request_id=request_id, actor=user, data={})
            view = self._view(connection, request_id)
        return ClickResult(True, "Cancelled.", view)

    def revoke(self, request_id: str, user: str) -> ClickResult:
        """An approver takes their approval back before the action runs."""
        now = self.clock()
        with self._begin() as connection:
            view = self._view(connection, request_id)
            if view is None or user not in view.approvers:
                return ClickResult(False, "You have no approval on this request to revoke.", view)
            if view.status not in (PENDING, APPROVED):
                return ClickResult(
                    False, f"This request is {view.status}; the approval can no longer be revoked.", view
                )
            connection.execute(
                sa.update(approvals)
                .where(
                    approvals.c.request_id == request_id,
                    approvals.c.approver == user,
                    approvals.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            remaining = len(view.approvers) - 1
            if remaining < view.required_count:
                _move(connection, request_id, APPROVED, PENDING, now)  # below quorum again
            append_audit(connection, at=now, kind="revoked", request_id=request_id, actor=user, data={})
            view = self._view(connection, request_id)
        return ClickResult(True, "Your approval is revoked.", view)

    def amend(self, request_id: str, user: str, params: dict[str, Any]) -> ClickResult:
        """The requester changes the parameters of a pending request: it is decided again, approvals reset."""
        now = self.clock()
        gate = self.gate()
        with self._begin() as connection:
            view = self._view(connection, request_id)
            refusal = self._refuse_finished(connection, view, now)
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            if user != view.requester:
                return ClickResult(False, "Only the requester can change this request.", view)
            request = ActionRequest(action=view.action, params=params)
            decision = gate.decide(request, Actor(user_id=user, channel=view.channel), _utc(now))
            status = STATUS_OF[decision.outcome]
            stored = _redacted(request, gate.action(view.action))
            connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == PENDING)
                # A new fingerprint: approvals given for the old parameters no longer count.
                .values(**_decided_columns(request, stored, decision, now))
            )
            append_audit(
                connection,
                at=now,
                kind="amended",
                request_id=request_id,
                actor=user,
                data={"params": stored, "outcome": decision.outcome, "rule": decision.rule},
            )
            view = self._view(connection, request_id)
        return ClickResult(
            True, "Changed; earlier approvals no longer count.", view, ready_to_run=status == APPROVED
        )

    def _decider(
        self,
        connection: Connection,
        request_id: str,
        user: str,
        gate: Gate,
        now: float,
        verb: str = "approve",
    ) -> tuple[RequestView | None, ClickResult | None]:
        """The pending request and no refusal when `user` may decide on it; otherwise the refusal."""
        view = self._view(connection, request_id)
        refusal = self._refuse_finished(connection, view, now)
        if refusal is not None or view is None:
            return view, refusal
        requirement = ApprovalRequirement(
            count=max(view.required_count, 1), groups=view.required_groups or ("nobody",), within_minutes=1
        )
        allowed, why = gate.may_approve(user, view.requester, requirement)
        return view, (None if allowed else ClickResult(False, why.replace("approve", verb), view))

    def _refuse_finished(
        self, connection: Connection, view: RequestView | None, now: float
    ) -> ClickResult | None:
        if view is None:
            return ClickResult(False, "There is no such request.", None)
        if view.status == PENDING and view.deadline is not None and now > view.deadline:
            if _move(connection, view.request_id, PENDING, EXPIRED, now):
                append_audit(
                    connection, at=now, kind="expired", request_id=view.request_id, actor=None, data={}
                )
            return ClickResult(
                False, "This request has expired; nothing will run. Ask again if it is still needed.", view
            )
        if view.status != PENDING:
            return ClickResult(
                False, f"This request is already {view.status}; your click changed nothing.", view
            )
        return None

    def _redecide(self, connection: Connection, view: RequestView, gate: Gate, now: float) -> ClickResult:
        request = ActionRequest(action=view.action, params=view.params)
        decision = gate.decide(
            request,
            Actor(user_id=view.requester, channel=view.channel),
            dt.datetime.fromtimestamp(now, tz=dt.UTC),
        )
        status = {"deny": DENIED, "allow": PENDING, "require_approval": PENDING}[decision.outcome]
        requirement = decision.approval
        connection.execute(
            sa.update(action_requests)
            .where(action_requests.c.request_id == view.request_id, action_requests.c.status == PENDING)
            .values(
                status=status,
                rule=decision.rule,
                reason=decision.reason,
                policy_version=decision.policy_version,
                fingerprint=request.fingerprint(decision.policy_version),
                required_count=requirement.count if requirement else 1,
                required_groups=json.dumps(
                    list(requirement.groups) if requirement else list(view.required_groups)
                ),
                updated_at=now,
            )
        )
        append_audit(
            connection,
            at=now,
            kind="redecided",
            request_id=view.request_id,
            actor="policy",
            data={
                "outcome": decision.outcome,
                "rule": decision.rule,
                "policy_version": decision.policy_version,
            },
        )
        return ClickResult(
            True,
            "The policy changed since this request was made, so earlier approvals no longer count. "
            "It has been decided again; please approve again if you still agree.",
            self._view(connection, view.request_id),
        )

    # -- time and execution ----------------------------------------------------------------------

    def expire_due(self) -> list[str]:
        """Expire every pending request past its deadline (fail closed); returns their ids."""
        now = self.clock()
        expired = []
        with self._begin() as connection:
            due = (
                connection.execute(
                    sa.select(action_requests.c.request_id).where(
                        action_requests.c.status == PENDING, action_requests.c.deadline < now
                    )
                )
                .scalars()
                .all()
            )
            for request_id in due:
                if _move(connection, request_id, PENDING, EXPIRED, now):
                    append_audit(
                        connection, at=now, kind="expired", request_id=request_id, actor=None, data={}
                    )
                    expired.append(str(request_id))
        return expired

    def claim(self, request_id: str) -> bool:
        """Take the right to run an approved request; exactly one caller (anywhere) gets True."""
        now = self.clock()
        with self._begin() as connection:
            claimed = connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == APPROVED)
                .values(status=RUNNING, claimed_at=now, updated_at=now)
            ).rowcount
            if claimed:
                append_audit(
                    connection, at=now, kind="execution_started", request_id=request_id, actor=None, data={}
                )
        return bool(claimed)

    def finish(self, request_id: str, ok: bool, summary: str, output: str, duration_seconds: float) -> None:
        """Record the result of a run this process claimed."""
        now = self.clock()
        with self._begin() as connection:
            connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == RUNNING)
                .values(
                    status=SUCCEEDED if ok else FAILED,
                    result_summary=summary,
                    result_output=output,
                    duration_seconds=duration_seconds,
                    updated_at=now,
                )
            )
            append_audit(
                connection,
                at=now,
                kind="execution_finished",
                request_id=request_id,
                actor=None,
                data={"ok": ok, "summary": summary, "duration_seconds": round(duration_seconds, 3)},
            )

    def recover_interrupted(self, older_than_seconds: float) -> list[tuple[str, str]]:
        """Runs claimed long ago and never finished: idempotent ones run again, others wait for a person."""
        now = self.clock()
        recovered = []
        with self._begin() as connection:
            stuck = connection.execute(
                sa.select(action_requests.c.request_id, action_requests.c.action).where(
                    action_requests.c.status == RUNNING,
                    action_requests.c.claimed_at < now - older_than_seconds,
                )
            ).all()
            gate = self.gate() if stuck else None  # the policy is read only when something is stuck
            for request_id, action_name in stuck:
                spec = gate.action(action_name) if gate is not None else None
                target = APPROVED if spec is not None and spec.idempotent else NEEDS_ATTENTION
                if _move(connection, request_id, RUNNING, target, now):
                    append_audit(
                        connection,
                        at=now,
                        kind="interrupted",
                        request_id=request_id,
                        actor=None,
                        data={"now": target},
                    )
                    recovered.append((str(request_id), target))
        return recovered


STATUS_OF = {"deny": DENIED, "allow": APPROVED, "require_approval": PENDING}


def _decided_columns(
    request: ActionRequest, stored: dict[str, Any], decision: Decision, now: float
) -> dict[str, Any]:
    """The request's columns that follow from its (redacted) parameters and the policy's decision."""
    requirement = decision.approval
    return {
        "params": json.dumps(stored, sort_keys=True, default=str),
        "status": STATUS_OF[decision.outcome],
        "rule": decision.rule,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
        "fingerprint": request.fingerprint(decision.policy_version),
        "required_count": requirement.count if requirement else 0,
        "required_groups": json.dumps(list(requirement.groups) if requirement else []),
        "deadline": now + requirement.within_minutes * 60 if requirement else None,
        "updated_at": now,
    }


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def _move(connection: Connection, request_id: str, source: str, target: str, now: float) -> bool:
    """A conditional state change: True only for the caller that found the request in `source`."""
    return bool(
        connection.execute(
            sa.update(action_requests)
            .where(action_requests.c.request_id == request_id, action_requests.c.status == source)
            .values(status=target, updated_at=now)
        ).rowcount
    )


def _redacted(request: ActionRequest, spec: ActionSpec | None) -> dict[str, Any]:
    """The parameters with secret ones masked, as they are stored and audited."""
    secret = {param.name for param in spec.params if param.secret} if spec else set()
    return {key: (REDACTED if key in secret else value) for key, value in request.params.items()}
