"""The life of an action request: decided by policy, approved in the thread, run exactly once, audited.

States: `denied`, `pending` (waiting for approvals), `approved` (ready to run), `running`, `succeeded`,
`failed`, `rejected`, `cancelled`, `expired`, `needs_attention` (a run was interrupted and the action
is not idempotent, so a person decides). Every transition is a conditional UPDATE (only one click, one
replica, wins) written in the same transaction as its audit entry.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, Decision, Verb
from bot.actions.request_state import (
    REDACTED,
    STATUS_OF,
    ClickResult,
    Gate,
    carries_secrets,
    decided_columns,
    no_waiting_with_secrets,
    redacted,
    redecide,
    refuse_finished,
    secret_values,
    utc,
)
from bot.actions.standing import decide_now, quorum_met, reassess
from bot.redaction import mask_secrets
from bot.store.action_requests import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    FAILED,
    FINISHED,
    NEEDS_ATTENTION,
    PENDING,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    ActionRequestStore,
    RequestTransaction,
    RequestView,
)

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

log = logging.getLogger("steward.actions")


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

    store: ActionRequestStore  # the repository of requests, approvals and the audit log (wiring builds it)
    gate: Callable[[], Gate]
    clock: Callable[[], float] = time.time
    _noted: str | None = field(default=None, init=False)  # the policy version this process has audited

    @property
    def engine(self) -> Engine:
        """The records database the repository reads."""
        return self.store.engine

    @contextmanager
    def _begin(self) -> Iterator[RequestTransaction]:
        # The tables are there: start-up migrates the records database once (bot/wiring.py).
        with self.store.begin() as records:
            yield records

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
        with self._begin() as records:
            records.lock_audit()
            last = records.last_policy_version()
            changed = last != gate.version
            if changed:
                files = list(gate.files)
                records.add_policy_version(gate.version, files, now)
                records.policy_audit(
                    None,
                    "policy_changed" if last else "policy_loaded",
                    {"version": gate.version, "previous": last, "files": files},
                    at=now,
                )
        self._noted = gate.version
        return changed

    # -- reading -------------------------------------------------------------------------------

    def get(self, request_id: str) -> RequestView | None:
        """A request with its current approvers."""
        with self._begin() as records:
            return records.read(request_id)

    # -- requesting ----------------------------------------------------------------------------

    def submit(
        self,
        request: ActionRequest,
        actor: Actor,
        thread_ts: str | None = None,
        on_behalf: Mapping[str, Any] | None = None,
    ) -> tuple[RequestView, Decision]:
        """Decide a request by policy and record it: denied, approved (allowed) or pending approval.

        `on_behalf`: an AI agent's columns (agent, agent_token, agent_owner, justification,
        idempotency_key, callback_url …), recorded with the request and named in its audit entry; a
        second request with the same agent and idempotency key raises IntegrityError (nothing kept)."""
        gate = self.current_gate()
        now = self.clock()
        decision = gate.decide(request, actor, dt.datetime.fromtimestamp(now, tz=dt.UTC))
        decision = no_waiting_with_secrets(decision, secret_values(request, gate.action(request.action)))
        requirement = decision.approval
        request_id = str(uuid.uuid4())
        stored = redacted(request, gate.action(request.action))
        with self._begin() as records:
            records.insert(
                request_id=request_id,
                action=request.action,
                requester=actor.user_id,
                channel=actor.channel,
                thread_ts=thread_ts,
                created_at=now,
                **decided_columns(request, stored, decision, now),
                **dict(on_behalf or {}),
            )
            records.audit(
                at=now,
                kind="requested",
                request_id=request_id,
                actor=actor.user_id,
                data={
                    "action": request.action,
                    "params": stored,
                    "channel": actor.channel,
                    **agent_facts(on_behalf),
                },
            )
            records.policy_audit(
                request_id,
                "decided",
                {
                    "outcome": decision.outcome,
                    "rule": decision.rule,
                    "reason": decision.reason,
                    "policy_version": decision.policy_version,
                    "approval": requirement.model_dump() if requirement else None,
                    **{key: value for key, value in agent_facts(on_behalf).items() if key != "reason"},
                },
                at=now,
            )
            view = _reread(records, request_id)
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
        with self._begin() as records:
            view, refusal = self._decider(records, request_id, user, gate, now)
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            fingerprint = ActionRequest(action=view.action, params=view.params).fingerprint(gate.version)
            if gate.version != view.policy_version:
                # The policy changed since the request: decide again; earlier approvals no longer count.
                return redecide(records, view, gate, now)
            if user in view.approvers:
                return ClickResult(False, "You have already approved this request.", view)
            # Decided again now: a freeze that began since the request holds it; a rule that denies ends it.
            standing = reassess(records, view, gate, now, "approval")
            if standing.verdict != "proceed":
                return ClickResult(standing.verdict == "denied", standing.message, records.read(request_id))
            note = f" ({standing.lapsed}.)" if standing.lapsed else ""
            records.give_approval(request_id, user, fingerprint, now)
            # The audit entry first: the quorum check below may withdraw approvals, after this one.
            records.audit(at=now, kind="approval", request_id=request_id, actor=user, data={})
            view = _reread(records, request_id)
            if quorum_met(view):
                # Everyone counted is checked again: an approver who left the group no longer counts.
                standing = reassess(records, view, gate, now, "quorum")
                note += "" if standing.verdict == "proceed" else f" {standing.message}"
                view = _reread(records, request_id)
            missing = view.required_count - len(view.approvers)
            moved = missing <= 0 and records.move(request_id, PENDING, APPROVED, now)
            if not moved:
                return ClickResult(True, f"Approved. {max(missing, 1)} more approval(s) needed.{note}", view)
            records.audit(
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
        with self._begin() as records:
            view, refusal = self._decider(records, request_id, user, gate, now, "reject")
            if refusal is not None or view is None:
                return refusal or ClickResult(False, "There is no such request.", None)
            if not records.update(
                request_id,
                PENDING,
                status=REJECTED,
                updated_at=now,
                rejection_reason=mask_secrets(reason).text,
            ):
                return ClickResult(False, "This request is no longer waiting for approval.", view)
            records.audit(
                at=now,
                kind="rejected",
                request_id=request_id,
                actor=user,
                data={"reason": reason},
            )
            view = records.read(request_id)
        return ClickResult(True, "Rejected.", view)

    def cancel(self, request_id: str, user: str) -> ClickResult:
        """The requester withdraws a request that has not started running."""
        now = self.clock()
        with self._begin() as records:
            view = records.read(request_id, lock=True)
            if view is None:
                return ClickResult(False, "There is no such request.", None)
            if user != view.requester:
                return ClickResult(False, "Only the requester can cancel this request.", view)
            moved = records.move(request_id, PENDING, CANCELLED, now) or records.move(
                request_id, APPROVED, CANCELLED, now
            )
            if not moved:
                return ClickResult(
                    False, f"This request is {view.status}; it can no longer be cancelled.", view
                )
            records.audit(at=now, kind="cancelled", request_id=request_id, actor=user, data={})
            view = records.read(request_id)
        return ClickResult(True, "Cancelled.", view)

    def revoke(self, request_id: str, user: str) -> ClickResult:
        """An approver takes their approval back before the action runs."""
        now = self.clock()
        with self._begin() as records:
            view = records.read(request_id, lock=True)
            if view is None or user not in view.approvers:
                return ClickResult(False, "You have no approval on this request to revoke.", view)
            if view.status not in (PENDING, APPROVED):
                return ClickResult(
                    False, f"This request is {view.status}; the approval can no longer be revoked.", view
                )
            records.withdraw_approval(request_id, user, now)
            remaining = len(view.approvers) - 1
            if remaining < view.required_count:
                records.move(request_id, APPROVED, PENDING, now)  # below quorum again
            records.audit(at=now, kind="revoked", request_id=request_id, actor=user, data={})
            view = records.read(request_id)
        return ClickResult(True, "Your approval is revoked.", view)

    def amend(self, request_id: str, user: str, params: dict[str, Any]) -> ClickResult:
        """The requester changes the parameters of a pending request: it is decided again, approvals reset."""
        now = self.clock()
        gate = self.current_gate()
        with self._begin() as records:
            view = records.read(request_id, lock=True)
            refusal = refuse_finished(records, view, now)
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
            # A new fingerprint: approvals given for the old parameters no longer count.
            records.update(request_id, PENDING, **decided_columns(request, stored, decision, now))
            records.audit(
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
            view = records.read(request_id)
        return ClickResult(
            True, "Changed; earlier approvals no longer count.", view, ready_to_run=status == APPROVED
        )

    def _decider(
        self,
        records: RequestTransaction,
        request_id: str,
        user: str,
        gate: Gate,
        now: float,
        verb: Verb = "approve",
    ) -> tuple[RequestView | None, ClickResult | None]:
        """The pending request and no refusal when `user` may decide on it; otherwise the refusal."""
        view = records.read(request_id, lock=True)
        refusal = refuse_finished(records, view, now)
        if refusal is not None or view is None:
            return view, refusal
        requirement = ApprovalRequirement(
            count=max(view.required_count, 1), groups=view.required_groups or ("nobody",), within_minutes=1
        )
        owner = view.agent_owner if verb == "approve" else None  # the owner may always reject
        if owner is not None and user == owner:
            # Whether the owner is barred is the policy's word now; the stored requirement does not say.
            current = decide_now(view, gate, now).approval
            barred = current is not None and not current.owner_may_approve
            requirement = requirement.model_copy(update={"owner_may_approve": not barred})
        denied = gate.refusal(user, view.requester, requirement, owner)
        return view, (None if denied is None else ClickResult(False, denied.render(verb), view))

    # -- time and execution ----------------------------------------------------------------------

    def expire_due(self) -> list[str]:
        """Expire every pending request past its deadline (fail closed); returns their ids."""
        now = self.clock()
        expired = []
        with self._begin() as records:
            due = records.ids(PENDING, deadline_before=now)
            for request_id in due:
                if records.move(request_id, PENDING, EXPIRED, now):
                    records.audit(at=now, kind="expired", request_id=request_id, actor=None, data={})
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
        with self._begin() as records:
            view = records.read(request_id, lock=True)
            if view is None or view.status != APPROVED:
                return Claim(False)
            if gate.version != view.policy_version:
                # Approved under an earlier policy: decided again, and earlier approvals no longer count.
                records.move(request_id, APPROVED, PENDING, now)
                view = dataclasses.replace(view, status=PENDING)
                return Claim(False, redecide(records, view, gate, now).message)
            standing = reassess(records, view, gate, now, "run")
            if standing.verdict != "proceed":
                return Claim(False, standing.message)
            # The state row alone is not enough: someone who can write the database could set
            # `approved` directly. Only a request the verified audit log authorises runs.
            authorised, why = records.authorised(request_id)
            if not authorised:
                # never routine: the log was tampered with, or Steward misread it; operators must look
                log.warning("run refused by the audit log request=%s: %s", request_id, why)
                records.move(request_id, APPROVED, NEEDS_ATTENTION, now)
                records.audit(
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
            claimed = records.update(
                request_id, APPROVED, status=RUNNING, claimed_at=now, heartbeat_at=now, updated_at=now
            )
            if claimed:
                records.audit(at=now, kind="execution_started", request_id=request_id, actor=None, data={})
        return Claim(bool(claimed))

    def renew(self, request_id: str) -> bool:
        """Renew the lease on a run this process is doing; False once the run is no longer running."""
        now = self.clock()
        with self._begin() as records:
            return records.update(request_id, RUNNING, heartbeat_at=now)

    def release_held(self) -> list[str]:
        """Held requests whose approvals are all in and that the policy now lets run: approved again."""
        now = self.clock()
        released: list[str] = []
        with self._begin() as records:
            waiting = records.ids(PENDING, live_at=now)
            if not waiting:
                return released
            gate = self.current_gate()
            for request_id in waiting:
                view = records.read(request_id, lock=True)
                if view is None or not quorum_met(view) or gate.version != view.policy_version:
                    continue
                if decide_now(view, gate, now).outcome == "deny":
                    continue  # still held: nothing to record until it changes
                standing = reassess(records, view, gate, now, "release")
                if standing.verdict == "proceed" and records.move(request_id, PENDING, APPROVED, now):
                    records.policy_audit(request_id, "released", {"approvers": list(view.approvers)}, at=now)
                    released.append(str(request_id))
        return released

    def finish(self, request_id: str, ok: bool, summary: str, output: str, duration_seconds: float) -> None:
        """Record the result of a run this process claimed."""
        now = self.clock()
        with self._begin() as records:
            view = records.read(request_id)
            agent = {"agent": view.agent, "token_id": view.agent_token} if view and view.agent else {}
            records.update(
                request_id,
                RUNNING,
                status=SUCCEEDED if ok else FAILED,
                result_summary=summary,
                result_output=output,
                duration_seconds=duration_seconds,
                updated_at=now,
            )
            records.audit(
                at=now,
                kind="execution_finished",
                request_id=request_id,
                actor=None,
                data={
                    "ok": ok,
                    "summary": summary,
                    "duration_seconds": round(duration_seconds, 3),
                    **agent,
                },
            )

    def recover_interrupted(self, lease_seconds: float) -> list[tuple[str, str]]:
        """Runs whose lease lapsed (no heartbeat for `lease_seconds`: the process running them died):
        idempotent ones run again, others wait for a person. A live process renews its lease however
        long the run takes, so its run is never started twice."""
        now = self.clock()
        recovered = []
        with self._begin() as records:
            stuck = records.stale_runs(now - lease_seconds)
            gate = self.gate() if stuck else None  # the policy is read only when something is stuck
            for request_id, action_name, params in stuck:
                spec = gate.action(action_name) if gate is not None else None
                # A secret went with the process that died: running again would pass the masked value.
                again = spec is not None and spec.idempotent and not carries_secrets(params)
                target = APPROVED if again else NEEDS_ATTENTION
                if records.move(request_id, RUNNING, target, now):
                    records.audit(
                        at=now,
                        kind="interrupted",
                        request_id=request_id,
                        actor=None,
                        data={"now": target},
                    )
                    recovered.append((str(request_id), target))
        return recovered


def agent_facts(on_behalf: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the audit log says about the agent behind a request: its name, token id, owner and reason."""
    if not on_behalf or not on_behalf.get("agent"):
        return {}
    return {
        "agent": on_behalf["agent"],
        "token_id": on_behalf.get("agent_token"),
        "owner": on_behalf.get("agent_owner"),
        "reason": on_behalf.get("justification"),
    }


def _reread(records: RequestTransaction, request_id: str) -> RequestView:
    """The request again, in the transaction that just read and changed it (so it is there)."""
    view = records.read(request_id)
    if view is None:
        raise LookupError(f"action request {request_id} vanished inside its own transaction")
    return view
