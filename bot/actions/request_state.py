"""An action request's state as stored: its states, how it is read, and the columns a decision sets."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from bot.actions.executors.dispatch import ExecutionError, ExecutionResult, run_action
from bot.actions.models import (
    ActionRequest,
    ActionSpec,
    Actor,
    ApprovalRequirement,
    Decision,
    Refusal,
    Waiting,
)
from bot.redaction import mask_secrets
from bot.store.action_requests import (
    APPROVED,
    DENIED,
    EXPIRED,
    PENDING,
    RequestTransaction,
    RequestView,
)

REDACTED = "[redacted]"

Execute = Callable[[ActionSpec, Mapping[str, Any], str], ExecutionResult]


class Gate(Protocol):
    """What approvals need from the policy: decisions, approver checks and the action catalog."""

    @property
    def version(self) -> str:
        """The policy version (hash of the policy files)."""
        ...

    def decide(self, request: ActionRequest, actor: Actor, now: dt.datetime) -> Decision:
        """Deny, allow or require approval."""
        ...

    def may_approve(
        self, user: str, requester: str, requirement: ApprovalRequirement, owner: str | None = None
    ) -> tuple[bool, str]:
        """Whether `user` counts towards `requirement` (`owner`: of the agent that asked), and why not."""
        ...

    def refusal(
        self, user: str, requester: str, requirement: ApprovalRequirement, owner: str | None = None
    ) -> Refusal | None:
        """Why `user` may not decide on the request (rendered per verb), or None when they may."""
        ...

    @property
    def files(self) -> tuple[str, ...]:
        """The policy files the version is the hash of."""
        ...

    def action(self, name: str) -> ActionSpec | None:
        """An action of the catalog."""
        ...

    def waiting(self, rule: str | None) -> Waiting:
        """What a waiting request gets when `rule` denies it later: `hold` (keep waiting) or `deny`."""
        ...


@dataclass(frozen=True)
class ClickResult:
    """What a click did: whether anything changed, what to tell the clicker, and the request now."""

    changed: bool
    message: str
    request: RequestView | None
    ready_to_run: bool = False


STATUS_OF = {"deny": DENIED, "allow": APPROVED, "require_approval": PENDING}


def decided_columns(
    request: ActionRequest, stored: dict[str, Any], decision: Decision, now: float
) -> dict[str, Any]:
    """The request's columns that follow from its (redacted) parameters and the policy's decision."""
    requirement = decision.approval
    return {
        "params": stored,
        "status": STATUS_OF[decision.outcome],
        "rule": decision.rule,
        "reason": decision.reason,
        "policy_version": decision.policy_version,
        "fingerprint": request.fingerprint(decision.policy_version),
        "required_count": requirement.count if requirement else 0,
        "required_groups": list(requirement.groups) if requirement else [],
        "deadline": now + requirement.within_minutes * 60 if requirement else None,
        "updated_at": now,
    }


def utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def _declared(spec: ActionSpec | None) -> set[str]:
    return {param.name for param in spec.params if param.secret} if spec else set()


def detected_secrets(request: ActionRequest, spec: ActionSpec | None) -> dict[str, tuple[str, ...]]:
    """The parameters not declared secret whose values hold a credential anyway, with its kinds."""
    declared = _declared(spec)
    found = {
        key: mask_secrets(value).kinds
        for key, value in request.params.items()
        if key not in declared and isinstance(value, str)
    }
    return {key: kinds for key, kinds in found.items() if kinds}


def secret_values(request: ActionRequest, spec: ActionSpec | None) -> dict[str, Any]:
    """The request's secret parameters, declared or holding a credential: never stored, so only a run
    right now can use them."""
    secret = _declared(spec) | set(detected_secrets(request, spec))
    return {key: value for key, value in request.params.items() if key in secret}


def no_waiting_with_secrets(decision: Decision, secrets: Mapping[str, Any]) -> Decision:
    """A request that must wait for approval cannot carry a secret (it is not stored): deny it, saying so."""
    if decision.outcome != "require_approval" or not secrets:
        return decision
    found = {
        name: mask_secrets(value).kinds if isinstance(value, str) else () for name, value in secrets.items()
    }
    declared = ", ".join(f"`{name}`" for name in sorted(found) if not found[name])
    carried = [f"the secret parameter {declared}"] if declared else []
    carried += [
        f"what looks like a secret ({', '.join(kinds)}) in `{name}`"
        for name, kinds in sorted(found.items())
        if kinds
    ]
    reason = (
        f"{decision.reason} But it carries {' and '.join(carried)}, which Steward never stores, so it cannot "
        "wait for approval. Pass a reference instead (the secret's name in your secret manager)."
    )
    return decision.model_copy(update={"outcome": "deny", "approval": None, "reason": reason})


def carries_secrets(stored: Mapping[str, Any]) -> bool:
    """Whether stored parameters lost a value to masking (a secret parameter, or a credential in
    another): such a request can only run with its submitter, right after it was asked."""
    return any(
        isinstance(value, str) and (value == REDACTED or "[redacted:" in value) for value in stored.values()
    )


def redacted(request: ActionRequest, spec: ActionSpec | None) -> dict[str, Any]:
    """The parameters as they are stored and audited: secret ones masked, credentials in the others too."""
    declared = _declared(spec)
    return {
        key: REDACTED if key in declared else mask_secrets(value).text if isinstance(value, str) else value
        for key, value in request.params.items()
    }


def with_masked_results(execute: Execute | None) -> Execute:
    """The executor, its results masked before they are stored and posted: an action may print back a
    credential it was given (a webhook echoing its body, a program its arguments)."""
    run: Execute = execute or run_action

    def masked(action: ActionSpec, params: Mapping[str, Any], request_id: str) -> ExecutionResult:
        try:
            result = run(action, params, request_id)
        except ExecutionError as exc:
            raise ExecutionError(mask_secrets(str(exc)).text) from None
        summary, output = mask_secrets(result.summary).text, mask_secrets(result.output).text
        return dataclasses.replace(result, summary=summary, output=output)

    return masked


def refuse_finished(records: RequestTransaction, view: RequestView | None, now: float) -> ClickResult | None:
    """The refusal of a click on a request that no longer waits for approval (expiring it when its
    deadline passed), or None while it waits."""
    if view is None:
        return ClickResult(False, "There is no such request.", None)
    if view.status == PENDING and view.deadline is not None and now > view.deadline:
        if records.move(view.request_id, PENDING, EXPIRED, now):
            records.audit(at=now, kind="expired", request_id=view.request_id, actor=None, data={})
        return ClickResult(
            False,
            "This request has expired; nothing will run. Ask again if it is still needed.",
            dataclasses.replace(view, status=EXPIRED),
        )
    if view.status != PENDING:
        return ClickResult(False, f"This request is already {view.status}; your click changed nothing.", view)
    return None


def redecide(records: RequestTransaction, view: RequestView, gate: Gate, now: float) -> ClickResult:
    """The policy changed since the request: decide it again; earlier approvals no longer count."""
    request = ActionRequest(action=view.action, params=view.params)
    decision = gate.decide(
        request,
        Actor(user_id=view.requester, channel=view.channel),
        dt.datetime.fromtimestamp(now, tz=dt.UTC),
    )
    status = {"deny": DENIED, "allow": PENDING, "require_approval": PENDING}[decision.outcome]
    requirement = decision.approval
    records.update(
        view.request_id,
        PENDING,
        status=status,
        rule=decision.rule,
        reason=decision.reason,
        policy_version=decision.policy_version,
        fingerprint=request.fingerprint(decision.policy_version),
        required_count=requirement.count if requirement else 1,
        required_groups=list(requirement.groups) if requirement else list(view.required_groups),
        updated_at=now,
    )
    records.policy_audit(
        view.request_id,
        "redecided",
        {
            "outcome": decision.outcome,
            "rule": decision.rule,
            "policy_version": decision.policy_version,
            "approval": requirement.model_dump() if requirement else None,
        },
        at=now,
    )
    return ClickResult(
        True,
        "The policy changed since this request was made, so earlier approvals no longer count. "
        "It has been decided again; please approve again if you still agree.",
        records.read(view.request_id),
    )
