"""Guarded actions as single calls: a request, a click or a housekeeping round in, what happened out.

`ApprovalService` (`approvals.py`) is the state machine, one transition per call. This module strings
the transitions together the way every caller needs them: a click that completes the approvals also
claims, runs and records the action (`runner.execute_once`) and reads the request back; an allowed
request runs at once; housekeeping expires, recovers, releases and runs what it must. Each call returns
plain values (the request as it is now, the run's result, the notices for the request's thread), so the
Slack layer only parses the payload, makes one call and renders what it gets.

A call that runs an action takes `before_run`: it hears what was decided before the run starts (the
clicker is told and the card shows the approval while the action runs, as a person expects).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from bot.actions.approvals import (
    APPROVED,
    FINISHED,
    PENDING,
    ApprovalService,
    ClickResult,
    RequestView,
    secret_values,
)
from bot.actions.executors.dispatch import ExecutionResult
from bot.actions.models import ActionRequest, Actor, ApprovalRequirement, Decision
from bot.actions.request_state import Execute, detected_secrets, with_masked_results
from bot.actions.runner import execute_once

log = logging.getLogger("steward.actions")


@dataclass(frozen=True)
class RunOutcome:
    """A run attempt: the result when this call ran the action, or why the policy or the approvers
    stopped it at the last moment, and the request as it is afterwards."""

    request_id: str
    result: ExecutionResult | None  # None: not run here (another caller has it, or it was stopped)
    request: RequestView | None
    blocked: str = ""

    @property
    def reopened(self) -> bool:
        """Stopped, and now waiting for approvals it never had: it needs an approval card again."""
        view = self.request
        return (
            bool(self.blocked)
            and view is not None
            and view.status == PENDING
            and (not view.approvers and view.required_count > 0)
        )


@dataclass(frozen=True)
class ClickOutcome:
    """What a click on a request's card did.

    `elsewhere` is the request when the click came from another channel than its card (a replayed
    button: nothing was counted); otherwise `click` says what changed, and `run` is the run the click
    started (after `before_run` heard the click).
    """

    click: ClickResult | None = None
    run: RunOutcome | None = None
    elsewhere: RequestView | None = None


@dataclass(frozen=True)
class RejectCheck:
    """Whether a person may open the rejection of a request: the request, or the refusal to show."""

    request: RequestView | None
    refusal: str | None = None
    elsewhere: bool = False


NoticeKind = Literal["expired", "interrupted", "released", "stranded"]


@dataclass(frozen=True)
class RequestNotice:
    """What housekeeping did to a request, for its thread (`request` None when it cannot be read)."""

    kind: NoticeKind
    request_id: str
    request: RequestView | None
    state: str = ""  # interrupted: the state the request is in now

    @property
    def in_thread(self) -> bool:
        """Whether the request has a thread to post in."""
        return self.request is not None and bool(self.request.channel and self.request.thread_ts)


Notice = RequestNotice | RunOutcome


@dataclass(frozen=True)
class Submission:
    """A request as the policy decided it, the credentials found in its ordinary parameters (masked
    where they are stored), and the run of an allowed request (after `before_run` heard the decision)."""

    request: RequestView
    decision: Decision
    masked: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # parameter -> credential kinds
    run: RunOutcome | None = None


class GuardedActions:
    """Requests, clicks and housekeeping of guarded actions, each one call over the approval service."""

    def __init__(self, approvals: ApprovalService, execute: Execute) -> None:
        """`execute` runs an action (the deployment's executors); its results are masked before they
        are stored and shown."""
        self.approvals = approvals
        self.execute = with_masked_results(execute)

    # -- requests ------------------------------------------------------------------------------

    def submit(
        self,
        request: ActionRequest,
        actor: Actor,
        thread_ts: str | None,
        before_run: Callable[[Submission], None] | None = None,
        on_behalf: Mapping[str, Any] | None = None,
    ) -> Submission:
        """Let the policy decide the request and record it; an allowed request runs now, with its secrets
        (held only by this call). `on_behalf`: an AI agent's columns (`ApprovalService.submit`)."""
        spec = self.approvals.gate().action(request.action)
        view, decision = self.approvals.submit(request, actor, thread_ts, on_behalf)
        log.info(
            "action requested request=%s action=%s outcome=%s rule=%s",
            view.request_id,
            view.action,
            decision.outcome,
            decision.rule,
        )
        submission = Submission(view, decision, detected_secrets(request, spec))
        if decision.outcome != "allow":
            return submission
        if before_run is not None:
            before_run(submission)
        return replace(submission, run=self.run(view.request_id, secret_values(request, spec)))

    # -- clicks --------------------------------------------------------------------------------

    def approve(
        self,
        request_id: str,
        user: str,
        channel: str,
        before_run: Callable[[ClickResult], None] | None = None,
    ) -> ClickOutcome:
        """Count the approval; the approval that completes the quorum also runs the action."""
        elsewhere = self._elsewhere(request_id, user, channel)
        if elsewhere is not None:
            return ClickOutcome(elsewhere=elsewhere)
        click = self.approvals.approve(request_id, user)
        if not click.ready_to_run:
            return ClickOutcome(click)
        if before_run is not None:
            before_run(click)
        return ClickOutcome(click, run=self.run(request_id))

    def check_reject(self, request_id: str, user: str, channel: str) -> RejectCheck:
        """Whether `user` may reject the request (before the modal asks for a reason)."""
        elsewhere = self._elsewhere(request_id, user, channel)
        if elsewhere is not None:
            return RejectCheck(elsewhere, elsewhere=True)
        view = self.approvals.get(request_id)
        if view is None:
            return RejectCheck(None, "There is no such request.")
        if view.status in FINISHED:
            return RejectCheck(view, f"This request is already {view.status}; there is nothing to reject.")
        requirement = ApprovalRequirement(count=1, groups=view.required_groups or ("nobody",))
        refusal = self.approvals.gate().refusal(user, view.requester, requirement)
        return RejectCheck(view, None if refusal is None else refusal.render("reject"))

    def reject(self, request_id: str, user: str, reason: str) -> ClickOutcome:
        """Reject with the reason the modal asked for (the modal was opened from the card's channel)."""
        return ClickOutcome(self.approvals.reject(request_id, user, reason))

    def cancel(self, request_id: str, user: str, channel: str) -> ClickOutcome:
        """The requester withdraws the request."""
        elsewhere = self._elsewhere(request_id, user, channel)
        if elsewhere is not None:
            return ClickOutcome(elsewhere=elsewhere)
        return ClickOutcome(self.approvals.cancel(request_id, user))

    def revoke(self, request_id: str, user: str, channel: str) -> ClickOutcome:
        """An approver takes their approval back."""
        elsewhere = self._elsewhere(request_id, user, channel)
        if elsewhere is not None:
            return ClickOutcome(elsewhere=elsewhere)
        return ClickOutcome(self.approvals.revoke(request_id, user))

    def _elsewhere(self, request_id: str, user: str, channel: str) -> RequestView | None:
        """The request, when the click comes from another channel than its card: a button's value
        replayed in a message elsewhere is refused, and nothing is counted."""
        view = self.approvals.get(request_id)
        if view is None or not view.channel or view.channel == channel:
            return None
        log.warning(
            "click refused: from another channel request=%s channel=%s card_channel=%s user=%s",
            request_id,
            channel,
            view.channel,
            user,
        )
        return view

    # -- running -------------------------------------------------------------------------------

    def run(self, request_id: str, secrets: Mapping[str, Any] | None = None) -> RunOutcome:
        """Run an approved request (exactly once, wherever it is asked) and read it back."""
        why: list[str] = []
        result = execute_once(
            self.approvals,
            self.approvals.gate(),
            request_id,
            self.execute,
            secrets,
            lambda _, blocked: why.append(blocked),
        )
        return RunOutcome(request_id, result, self.approvals.get(request_id), "".join(why))

    # -- housekeeping --------------------------------------------------------------------------

    def sweep(self) -> Iterator[RequestNotice]:
        """Expire requests past their deadline (fail closed): one notice each. A failed sweep is
        logged and yields nothing; the next round tries again."""
        try:
            expired = self.approvals.expire_due()
        except Exception:
            log.exception("expiry sweep failed")
            return
        for request_id in expired:
            log.info("request expired request=%s", request_id)
            yield RequestNotice("expired", request_id, self._read(request_id))

    def recover(self, lease_seconds: float) -> Iterator[Notice]:
        """Runs a dead process left behind (its lease lapsed): a notice each; an idempotent one, approved
        again, runs now (after its notice is out)."""
        for request_id, state in self.approvals.recover_interrupted(lease_seconds):
            log.warning("interrupted run request=%s is now %s", request_id, state)
            notice = RequestNotice("interrupted", request_id, self.approvals.get(request_id), state)
            yield notice
            if notice.in_thread and state == APPROVED:
                yield self.run(request_id)

    def release_held(self) -> Iterator[Notice]:
        """Requests a rule held (a freeze) whose approvals are in and that may run now: run them."""
        for request_id in self.approvals.release_held():
            log.info("held request released request=%s", request_id)
            yield RequestNotice("released", request_id, self.approvals.get(request_id))
            yield self.run(request_id)

    def run_stranded(self, older_than_seconds: float) -> Iterator[Notice]:
        """Approved requests whose replica died before running them: run them now (exactly once)."""
        for request_id in self.approvals.store.stranded(self.approvals.clock() - older_than_seconds):
            log.warning("approved request left unrun by a dead replica request=%s: running it", request_id)
            yield RequestNotice("stranded", request_id, None)
            yield self.run(request_id)

    def _read(self, request_id: str) -> RequestView | None:
        """The request, or None when it cannot be read now (its notice is then skipped, not the rest)."""
        try:
            return self.approvals.get(request_id)
        except Exception:
            log.exception("expiry notice failed request=%s", request_id)
            return None
