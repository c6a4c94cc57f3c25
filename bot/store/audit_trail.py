"""What the audit log alone says about one request: may it run now, and did each run have the right to.

The entries of a request are read in order. Its right to run comes from one entry:
- a decision that allows it (`decided` or `amended` with outcome `allow`), or
- `approved` / `released`, naming approvers who each have a live `approval` entry since the last
  decision (`decided`, `amended`, `redecided`), as many as the stated requirement asks.

The right is lost by a `revoked` or `approval_lapsed` approval that leaves fewer than needed (the
requirement is the one the log last stated: `decided` or `requirement_changed`; else as many as the
`approved` entry named), by `quorum_lost` or `held`, by a new decision, by the run starting
(`execution_started`; `interrupted` with `now: approved` gives it back), and for good by `cancelled`,
`rejected`, `expired`, a denial, `execution_finished`, an interruption that needs a person, or
`run_refused` (the run claim found no authority in the log).

An entry kind not listed here blocks the request: what it means must be taught here first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DECISIONS = frozenset({"decided", "amended", "redecided"})
GRANTS = frozenset({"approved", "released"})
WITHDRAWALS = frozenset({"revoked", "approval_lapsed"})
SUSPENSIONS = frozenset({"quorum_lost", "held"})
ENDINGS = frozenset({"cancelled", "rejected", "expired", "run_refused"})
RUNS = frozenset({"execution_started", "interrupted", "execution_finished"})
# after the request is final: an agent's callback delivered or given up (changes nothing of the request)
NOTES = frozenset({"callback_delivered", "callback_failed"})
KNOWN_KINDS = (
    DECISIONS
    | GRANTS
    | WITHDRAWALS
    | SUSPENSIONS
    | ENDINGS
    | RUNS
    | NOTES
    | {"requested", "approval", "requirement_changed"}
)


@dataclass(frozen=True)
class Logged:
    """One audit entry of a request, as the trail reads it."""

    seq: int
    kind: str
    actor: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Run:
    """A run the log records (`execution_started`), and whether the log allowed it at that moment."""

    seq: int
    allowed: bool
    why: str


class RequestTrail:
    """The request's standing according to its audit entries, fed oldest first."""

    def __init__(self, entries: Iterable[Logged] = ()) -> None:
        self.live: set[str] = set()  # approvers with a live approval since the last decision
        self.stated: int | None = None  # approvals the log last said are needed
        self.authority = ""  # why it may run ('' while it may not)
        self.since: int | None = None  # the entry that gave the authority
        self.granted: frozenset[str] = frozenset()
        self.needed = 0
        self.blocked = "the audit log holds no decision on it"
        self.started: int | None = None  # the run in progress (or done)
        self.ended = ""
        self.runs: list[Run] = []
        self.refused: list[tuple[int, str]] = []  # runs the claim refused for want of the log's authority
        for entry in entries:
            self.add(entry)

    def may_run(self) -> tuple[bool, str]:
        """Whether the log lets the request run now, and why (or why not)."""
        if self.ended:
            return False, self.ended
        if self.started is not None:
            return False, f"its run started at entry {self.started}"
        if not self.authority:
            return False, self.blocked
        counted = len(self.granted & self.live)
        if counted < self.needed:
            return False, (
                f"approvals were revoked or lapsed after entry {self.since}: {counted} of the "
                f"{self.needed} needed still count"
            )
        return True, self.authority

    def add(self, entry: Logged) -> None:
        """Read the next entry of the request."""
        kind, seq = entry.kind, entry.seq
        if kind in DECISIONS:
            self._decision(entry)
        elif kind == "approval" and entry.actor:
            self.live.add(entry.actor)
        elif kind in WITHDRAWALS and entry.actor:
            self.live.discard(entry.actor)
        elif kind in GRANTS:
            self._grant(entry)
        elif kind == "requirement_changed":
            self.stated = _count(entry.data)
            if self.authority and self.stated is not None:
                self.needed = self.stated
        elif kind in SUSPENSIONS:
            rule = entry.data.get("rule")
            self._withhold(
                f"held by `{rule}` at entry {seq}" if kind == "held" else f"quorum lost at entry {seq}"
            )
        elif kind in ENDINGS:
            self.ended = f"{kind} at entry {seq}"
            if kind == "run_refused":
                self.refused.append((seq, str(entry.data.get("why", ""))))
        elif kind == "execution_started":
            allowed, why = self.may_run()
            self.runs.append(Run(seq, allowed, why))
            self.started = seq
        elif kind == "interrupted":
            if entry.data.get("now") == "approved":
                self.started = None  # an idempotent action runs again on the same authority
            else:
                self.ended = f"interrupted at entry {seq}; it needs a person"
        elif kind == "execution_finished":
            self.ended = f"finished at entry {seq}"
        elif kind not in KNOWN_KINDS:
            self.ended = (
                f"entry {seq} is of kind {kind!r}, which the audit check does not know "
                "(bot/store/audit_trail.py must learn what it means)"
            )

    def _withhold(self, why: str) -> None:
        self.authority, self.since, self.granted, self.needed, self.blocked = "", None, frozenset(), 0, why

    def _decision(self, entry: Logged) -> None:
        outcome, rule, seq = entry.data.get("outcome"), entry.data.get("rule"), entry.seq
        self.live.clear()  # a new decision: approvals given before it no longer count
        self.stated = _count(entry.data)
        if outcome == "deny":
            self.ended = f"denied by `{rule}` at entry {seq}"
        elif entry.kind == "redecided":
            self._withhold(f"decided again at entry {seq}; approvals before it no longer count")
        elif outcome == "allow":
            self._withhold("")
            self.authority, self.since = f"allowed by `{rule}` (entry {seq})", seq
        elif outcome == "require_approval":
            self._withhold(f"waiting for approvals since entry {seq}")
        else:
            self._withhold(f"entry {seq} records no outcome the audit check knows ({outcome!r})")

    def _grant(self, entry: Logged) -> None:
        names = entry.data.get("approvers")
        seq = entry.seq
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            self._withhold(f"entry {seq} names no approvers")
            return
        missing = sorted(set(names) - self.live)
        if missing:
            self._withhold(f"entry {seq} names {', '.join(missing)}, who have no live approval in the log")
        elif len(set(names)) != len(names):
            self._withhold(f"entry {seq} names an approver twice")
        elif self.stated is not None and len(names) < self.stated:
            self._withhold(f"entry {seq} names {len(names)} approver(s) where {self.stated} are needed")
        else:
            done = "approved" if entry.kind == "approved" else f"{entry.kind}, approved"
            self.authority, self.since = f"{done} by {', '.join(names)} (entry {seq})", seq
            self.granted = frozenset(names)
            self.needed = self.stated if self.stated is not None else len(names)


def _count(data: dict[str, Any]) -> int | None:
    approval = data.get("approval")
    count = approval.get("count") if isinstance(approval, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None
