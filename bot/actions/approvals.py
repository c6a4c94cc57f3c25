"""The life of an action request: decided by policy, approved in the thread, run exactly once, audited.

States: `denied`, `pending` (waiting for approvals), `approved` (ready to run), `running`, `succeeded`,
`failed`, `rejected`, `cancelled`, `expired`, `needs_attention` (a run was interrupted and the action
is not idempotent, so a person decides). Every transition is a conditional UPDATE (only one click, one
replica, wins) written in the same transaction as its audit entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, Decision, Verb
from bot.actions.request_state import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    FAILED,
    FINISHED,
    NEEDS_ATTENTION,
    PENDING,
    REDACTED,
    REJECTED,
    RUNNING,
    STATUS_OF,
    SUCCEEDED,
    ClickResult,
    Gate,
    RequestView,
    carries_secrets,
    decided_columns,
    move,
    no_waiting_with_secrets,
    read_view,
    redacted,
    redecide,
    refuse_finished,
    secret_values,
    utc,
)
from bot.actions.standing import decide_now, quorum_met, reassess
from bot.store.action_requests import (
    action_requests,
    append_audit,
    approvals,
    authorised_in_log,
    lock_audit,
    policy_versions,
)
from bot.store.schema import upgrade

__all__ = [
    "APPROVED",
    "CANCELLED",
    "DENIED",
    "EXPIRED",
    "FAILED",
    "FINISHED",
    "NEEDS_ATTENTION",
    "PENDING",
    "REDACTED",
    "REJECTED",
    "RUNNING",
    "STATUS_OF",
    "SUCCEEDED",
    "ApprovalService",
    "Claim",
    "ClickResult",
    "Gate",
    "RequestView",
    "secret_values",
]


@dataclass(frozen=True)
class Claim:
    """The outcome of a run claim: this caller runs it, or not; `blocked` says why the policy or the
    approvers stopped it (empty when another caller has it or it is not approved)."""

    claimed: bool
    blocked: str = ""

    def __bool__(self) -> bool:
        return self.claimed


@dataclass
class ApprovalService:
    """Requests, approvals and execution claims over the state database."""

    engine: Engine
    gate: Callable[[], Gate]
    clock: Callable[[], float] = time.time
    _ready: bool = field(default=False, init=False)
    _noted: str | None = field(default=None, init=False)  # the policy version this process has audited

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        if not self._ready:
            upgrade(self.engine)
            self._ready = True
        with self.engine.begin() as connection:
            yield connection

    # -- the policy ----------------------------------------------------------------------------

    def current_gate(self) -> Gate:
        """The policy that decides now; a version not decided with before is audited first."""
        gate = self.gate()
        if gate.version != self._noted:
            self.note_policy(gate)
        return gate

    def note_policy(self, gate: Gate | None = None) -> bool:
        """Audit the policy version when it differs from the last one recorded; True if this call did.

        Serialised by the audit head's lock, so replicas that see an edit at once record it once.
        """
        gate = gate or self.gate()
        now = self.clock()
        with self._begin() as connection:
            lock_audit(connection)
            last = connection.execute(
                sa.select(policy_versions.c.version).order_by(policy_versions.c.seq.desc()).limit(1)
            ).scalar()
            changed = last != gate.version
            if changed:
                files = list(gate.files)
                connection.execute(
                    sa.insert(policy_versions).values(
                        version=gate.version, files=json.dumps(files), seen_at=now
                    )
                )
                append_audit(
                    connection,
                    at=now,
                    kind="policy_changed" if last else "policy_loaded",
                    request_id=None,
                    actor="policy",
                    data={"version": gate.version, "previous": last, "files": files},
                )
        self._noted = gate.version
        return changed

    # -- reading -------------------------------------------------------------------------------

    def get(self, request_id: str) -> RequestView | None:
        """A request with its current approvers."""
        with self._begin() as connection:
            return read_view(connection, request_id)

    # -- requesting ----------------------------------------------------------------------------

    def submit(
        self, request: ActionRequest, actor: Actor, thread_ts: str | None = None
    ) -> tuple[RequestView, Decision]:
        """Decide a request by policy and record it: denied, approved (allowed) or pending approval."""
        gate = self.current_gate()
        now = self.clock()
        decision = gate.decide(request, actor, dt.datetime.fromtimestamp(now, tz=dt.UTC))
        decision = no_waiting_with_secrets(decision, secret_values(request, gate.action(request.action)))
        requirement = decision.approval
        request_id = str(uuid.uuid4())
        stored = redacted(request, gate.action(request.action))
        with self._begin() as connection:
            connection.execute(
                sa.insert(action_requests).values(
                    request_id=request_id,
                    action=request.action,
                    requester=actor.user_id,
                    channel=actor.channel,
                    thread_ts=thread_ts,
                    created_at=now,
                    **decided_columns(request, stored, decision, now),
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
            view = _reread(connection, request_id)
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
        gate = self.current_gate()
        with self._begin() as connection:
            view, refusal = self._decider(connection, request_id, user, gate, now)
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            fingerprint = ActionRequest(action=view.action, params=view.params).fingerprint(gate.version)
            if gate.version != view.policy_version:
                # The policy changed since the request: decide again; earlier approvals no longer count.
                return redecide(connection, view, gate, now)
            if user in view.approvers:
                return ClickResult(False, "You have already approved this request.", view)
            # Decided again now: a freeze that began since the request holds it; a rule that denies ends it.
            standing = reassess(connection, view, gate, now, "approval")
            if standing.verdict != "proceed":
                return ClickResult(
                    standing.verdict == "denied", standing.message, read_view(connection, request_id)
                )
            note = f" ({standing.lapsed}.)" if standing.lapsed else ""
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
            # The audit entry first: the quorum check below may withdraw approvals, after this one.
            append_audit(connection, at=now, kind="approval", request_id=request_id, actor=user, data={})
            view = _reread(connection, request_id)
            if quorum_met(view):
                # Everyone counted is checked again: an approver who left the group no longer counts.
                standing = reassess(connection, view, gate, now, "quorum")
                note += "" if standing.verdict == "proceed" else f" {standing.message}"
                view = _reread(connection, request_id)
            missing = view.required_count - len(view.approvers)
            moved = missing <= 0 and move(connection, request_id, PENDING, APPROVED, now)
            if not moved:
                return ClickResult(True, f"Approved. {max(missing, 1)} more approval(s) needed.{note}", view)
            append_audit(
                connection,
                at=now,
                kind="approved",
                request_id=request_id,
                actor=None,
                data={"approvers": list(view.approvers)},
            )
            view = dataclasses.replace(view, status=APPROVED)
        return ClickResult(True, "Approved: the action will run now.", view, ready_to_run=True)

    def reject(self, request_id: str, user: str, reason: str) -> ClickResult:
        """An eligible approver rejects; nothing will run."""
        now = self.clock()
        gate = self.current_gate()
        with self._begin() as connection:
            view, refusal = self._decider(connection, request_id, user, gate, now, "reject")
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            if not move(connection, request_id, PENDING, REJECTED, now):
                return ClickResult(False, "This request is no longer waiting for approval.", view)
            append_audit(
                connection,
                at=now,
                kind="rejected",
                request_id=request_id,
                actor=user,
                data={"reason": reason},
            )
            view = read_view(connection, request_id)
        return ClickResult(True, "Rejected.", view)

    def cancel(self, request_id: str, user: str) -> ClickResult:
        """The requester withdraws a request that has not started running."""
        now = self.clock()
        with self._begin() as connection:
            view = read_view(connection, request_id, lock=True)
            if view is None:
                return ClickResult(False, "There is no such request.", None)
            if user != view.requester:
                return ClickResult(False, "Only the requester can cancel this request.", view)
            moved = move(connection, request_id, PENDING, CANCELLED, now) or move(
                connection, request_id, APPROVED, CANCELLED, now
            )
            if not moved:
                return ClickResult(
                    False, f"This request is {view.status}; it can no longer be cancelled.", view
                )
            append_audit(connection, at=now, kind="cancelled", request_id=request_id, actor=user, data={})
            view = read_view(connection, request_id)
        return ClickResult(True, "Cancelled.", view)

    def revoke(self, request_id: str, user: str) -> ClickResult:
        """An approver takes their approval back before the action runs."""
        now = self.clock()
        with self._begin() as connection:
            view = read_view(connection, request_id, lock=True)
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
                move(connection, request_id, APPROVED, PENDING, now)  # below quorum again
            append_audit(connection, at=now, kind="revoked", request_id=request_id, actor=user, data={})
            view = read_view(connection, request_id)
        return ClickResult(True, "Your approval is revoked.", view)

    def amend(self, request_id: str, user: str, params: dict[str, Any]) -> ClickResult:
        """The requester changes the parameters of a pending request: it is decided again, approvals reset."""
        now = self.clock()
        gate = self.current_gate()
        with self._begin() as connection:
            view = read_view(connection, request_id, lock=True)
            refusal = refuse_finished(connection, view, now)
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            if user != view.requester:
                return ClickResult(False, "Only the requester can change this request.", view)
            if params == view.params:  # the same hash: the approvals given still hold
                return ClickResult(False, "Those are already its parameters; nothing changed.", view)
            request = ActionRequest(action=view.action, params=params)
            decision = gate.decide(request, Actor(user_id=user, channel=view.channel), utc(now))
            decision = no_waiting_with_secrets(decision, secret_values(request, gate.action(view.action)))
            status = STATUS_OF[decision.outcome]
            stored = redacted(request, gate.action(view.action))
            connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == PENDING)
                # A new fingerprint: approvals given for the old parameters no longer count.
                .values(**decided_columns(request, stored, decision, now))
            )
            append_audit(
                connection,
                at=now,
                kind="amended",
                request_id=request_id,
                actor=user,
                data={
                    "params": stored,
                    "outcome": decision.outcome,
                    "rule": decision.rule,
                    "approval": decision.approval.model_dump() if decision.approval else None,
                },
            )
            view = read_view(connection, request_id)
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
        verb: Verb = "approve",
    ) -> tuple[RequestView | None, ClickResult | None]:
        """The pending request and no refusal when `user` may decide on it; otherwise the refusal."""
        view = read_view(connection, request_id, lock=True)
        refusal = refuse_finished(connection, view, now)
        if refusal is not None or view is None:
            return view, refusal
        requirement = ApprovalRequirement(
            count=max(view.required_count, 1), groups=view.required_groups or ("nobody",), within_minutes=1
        )
        denied = gate.refusal(user, view.requester, requirement)
        return view, (None if denied is None else ClickResult(False, denied.render(verb), view))

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
                if move(connection, request_id, PENDING, EXPIRED, now):
                    append_audit(
                        connection, at=now, kind="expired", request_id=request_id, actor=None, data={}
                    )
                    expired.append(str(request_id))
        return expired

    def claim(self, request_id: str) -> Claim:
        """Take the right to run an approved request; exactly one caller (anywhere) gets it.

        The policy decides again at this moment and every counted approver is checked again: a request
        a freeze now holds, a rule now denies or whose approvers no longer suffice does not run, and
        the claim says why.
        """
        now = self.clock()
        gate = self.current_gate()
        with self._begin() as connection:
            view = read_view(connection, request_id, lock=True)
            if view is None or view.status != APPROVED:
                return Claim(False)
            if gate.version != view.policy_version:
                # Approved under an earlier policy: decided again, and earlier approvals no longer count.
                move(connection, request_id, APPROVED, PENDING, now)
                view = dataclasses.replace(view, status=PENDING)
                return Claim(False, redecide(connection, view, gate, now).message)
            standing = reassess(connection, view, gate, now, "run")
            if standing.verdict != "proceed":
                return Claim(False, standing.message)
            # The state row alone is not enough: someone who can write the database could set
            # `approved` directly. Only a request the verified audit log authorises runs.
            authorised, why = authorised_in_log(connection, request_id)
            if not authorised:
                move(connection, request_id, APPROVED, NEEDS_ATTENTION, now)
                append_audit(
                    connection,
                    at=now,
                    kind="run_refused",
                    request_id=request_id,
                    actor="audit",
                    data={"why": why},
                )
                return Claim(
                    False,
                    f"Not run: the audit log does not authorise this request ({why}). It needs a "
                    "person's attention: run `steward audit verify`.",
                )
            claimed = connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == APPROVED)
                .values(status=RUNNING, claimed_at=now, heartbeat_at=now, updated_at=now)
            ).rowcount
            if claimed:
                append_audit(
                    connection, at=now, kind="execution_started", request_id=request_id, actor=None, data={}
                )
        return Claim(bool(claimed))

    def renew(self, request_id: str) -> bool:
        """Renew the lease on a run this process is doing; False once the run is no longer running."""
        now = self.clock()
        with self._begin() as connection:
            return bool(
                connection.execute(
                    sa.update(action_requests)
                    .where(action_requests.c.request_id == request_id, action_requests.c.status == RUNNING)
                    .values(heartbeat_at=now)
                ).rowcount
            )

    def release_held(self) -> list[str]:
        """Held requests whose approvals are all in and that the policy now lets run: approved again."""
        now = self.clock()
        released: list[str] = []
        with self._begin() as connection:
            waiting = (
                connection.execute(
                    sa.select(action_requests.c.request_id).where(
                        action_requests.c.status == PENDING,
                        sa.or_(action_requests.c.deadline.is_(None), action_requests.c.deadline >= now),
                    )
                )
                .scalars()
                .all()
            )
            if not waiting:
                return released
            gate = self.current_gate()
            for request_id in waiting:
                view = read_view(connection, request_id, lock=True)
                if view is None or not quorum_met(view) or gate.version != view.policy_version:
                    continue
                if decide_now(view, gate, now).outcome == "deny":
                    continue  # still held: nothing to record until it changes
                standing = reassess(connection, view, gate, now, "release")
                if standing.verdict == "proceed" and move(connection, request_id, PENDING, APPROVED, now):
                    append_audit(
                        connection,
                        at=now,
                        kind="released",
                        request_id=request_id,
                        actor="policy",
                        data={"approvers": list(view.approvers)},
                    )
                    released.append(str(request_id))
        return released

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

    def recover_interrupted(self, lease_seconds: float) -> list[tuple[str, str]]:
        """Runs whose lease lapsed (no heartbeat for `lease_seconds`: the process running them died):
        idempotent ones run again, others wait for a person. A live process renews its lease however
        long the run takes, so its run is never started twice."""
        now = self.clock()
        recovered = []
        with self._begin() as connection:
            last_sign = sa.func.coalesce(action_requests.c.heartbeat_at, action_requests.c.claimed_at)
            stuck = connection.execute(
                sa.select(
                    action_requests.c.request_id, action_requests.c.action, action_requests.c.params
                ).where(action_requests.c.status == RUNNING, last_sign < now - lease_seconds)
            ).all()
            gate = self.gate() if stuck else None  # the policy is read only when something is stuck
            for request_id, action_name, params in stuck:
                spec = gate.action(action_name) if gate is not None else None
                # A secret went with the process that died: running again would pass the masked value.
                again = spec is not None and spec.idempotent and not carries_secrets(json.loads(params))
                target = APPROVED if again else NEEDS_ATTENTION
                if move(connection, request_id, RUNNING, target, now):
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


def _reread(connection: Connection, request_id: str) -> RequestView:
    """The request again, in the transaction that just read and changed it (so it is there)."""
    view = read_view(connection, request_id)
    if view is None:
        raise LookupError(f"action request {request_id} vanished inside its own transaction")
    return view
