"""The policy engine: decide on a request, explain the decision, count approvals, read `key=value` parameters.

Pure: no I/O, no clock, no Slack. Slack user groups (`S…`) are resolved by an injected
`SlackGroupResolver` (user-group id -> member user ids); the caller caches it. Policy files are read by
`load_policy` (bot/actions/policy/files.py), re-exported here so callers need one import.

Rules are checked in file-name order, then in the order written; the first rule whose conditions all
hold decides. A request no rule matches is denied.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import shlex
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.actions.models import (
    ActionRequest,
    ActionSpec,
    Actor,
    ApprovalRequirement,
    Decision,
    Outcome,
    ParamSpec,
    Refusal,
)
from bot.actions.policy.files import check_report, expand_env, load_policy
from bot.actions.policy.rules import (
    AGENT_ID,
    AGENTS,
    DAYS,
    USER_ID,
    USERGROUP_ID,
    FreezeWindow,
    Policy,
    PolicyError,
    Rule,
    Source,
    When,
    is_agent,
    range_text,
    suggest,
    value_problem,
)
from bot.errors import BadRequest

__all__ = [
    "Check",
    "ParamError",
    "Policy",
    "PolicyError",
    "Refusal",
    "Rule",
    "SlackGroupResolver",
    "Source",
    "Trace",
    "approval_refusal",
    "build_request",
    "check_report",
    "conflict_problem",
    "counted_approvers",
    "counts_as_approval",
    "eligible_approvers",
    "evaluate",
    "expand_env",
    "explain",
    "groups_of",
    "is_member",
    "load_policy",
    "members",
    "parse_key_values",
    "parse_params",
    "trace",
    "usage",
]

SlackGroupResolver = Callable[[str], frozenset[str]]
_TRUE, _FALSE = ("yes", "true"), ("no", "false")


# ---- parameters


class ParamError(BadRequest, ValueError):
    """Parameters that cannot be used; `problems` says what is wrong with each and what is valid."""

    def __init__(self, problems: Iterable[str], usage: str | None = None) -> None:
        self.problems = tuple(problems)
        lines = [f"  - {problem}" for problem in self.problems]
        if usage:
            lines.append(f"usage: {usage}")
        count = len(self.problems)
        super().__init__(
            "\n".join([f"{count} problem{'s' if count != 1 else ''} with the parameters:", *lines])
        )


def usage(action: ActionSpec) -> str:
    """`rollback-model model=<string> version=<integer at least 1> env=staging|prod`; optional ones in []."""
    parts = [action.name]
    for spec in action.params:
        if spec.enum:
            shape = "|".join(spec.enum)
        elif spec.type == "boolean":
            shape = "yes|no"
        else:
            bounds = f" {range_text(spec)}" if spec.minimum is not None or spec.maximum is not None else ""
            shape = f"<{spec.type}{bounds}>"
        optional = spec.default is not None or not spec.required
        parts.append(f"[{spec.name}={shape}]" if optional else f"{spec.name}={shape}")
    return " ".join(parts)


def parse_key_values(text: str) -> dict[str, str]:
    """`model=fraud-scorer note="two words"` -> {"model": "fraud-scorer", "note": "two words"} (shlex).

    A name given twice with the same value is read once; with different values it is refused, with the
    reading shown, since either choice could run the wrong thing.
    """
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise ParamError([f"cannot read {text!r}: {error}; close the quote"]) from error
    values: dict[str, list[str]] = {}
    problems: list[str] = []
    for token in tokens:
        key, equals, value = token.partition("=")
        if not equals:
            problems.append(f"{token!r} is not key=value; write it as name={token}")
        elif not key:
            problems.append(f"{token!r} has no name before '='")
        elif value not in values.setdefault(key, []):  # the same value twice says the same thing
            values[key].append(value)
    problems += [conflict_problem(key, given) for key, given in values.items() if len(given) > 1]
    if problems:
        raise ParamError(problems)
    return {key: given[0] for key, given in values.items()}


def conflict_problem(name: str, values: Sequence[str], secret: bool = False) -> str:
    """A parameter read with two or more values: "I read env as both `staging` and `prod`; say which one".

    A secret parameter's values are not repeated (the message may be posted where others read it).
    """
    if secret:
        return f"I read {name} {len(values)} times, with different values; say which one"
    shown = ["`" + (value.replace("`", "'") or '""') + "`" for value in values]
    listing = " and ".join(shown) if len(shown) == 2 else ", ".join(shown[:-1]) + f" and {shown[-1]}"
    return f"I read {name} as {'both ' if len(shown) == 2 else ''}{listing}; say which one"


def parse_params(action: ActionSpec, raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed, checked parameters from `key=value` strings with defaults; `ParamError` lists all problems."""
    names = [spec.name for spec in action.params]
    problems = [
        f"unknown parameter {key!r}{suggest(key, names)}; valid: {', '.join(names) or 'none'}"
        for key in raw
        if key not in names
    ]
    values: dict[str, Any] = {}
    for spec in action.params:
        text = raw.get(spec.name)
        if text is None:
            if spec.default is not None:
                values[spec.name] = spec.default
            elif spec.required:
                hint = f" ({spec.description})" if spec.description else ""
                problems.append(f"{spec.name}: missing; it is required{hint}")
            continue
        value, problem = _convert(spec, text)
        problem = problem or value_problem(spec, value)
        if problem:
            problems.append(f"{spec.name}: {problem}")
        else:
            values[spec.name] = value
    if problems:
        raise ParamError(problems, usage(action))
    return values


def _convert(spec: ParamSpec, text: str) -> tuple[Any, str | None]:
    if text == "":
        return None, "empty; give a value or leave the parameter out"
    if spec.type == "integer":
        if not re.fullmatch(r"[+-]?\d+", text.strip()):
            return None, f"{text!r} is not an integer"
        try:
            return int(text), None
        except ValueError:  # more than the 4,300 digits Python converts
            return None, f"{len(text.strip()):,} digits is too long for an integer"
    if spec.type == "number":
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        return (number, None) if math.isfinite(number) else (None, f"{text!r} is not a number")
    if spec.type == "boolean":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE, None
        return None, f"{text!r} is not a boolean; use yes, no, true or false"
    return text, None


def build_request(policy: Policy, action: str, raw: Mapping[str, str]) -> ActionRequest:
    """An `ActionRequest` from an action name and `key=value` strings; `ParamError` on any problem."""
    spec = policy.actions.get(action)
    if spec is None:
        raise ParamError([_unknown_action(policy, action)])
    return ActionRequest(action=action, params=parse_params(spec, raw))


def _checked_params(action: ActionSpec, params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Already-typed parameters checked again (requests may be built by hand), with defaults filled in."""
    specs = {spec.name: spec for spec in action.params}
    problems = [f"unknown parameter {key!r}" for key in params if key not in specs]
    values: dict[str, Any] = {}
    for name, spec in specs.items():
        value = params.get(name, spec.default)
        if value is None:
            if spec.required:
                problems.append(f"{name}: missing")
        elif problem := value_problem(spec, value):
            problems.append(f"{name}: {problem}")
        else:
            values[name] = value
    return values, problems


def _unknown_action(policy: Policy, action: str) -> str:
    valid = ", ".join(sorted(policy.actions))
    return f"unknown action {action!r}{suggest(action, policy.actions)}; valid actions: {valid}"


# ---- groups and approvals


@dataclass(frozen=True, slots=True)
class _Expanded:
    """Who a group name or id reaches, without calling Slack."""

    users: frozenset[str]  # user ids and agent ids (agent:NAME) listed
    slack: tuple[str, ...]  # Slack user-group ids, resolved only when needed
    every_agent: bool  # the built-in group `agents` is reached


def _expand(group: str, policy: Policy) -> _Expanded:
    """Who a group name or id reaches: listed people and agents, Slack user groups and `agents`."""
    users: set[str] = set()
    slack: list[str] = []
    pending, seen = [group], set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in policy.groups:
            pending.extend(policy.groups[name])
        elif USERGROUP_ID.fullmatch(name):
            slack.append(name)
        elif USER_ID.fullmatch(name) or AGENT_ID.fullmatch(name):
            users.add(name)
    return _Expanded(frozenset(users), tuple(slack), AGENTS in seen)


def members(group: str, policy: Policy, resolver: SlackGroupResolver) -> frozenset[str]:
    """User ids (and listed agent ids) in a policy group (nested groups expanded), a Slack user group (`S…`)
    or a user id (`U…`). The built-in `agents` adds nobody: the agents are not known here."""
    reached = _expand(group, policy)
    return reached.users.union(*(resolver(usergroup) for usergroup in reached.slack))


def is_member(user: str, group: str, policy: Policy, resolver: SlackGroupResolver) -> bool:
    """Whether `user` (a person or an agent) is in `group`; Slack is asked only when the policy's own lists
    do not settle it, and never about an agent, which is in no Slack user group."""
    reached = _expand(group, policy)
    if is_agent(user):
        return user in reached.users or reached.every_agent
    return user in reached.users or any(user in resolver(usergroup) for usergroup in reached.slack)


def groups_of(user: str, policy: Policy, resolver: SlackGroupResolver) -> frozenset[str]:
    """The policy groups `user` belongs to (directly, nested or through a Slack user group); `agents`
    for an agent."""
    found = frozenset(name for name in policy.groups if is_member(user, name, policy, resolver))
    return found | {AGENTS} if is_agent(user) else found


def eligible_approvers(
    requirement: ApprovalRequirement, policy: Policy, resolver: SlackGroupResolver
) -> frozenset[str]:
    """Everyone in the requirement's groups but agents, who never approve (the requester, and a barred
    owner, are excluded later, by `counts_as_approval`)."""
    everyone = frozenset().union(*(members(group, policy, resolver) for group in requirement.groups))
    return frozenset(user for user in everyone if not is_agent(user))


def counts_as_approval(
    user: str,
    requester: str,
    requirement: ApprovalRequirement,
    policy: Policy,
    resolver: SlackGroupResolver,
    *,
    already_approved: Collection[str] = (),
    owner: str | None = None,
) -> tuple[bool, str]:
    """Whether `user`'s approval counts, and the reason shown to them either way.

    `owner` is the owner of the agent that asked (None for a person's request): with
    `owner_may_approve: false` their approval does not count.
    """
    group, refusal = _approval(user, requester, requirement, policy, resolver, already_approved, owner)
    if refusal is not None:
        return False, refusal.render("approve")
    return True, f"counts as an approval from {group}"


def approval_refusal(
    user: str,
    requester: str,
    requirement: ApprovalRequirement,
    policy: Policy,
    resolver: SlackGroupResolver,
    *,
    owner: str | None = None,
) -> Refusal | None:
    """Why `user` may not decide on the request (rendered per verb), or None when they may.

    Pass the agent's `owner` to check an approval; leave it out for a rejection, which stays open to
    the owner (stopping one's own agent is always allowed to an approver).
    """
    return _approval(user, requester, requirement, policy, resolver, (), owner)[1]


def _approval(
    user: str,
    requester: str,
    requirement: ApprovalRequirement,
    policy: Policy,
    resolver: SlackGroupResolver,
    already_approved: Collection[str],
    owner: str | None = None,
) -> tuple[str | None, Refusal | None]:
    """The group `user` counts for, or the refusal.

    An agent is refused first, whatever the groups say, so no policy can make an agent an approver.
    """
    wanted = _either(requirement.groups)
    if is_agent(user):
        return None, Refusal(reason="agent", groups=wanted)
    if user == requester:
        return None, Refusal(reason="requester", groups=wanted)
    if owner is not None and user == owner and not requirement.owner_may_approve:
        return None, Refusal(reason="owner", groups=wanted)
    if user in already_approved:
        return None, Refusal(reason="already", groups=wanted)
    group = next((group for group in requirement.groups if is_member(user, group, policy, resolver)), None)
    if group is None:
        return None, Refusal(reason="outside", groups=wanted)
    return group, None


def counted_approvers(
    approvers: Iterable[str],
    requester: str,
    requirement: ApprovalRequirement,
    policy: Policy,
    resolver: SlackGroupResolver,
    *,
    owner: str | None = None,
) -> tuple[str, ...]:
    """The distinct approvers whose approval counts, in order; enough once there are `requirement.count`.

    `owner`: the owner of the agent that asked, as for `counts_as_approval`.
    """
    counted: list[str] = []
    for user in approvers:
        counts = counts_as_approval(
            user, requester, requirement, policy, resolver, already_approved=counted, owner=owner
        )
        if counts[0]:
            counted.append(user)
    return tuple(counted)


def _either(names: Iterable[str]) -> str:
    items = list(names)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


# ---- evaluation


@dataclass(frozen=True, slots=True)
class Check:
    """One rule about the requested action, and whether its conditions held (why, or why not)."""

    rule: Rule
    matched: bool
    why: str


@dataclass(frozen=True, slots=True)
class Trace:
    """A decision with the rules checked on the way to it, for `explain` and for audit."""

    decision: Decision
    checks: tuple[Check, ...]
    other_rules: int  # rules about other actions, not considered
    rules_checked: bool = (
        True  # False when the request was refused before any rule (unknown action, bad params)
    )


def trace(
    policy: Policy, request: ActionRequest, actor: Actor, now: dt.datetime, resolver: SlackGroupResolver
) -> Trace:
    """The decision and every rule checked; `now` without a timezone is taken as UTC."""

    def decide(outcome: Outcome, rule: Rule | None, reason: str) -> Decision:
        approval = rule.approval if rule is not None else None
        name = rule.name if rule is not None else None
        return Decision(
            outcome=outcome,
            rule=name,
            reason=reason,
            policy_version=policy.version,
            approval=approval,
            evaluated_at=now,
        )

    action = policy.actions.get(request.action)
    if action is None:
        return Trace(
            decide("deny", None, _unknown_action(policy, request.action)), (), 0, rules_checked=False
        )
    params, problems = _checked_params(action, request.params)
    if problems:
        return Trace(
            decide("deny", None, f"invalid parameters: {'; '.join(problems)}"), (), len(policy.rules)
        )
    moment = now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)
    others = sum(not rule.covers(action.name) for rule in policy.rules)
    checks: list[Check] = []
    for rule in policy.rules:
        if not rule.covers(action.name):
            continue
        matched, why = _conditions(rule.when, params, actor, moment, policy, resolver)
        checks.append(Check(rule, matched, why))
        if matched:
            return Trace(decide(rule.outcome, rule, rule.reason), tuple(checks), others)
    reason = f"no rule allows {action.name} with these parameters here and now, so it is denied by default"
    return Trace(decide("deny", None, reason), tuple(checks), others)


def evaluate(
    policy: Policy, request: ActionRequest, actor: Actor, now: dt.datetime, resolver: SlackGroupResolver
) -> Decision:
    """What the policy decides for this request, actor and moment: the first matching rule, else deny."""
    return trace(policy, request, actor, now, resolver).decision


def _conditions(
    when: When,
    params: Mapping[str, Any],
    actor: Actor,
    now: dt.datetime,
    policy: Policy,
    resolver: SlackGroupResolver,
) -> tuple[bool, str]:
    """Whether every condition holds: (True, what held) or (False, the first that did not).

    Checked in the order params, channel, freeze, requester, so Slack is asked last and only if needed.
    """
    held: list[str] = []
    for test in when.params:
        if not test.holds(params):
            value = params.get(test.param)
            shown = "is not given" if value is None else f"is {value}"
            return False, f"{test.param} {shown}, so not {test}"
        held.append(str(test))
    if when.channel_in is not None:
        if actor.channel not in when.channel_in:
            return False, f"channel {actor.channel or '(none)'} is not one of {', '.join(when.channel_in)}"
        held.append(f"channel {actor.channel}")
    if when.freeze:
        window = next((window for window in when.freeze if window.contains(now)), None)
        if window is None:
            texts = "; ".join(window.text for window in when.freeze)
            return False, f"outside the freeze {texts} (it is {_clock(when.freeze[0], now)} there)"
        held.append(f"inside the freeze {window.text} (it is {_clock(window, now)} there)")
    if when.requester_in is not None:
        group = next(
            (group for group in when.requester_in if is_member(actor.user_id, group, policy, resolver)), None
        )
        if group is None:
            return False, f"requester {actor.user_id} is not in {_either(when.requester_in)}"
        held.append(f"requester is in {group}")
    return True, ", ".join(held) or "it has no conditions"


def _clock(window: FreezeWindow, now: dt.datetime) -> str:
    local = window.local(now)
    return f"{DAYS[local.weekday()]} {local:%H:%M %Z}"


def explain(
    policy: Policy,
    request: ActionRequest,
    actor: Actor,
    now: dt.datetime,
    resolver: SlackGroupResolver,
    *,
    owner: str | None = None,
) -> str:
    """A human explanation: decision, deciding rule (file:line), why, the earlier rules that did not match.

    The requester may be an agent (`agent:NAME`); `owner` is its owner, to say whether they may approve.
    """
    result = trace(policy, request, actor, now, resolver)
    decision = result.decision
    action = policy.actions.get(request.action)
    shown = " ".join(f"{key}={_shown(action, key, value)}" for key, value in request.params.items())
    where = f" in {actor.channel}" if actor.channel else ""
    by = f"{actor.user_id} (owner {owner})" if owner is not None else actor.user_id
    lines = [f"request: {request.action} {shown}".rstrip() + f", by {by}{where} at {now.isoformat()}"]
    lines.append(f"decision: {decision.outcome}")
    rule = policy.rule(decision.rule) if decision.rule is not None else None
    if rule is not None:
        lines.append(f"rule: {rule.name} ({rule.source})")
        lines.append(f"why: {decision.reason}")
        lines.append(f"matched because: {result.checks[-1].why}")
    else:
        lines.append("rule: none")
        lines.append(f"why: {decision.reason}")
    if decision.approval is not None:
        needed = decision.approval
        barred = {actor.user_id} | ({owner} if owner is not None and not needed.owner_may_approve else set())
        who = sorted(eligible_approvers(needed, policy, resolver) - barred)
        lines.append(
            f"approval: {needed.count} from {_either(needed.groups)} within {needed.within_minutes} minutes; "
            f"the requester cannot approve{_owner_note(needed, actor.user_id)}; "
            f"can approve: {', '.join(who) or 'nobody'}"
        )
    earlier = [check for check in result.checks if not check.matched]
    if not result.rules_checked:
        lines.append("no rule was checked: the request itself is not valid")
    elif earlier:
        lines.append(f"rules about {request.action} that did not match:")
        lines.extend(f"  - {check.rule.name} ({check.rule.source}): {check.why}" for check in earlier)
    else:
        lines.append(f"no earlier rule about {request.action}")
    if result.rules_checked:
        lines.append(f"rules about other actions, not considered: {result.other_rules}")
    lines.append(
        f"requester's groups: {', '.join(sorted(groups_of(actor.user_id, policy, resolver))) or 'none'}"
    )
    lines.append(f"policy version: {decision.policy_version}")
    return "\n".join(lines)


def _owner_note(requirement: ApprovalRequirement, requester: str) -> str:
    """What the requirement says of the owner of an agent that asks (nothing for a person's request)."""
    if not is_agent(requester):
        return ""
    if requirement.owner_may_approve:
        return "; the agent's owner may approve"
    return "; the agent's owner cannot approve (owner_may_approve: false)"


def _shown(action: ActionSpec | None, key: str, value: Any) -> str:
    spec = next((spec for spec in action.params if spec.name == key), None) if action else None
    return "***" if spec is not None and spec.secret else shlex.quote(str(value))
