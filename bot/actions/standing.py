"""A waiting or approved request decided again: at every approval, when the quorum is reached and at
the moment of the run claim.

A decision made at submission is not a permission to run later. Freeze windows and other rules can
start to hold in between, and approvers can lose the right to approve (they left the group). So the
policy decides again with the current time, and every counted approver is checked again:

- the policy now denies: a rule whose `waiting` is `hold` (the default for freeze windows) keeps the
  request waiting (`pending`; nothing runs while the rule holds; housekeeping releases it when the rule
  no longer holds, before its deadline); any other deny ends it (`denied`);
- the policy now needs other approvals: the requirement is updated, and approvals that no longer count
  are withdrawn (`approval_lapsed`), each with the reason;
- fewer approvals count than needed: an approved request goes back to `pending`.

Every change is a conditional update in the caller's transaction, audited there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, Decision
from bot.actions.request_state import Gate, carries_secrets, utc
from bot.store.action_requests import APPROVED, DENIED, PENDING, RequestTransaction, RequestView

Stage = Literal["approval", "quorum", "run", "release"]
_STAGE_TEXT = {
    "approval": "at this approval",
    "quorum": "when the last approval came in",
    "run": "at the moment of running",
    "release": "while it was held",
}


@dataclass(frozen=True)
class Standing:
    """What the policy and the approvers say of a request now.

    `verdict` is `proceed` (count the click, or run), `held` (it keeps waiting), `denied` (ended) or
    `short` (fewer approvals count than needed); `message` says why, for the thread.
    """

    verdict: Literal["proceed", "held", "denied", "short"]
    message: str = ""
    decision: Decision | None = None
    lapsed: str = ""  # whose approvals were withdrawn, and why


def decide_now(view: RequestView, gate: Gate, now: float) -> Decision:
    """The policy's decision on the request as if it were asked now, by its requester, in its channel."""
    request = ActionRequest(action=view.action, params=view.params)
    return gate.decide(request, Actor(user_id=view.requester, channel=view.channel), utc(now))


def reassess(
    records: RequestTransaction, view: RequestView, gate: Gate, now: float, stage: Stage
) -> Standing:
    """Decide the request again and check its approvers; record and audit what changed.

    `view` must be read with its row locked in this transaction, and decided with the policy version it
    was decided with (a policy edit resets approvals elsewhere, see `redecide`).
    """
    decision = decide_now(view, gate, now)
    carries_secret = carries_secrets(view.params)
    if decision.outcome == "deny":
        if gate.waiting(decision.rule) == "hold" and not carries_secret:
            return _hold(records, view, decision, now, stage)
        return _deny(records, view, decision, now, stage)
    if decision.outcome == "allow":
        return Standing("proceed", decision=decision)
    requirement = decision.approval
    if requirement is None:  # the policy schema makes every require_approval rule name its approvers
        raise ValueError(f"rule {decision.rule!r} requires approval but names no approvers")
    _update_requirement(records, view, requirement, decision, now, stage)
    lapsed = _withdraw_lapsed(records, view, gate, requirement, now, stage)
    counted = [approver for approver in view.approvers if approver not in lapsed]
    why = "; ".join(
        f"<@{approver}>'s approval no longer counts: {reason}" for approver, reason in lapsed.items()
    )
    if stage == "approval" or len(counted) >= requirement.count:
        return Standing("proceed", decision=decision, lapsed=why)
    if carries_secret and view.status == APPROVED:
        # A secret is never stored: a request that must wait again cannot keep it.
        return _deny(records, view, decision, now, stage, secret=True)
    if view.status == APPROVED:
        records.move(view.request_id, APPROVED, PENDING, now)
    records.policy_audit(
        view.request_id,
        "quorum_lost",
        {"stage": stage, "counted": counted, "needed": requirement.count},
        at=now,
    )
    message = (
        f"Not run: {len(counted)} of the {requirement.count} approval(s) it needs count "
        f"{_STAGE_TEXT[stage]}" + (f" ({why})" if why else "") + ". It is waiting for approval again."
    )
    return Standing("short", message, decision)


def _hold(
    records: RequestTransaction, view: RequestView, decision: Decision, now: float, stage: Stage
) -> Standing:
    if view.status == APPROVED:
        records.move(view.request_id, APPROVED, PENDING, now)
    records.policy_audit(
        view.request_id, "held", {"stage": stage, "rule": decision.rule, "reason": decision.reason}, at=now
    )
    message = (
        f"Held {_STAGE_TEXT[stage]} by `{decision.rule}`: {decision.reason} Nothing runs while it holds; "
        "the request keeps waiting and runs once the rule no longer holds and its approvals are in, "
        "unless it expires first."
    )
    return Standing("held", message, decision)


def _deny(
    records: RequestTransaction,
    view: RequestView,
    decision: Decision,
    now: float,
    stage: Stage,
    secret: bool = False,
) -> Standing:
    reason = decision.reason
    if secret:
        reason = (
            f"{reason} It carries a secret parameter, which Steward never stores, so it cannot wait for "
            "approval again. Ask again with a reference to the secret."
        )
    records.update(
        view.request_id, view.status, status=DENIED, rule=decision.rule, reason=reason, updated_at=now
    )
    records.policy_audit(
        view.request_id,
        "redecided",
        {
            "stage": stage,
            "outcome": "deny",
            "rule": decision.rule,
            "reason": reason,
            "policy_version": decision.policy_version,
        },
        at=now,
    )
    return Standing("denied", f"Denied {_STAGE_TEXT[stage]} by `{decision.rule}`: {reason}", decision)


def _update_requirement(
    records: RequestTransaction,
    view: RequestView,
    requirement: ApprovalRequirement,
    decision: Decision,
    now: float,
    stage: Stage,
) -> None:
    """Store the requirement that decides now, when it differs from the one stored."""
    if requirement.count == view.required_count and tuple(requirement.groups) == view.required_groups:
        return
    records.update(
        view.request_id,
        view.status,
        rule=decision.rule,
        reason=decision.reason,
        required_count=requirement.count,
        required_groups=list(requirement.groups),
        updated_at=now,
    )
    records.policy_audit(
        view.request_id,
        "requirement_changed",
        {"stage": stage, "rule": decision.rule, "approval": requirement.model_dump()},
        at=now,
    )


def _withdraw_lapsed(
    records: RequestTransaction,
    view: RequestView,
    gate: Gate,
    requirement: ApprovalRequirement,
    now: float,
    stage: Stage,
) -> dict[str, str]:
    """Withdraw the approvals of people who no longer count towards `requirement`; who and why.

    The owner of the agent that asked is checked as its owner, as at the click, so an approval of theirs
    never counts where the requirement bars them.
    """
    lapsed: dict[str, str] = {}
    for approver in view.approvers:
        allowed, why = gate.may_approve(approver, view.requester, requirement, view.agent_owner)
        if allowed:
            continue
        lapsed[approver] = why
        records.withdraw_approval(view.request_id, approver, now)
        records.audit(
            at=now,
            kind="approval_lapsed",
            request_id=view.request_id,
            actor=approver,
            data={"stage": stage, "why": why},
        )
    return lapsed


def quorum_met(view: RequestView) -> bool:
    """Whether the request's counted approvals reach its requirement."""
    return view.required_count > 0 and len(view.approvers) >= view.required_count
