"""The policy as the engine uses it: `Policy`, its `Rule`s and their conditions, and where each is written.

These are built by the loader (bot/actions/policy/files.py) and read by the engine
(bot/actions/policy/engine.py).
The value checks here (`value_problem`, `range_text`) serve both: the loader checks defaults and operands
with them, the engine checks a request's parameters.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo

from bot.actions.models import ActionSpec, ApprovalRequirement, Outcome, ParamSpec, Waiting
from bot.errors import ConfigurationError

Operator = Literal["eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "matches"]
OPERATORS: tuple[Operator, ...] = get_args(Operator)
ANY_ACTION = "*"

USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
USERGROUP_ID = re.compile(r"S[A-Z0-9]{2,}")
# An AI agent as a requester: `agent:NAME` (the name it was added with by `steward agents add`).
AGENT_PREFIX = "agent:"
AGENT_ID = re.compile(r"agent:[a-z][a-z0-9-]{0,39}")
AGENTS = "agents"  # the built-in group of every agent; a policy cannot define a group of that name

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEK_MINUTES = 7 * 24 * 60
_SYMBOLS = {"eq": "==", "ne": "!=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=", "in": "in"}


class PolicyError(ConfigurationError):
    """The policy files cannot be used; `problems` lists every one as `file, line N: field: what to do`."""

    def __init__(self, folder: Path, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the policy files in {folder}:"
        super().__init__("\n".join([header, *(f"  {problem}" for problem in self.problems)]))


@dataclass(frozen=True, slots=True)
class Source:
    """Where a part of the policy is written."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class ParamTest:
    """`param op value`; false when the request does not carry the parameter, whatever the operator."""

    param: str
    op: Operator
    value: Any

    def holds(self, params: Mapping[str, Any]) -> bool:
        """Whether the request's parameters pass this test."""
        value = params.get(self.param)
        if value is None:
            return False
        try:
            if self.op == "matches":
                return isinstance(value, str) and re.fullmatch(self.value, value) is not None
            return bool(_COMPARE[self.op](value, self.value))
        except TypeError:  # a request built by hand with a value of the wrong type never matches
            return False

    def __str__(self) -> str:
        if self.op in ("in", "not_in"):
            values = ", ".join(str(value) for value in self.value)
            return f"{self.param} {'not in' if self.op == 'not_in' else 'in'} [{values}]"
        if self.op == "matches":
            return f"{self.param} matches {self.value!r}"
        return f"{self.param} {_SYMBOLS[self.op]} {self.value}"


_COMPARE: dict[str, Any] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


@dataclass(frozen=True, slots=True)
class FreezeWindow:
    """Weekly local wall-clock spans: (start minute counted from Monday 00:00, length in minutes)."""

    spans: tuple[tuple[int, int], ...]
    zone: ZoneInfo
    text: str

    def local(self, now: dt.datetime) -> dt.datetime:
        """`now` on the window's wall clock; a naive `now` is taken as UTC."""
        aware = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
        try:
            return aware.astimezone(self.zone)
        except OverflowError:  # only at year 1 or 9999; no real request is there
            return aware

    def contains(self, now: dt.datetime) -> bool:
        """Whether `now` is in the window, judged on the local wall clock (so the window follows DST)."""
        local = self.local(now)
        minute = local.weekday() * 1440 + local.hour * 60 + local.minute
        return any((minute - start) % WEEK_MINUTES < length for start, length in self.spans)


@dataclass(frozen=True, slots=True)
class When:
    """A rule's conditions; all that are present must hold."""

    params: tuple[ParamTest, ...] = ()
    requester_in: tuple[str, ...] | None = None
    channel_in: tuple[str, ...] | None = None
    freeze: tuple[FreezeWindow, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: the actions it covers, its conditions and its outcome."""

    name: str
    actions: tuple[str, ...]
    when: When
    outcome: Outcome
    reason: str
    approval: ApprovalRequirement | None
    source: Source
    # What a request already waiting gets when this rule denies it later (at an approval or at the run):
    # "hold" keeps it waiting (nothing runs while the rule holds), "deny" ends it.
    waiting: Waiting = "deny"

    def covers(self, action: str) -> bool:
        """Whether the rule is about this action at all."""
        return ANY_ACTION in self.actions or action in self.actions


@dataclass(frozen=True)
class Policy:
    """The loaded policy: the action catalog, the ordered rules, the groups and the version that decided."""

    actions: Mapping[str, ActionSpec]
    rules: tuple[Rule, ...]
    groups: Mapping[str, tuple[str, ...]]
    version: str
    action_sources: Mapping[str, Source]
    files: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def rule(self, name: str) -> Rule | None:
        """The rule with this name, if any."""
        return next((rule for rule in self.rules if rule.name == name), None)


def is_agent(identity: str) -> bool:
    """Whether a requester or clicker is an AI agent (`agent:…`), not a person.

    The prefix decides, not the name's shape, so a malformed agent id is never taken for a person.
    """
    return identity.startswith(AGENT_PREFIX)


def value_problem(spec: ParamSpec, value: Any, *, check_range: bool = True) -> str | None:
    """Why `value` is not a valid value of the parameter, or None when it is."""
    kind = spec.type
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{value!r} is not an integer"
    if kind == "number" and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        return f"{value!r} is not a number"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{value!r} is not a boolean; use yes, no, true or false"
    if kind == "string" and not isinstance(value, str):
        return f"{value!r} is not a string"
    if spec.enum is not None and value not in spec.enum:
        return f"{value!r} must be one of {', '.join(spec.enum)}"
    # Bounds are for numbers; a string parameter written with minimum: is reported by the loader.
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    too_low = numeric and spec.minimum is not None and value < spec.minimum
    too_high = numeric and spec.maximum is not None and value > spec.maximum
    if check_range and (too_low or too_high):
        return f"{value} is out of range; must be {range_text(spec)}"
    if spec.pattern is not None and isinstance(value, str):
        try:
            if re.fullmatch(spec.pattern, value) is None:
                return f"{value!r} does not match the pattern {spec.pattern}"
        except re.error:
            return f"the pattern {spec.pattern!r} does not compile; fix the policy"
    return None


def range_text(spec: ParamSpec) -> str:
    """`between 1 and 100`, `at least 1` or `at most 100`."""
    low, high = number_text(spec.minimum), number_text(spec.maximum)
    if spec.minimum is not None and spec.maximum is not None:
        return f"between {low} and {high}"
    return f"at least {low}" if spec.minimum is not None else f"at most {high}"


def number_text(value: float | None) -> str:
    """A bound as messages show it: `3` for 3.0, `2.5` for 2.5."""
    return str(int(value)) if value is not None and float(value).is_integer() else str(value)


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a choice is close, else ``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""
