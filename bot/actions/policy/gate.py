"""The policy as the approval flow sees it: decisions, approver checks and the catalog, reloaded on change."""

from __future__ import annotations

import datetime as dt
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.actions.models import ActionRequest, ActionSpec, Actor, ApprovalRequirement, Decision, Waiting
from bot.actions.policy.engine import (
    Policy,
    Refusal,
    SlackGroupResolver,
    approval_refusal,
    counts_as_approval,
    evaluate,
    load_policy,
)


def no_slack_groups(_group_id: str) -> frozenset[str]:
    """A resolver for when Slack user groups cannot be looked up: nobody is in them."""
    return frozenset()


@dataclass(frozen=True)
class PolicyGate:
    """One loaded policy plus the resolver of Slack user groups."""

    policy: Policy
    resolver: SlackGroupResolver = no_slack_groups

    @property
    def version(self) -> str:
        """The policy version that decides."""
        return self.policy.version

    def decide(self, request: ActionRequest, actor: Actor, now: dt.datetime) -> Decision:
        """Deny, allow or require approval (first matching rule; deny by default)."""
        return evaluate(self.policy, request, actor, now, self.resolver)

    def may_approve(
        self, user: str, requester: str, requirement: ApprovalRequirement, owner: str | None = None
    ) -> tuple[bool, str]:
        """Whether the user's approval counts (never an agent's or the requester's, nor a barred `owner`'s:
        the owner of the agent that asked), and why not."""
        return counts_as_approval(user, requester, requirement, self.policy, self.resolver, owner=owner)

    def refusal(
        self, user: str, requester: str, requirement: ApprovalRequirement, owner: str | None = None
    ) -> Refusal | None:
        """Why `user` may not decide on the request (approve or reject it), or None when they may.

        Give the agent's `owner` when checking an approval; a rejection stays open to the owner.
        """
        return approval_refusal(user, requester, requirement, self.policy, self.resolver, owner=owner)

    @property
    def files(self) -> tuple[str, ...]:
        """The policy files the version is the hash of."""
        return self.policy.files

    def action(self, name: str) -> ActionSpec | None:
        """An action of the catalog."""
        return self.policy.actions.get(name)

    def waiting(self, rule: str | None) -> Waiting:
        """What a waiting request gets when `rule` denies it later (the default deny ends it)."""
        found = self.policy.rule(rule) if rule else None
        return found.waiting if found is not None else "deny"


class PolicyFolder:
    """Loads the policy folder, again whenever a file in it changes (so edits apply without a restart)."""

    def __init__(self, folder: Path, resolver: SlackGroupResolver = no_slack_groups) -> None:
        self.folder = folder
        self.resolver = resolver
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._gate: PolicyGate | None = None
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        """Name, modification time and size of each policy file: one directory read, one stat a file.

        Checked at every call (every click), so it stays cheap; a missing folder stamps as empty and
        `load_policy` then says what is wrong.
        """
        try:
            with os.scandir(self.folder) as entries:
                found = [
                    (entry.name, entry.stat())
                    for entry in entries
                    if entry.name.endswith((".yaml", ".yml")) and entry.is_file()
                ]
        except OSError:
            return ()
        return tuple(sorted((name, stat.st_mtime_ns, stat.st_size) for name, stat in found))

    def __call__(self) -> PolicyGate:
        """The current gate; raises `PolicyError` (naming file and line) when the files are broken."""
        with self._lock:
            stamp = self._files_stamp()
            if self._gate is None or stamp != self._stamp:
                self._gate = PolicyGate(load_policy(self.folder), self.resolver)
                self._stamp = stamp
            return self._gate
