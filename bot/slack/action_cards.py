"""Block Kit for guarded actions: the approval card, decisions, results, the rejection modal, the catalog.

Pure rendering: a `RequestView` (and what the policy says about its action) in, Slack messages out.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.actions.approvals import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    FAILED,
    NEEDS_ATTENTION,
    PENDING,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    RequestView,
)
from bot.actions.executors.dispatch import ExecutionResult
from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy.engine import Policy, conflict_problem, usage
from bot.actions.policy.rules import USER_ID
from bot.answers.runbooks import RunbookExcerpt
from bot.redaction import mask_secrets
from bot.slack.blocks import RenderedMessage, button
from bot.slack.mrkdwn import escape, link, to_plain
from bot.slack.payloads import (
    ACTION_APPROVE,
    ACTION_CANCEL,
    ACTION_PICK_ACTION,
    ACTION_REJECT,
    ACTION_REVOKE,
    BLOCK_APPROVAL,
    BLOCK_CHANNEL,
    BLOCK_PARAM_PREFIX,
    BLOCK_PICK_ACTION,
    BLOCK_REJECT_REASON,
    INPUT_CHANNEL,
    INPUT_PARAM,
    INPUT_REJECT_REASON,
    VIEW_REJECT_REASON,
    VIEW_REQUEST_ACTION,
    RejectMetadata,
    RequestFormMetadata,
    RequestValue,
)

Block = dict[str, Any]
REQUEST_LINE_CHARS = 2000  # a request line (with its cut note) leaves room for the rest of a section
MAX_FIELD_TEXT = 2000  # Slack's limit on a section field
MAX_OPTIONS, MAX_OPTION_VALUE = 100, 150  # Slack's limits on a select's options and an option's value
EXCERPT_CHARS = 400
OUTPUT_CHARS = 600
REASON_CHARS = 500  # an agent's stated reason on the card; escaped, it stays within a section's 3,000
MASK = "***"
POLICY_BROKEN = (
    "The policy files cannot be loaded, so I cannot run or request any action right now. "
    "An admin can see what is wrong with `steward policy check`."
)


@dataclass(frozen=True)
class CardFacts:
    """What the card shows besides the request itself: from the policy and the knowledge base."""

    risk: str
    rule_source: str | None  # "policies/30-models.yaml:48", None when the rule is gone from the policy
    runbook: RunbookExcerpt | None  # None: the action names no runbook
    owner_barred: bool = False  # the rule says owner_may_approve: false (it matters on an agent's request)


def secret_params(spec: ActionSpec | None) -> frozenset[str]:
    """The names of parameters never shown."""
    return frozenset(param.name for param in spec.params if param.secret) if spec else frozenset()


def request_line(
    action: str, params: Mapping[str, Any], secret: Iterable[str] = (), limit: int = REQUEST_LINE_CHARS
) -> str:
    """`retrain-model model=fraud-scorer env=prod` (secret values masked, and credentials in any value),
    as inline code of at most `limit` characters: a longer one is cut, closed, and says so."""
    hidden = set(secret)
    shown = " ".join(
        f"{key}={MASK if key in hidden else shlex.quote(_masked(value))}" for key, value in params.items()
    )
    plain = (action + " " + shown).strip().replace("`", "'")  # no backtick can close the code span early
    line = "`" + escape(plain) + "`"
    if len(line) <= limit:
        return line
    note = f"… _(cut: {{shown:,}} of {len(plain):,} characters shown)_"
    room = limit - len("``") - len(note.format(shown=len(plain)))
    size = kept = 0
    for char in plain:  # cut the text, not its escaped form, so no entity (`&amp;`) is cut in two
        size += len(escape(char))
        if size > room:
            break
        kept += 1
    head = plain[:kept].rstrip()
    return "`" + escape(head) + "`" + note.format(shown=len(head))


def slack_date(timestamp: float) -> str:
    """A date Slack shows in the reader's time zone, with a UTC fallback."""
    fallback = dt.datetime.fromtimestamp(timestamp, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(timestamp)}^{{date_short_pretty}} {{time}}|{fallback}>"


def requester_text(view: RequestView) -> str:
    """Who asked: a person as a mention, an AI agent as "agent `release-bot` (owner <@U…>)".

    The agent's name and owner come from Steward's own records (the name is checked when the agent is
    added), but neither may become anything but text and one mention of the owner.
    """
    if view.agent is None:
        return f"<@{view.requester}>"
    name = escape(view.agent.replace("`", "'"))
    if view.agent_owner is None:
        return f"agent `{name}`"
    return f"agent `{name}` (owner {_person(view.agent_owner)})"


def _person(user: str) -> str:
    """A Slack user id as a mention; anything else as text."""
    return f"<@{user}>" if USER_ID.fullmatch(user) else escape(user)


def preformatted(text: str) -> str:
    """Untrusted text as a code block: escaped, so nothing in it becomes a mention, a link or formatting
    (`*bold*` stays as typed), and unable to close the block early."""
    return "```" + escape(text).replace("```", "``\u200b`") + "```"


def _agent_reason(view: RequestView) -> Block | None:
    """The agent's stated reason, shown as the agent gave it: its own words, untrusted, cut to fit."""
    if view.agent is None:
        return None
    reason = (view.justification or "").strip()
    if not reason:
        return _context("The agent gave no reason.")
    body = preformatted(_clip(reason, REASON_CHARS))
    text = {"type": "mrkdwn", "text": f"*The agent's reason* (its own words, unverified)\n{body}"}
    return {"type": "section", "text": {**text, "verbatim": True}}


def _by_agent(view: RequestView) -> str:
    """`, requested by agent `x` (owner <@U…>),` for an agent's request; nothing for a person's."""
    return f", requested by {requester_text(view)}," if view.agent is not None else ""


def rule_text(rule: str | None, source: str | None) -> str:
    """`retrain-prod-one-approver` (policies/30-models.yaml:48), or what decided without a rule."""
    if rule is None:
        return "no rule (denied by default)"
    return f"`{escape(rule)}`" + (f" ({escape(source)})" if source else "")


# ---- decisions and results, posted in the request's thread


def denied_text(view: RequestView, source: str | None) -> str:
    """A refused request: why, and the rule that said so."""
    return (
        f":no_entry: {request_line(view.action, view.params)}{_by_agent(view)} is *denied*: "
        f"{escape(view.reason)}\nRule: {rule_text(view.rule, source)}. Nothing ran."
    )


def allowed_text(view: RequestView, source: str | None) -> str:
    """A request the policy allows without approval."""
    line = request_line(view.action, view.params) + _by_agent(view).rstrip(",")
    return f":white_check_mark: Allowed by rule {rule_text(view.rule, source)}: running {line}…"


def result_message(view: RequestView, result: ExecutionResult) -> RenderedMessage:
    """Success or failure of a run: summary, duration and a short excerpt of the output."""
    verb = "succeeded" if result.ok else "failed"
    icon = ":white_check_mark:" if result.ok else ":x:"
    took = result.duration_seconds
    duration = f"{took * 1000:.0f} ms" if took < 1 else f"{took:.1f} s"
    by = f" (requested by {requester_text(view)})" if view.agent is not None else ""
    head = f"{icon} *{escape(view.action)} {verb}*{by} in {duration}: {escape(_clip(result.summary, 1500))}"
    blocks: list[Block] = [_section(head)]
    output = result.output.strip()
    if output:
        excerpt = output if len(output) <= OUTPUT_CHARS else output[:OUTPUT_CHARS].rstrip() + "\n…"
        blocks.append(_section(preformatted(excerpt)))
    # the fallback is mrkdwn too (notifications): the executor's words are escaped there as well
    return RenderedMessage(text=escape(_clip(f"{view.action} {verb}: {result.summary}", 300)), blocks=blocks)


def expired_text(view: RequestView) -> str:
    """Posted in the thread when the sweep expires a request."""
    when = slack_date(view.deadline) if view.deadline else "its deadline"
    return (
        f":hourglass: The request {request_line(view.action, view.params)} expired at {when} "
        f"with {len(view.approvers)} of {view.required_count} approvals; nothing ran. "
        "Ask again if it is still needed."
    )


def released_text(view: RequestView) -> str:
    """Posted in the thread when a held request (a freeze) may run: its approvals are in."""
    return (
        f":arrow_forward: {request_line(view.action, view.params)} is no longer held by the policy and its "
        "approvals still count, so it runs now."
    )


def interrupted_text(view: RequestView) -> str:
    """Posted in the thread when a run was interrupted (the process running it stopped)."""
    line = request_line(view.action, view.params)
    if view.status == APPROVED:
        return (
            f":arrows_counterclockwise: The run of {line} was interrupted (Steward stopped while it ran). "
            "The action is idempotent, so it runs again now with the same idempotency key."
        )
    return (
        f":warning: The run of {line} was interrupted (Steward stopped while it ran), so whether it took "
        "effect is unknown. The action is not idempotent, so it will not run again by itself: check the "
        "system (and its runbook), then request it again if it is still needed."
    )


# ---- the approval card


def approval_card(view: RequestView, facts: CardFacts, decided_by: str | None = None) -> RenderedMessage:
    """The card: request, requester, risk, rule and why, runbook excerpt, approvals, deadline, buttons."""
    fields = [
        f"*Risk tier*\n{escape(facts.risk)}",
        f"*Requested by*\n{requester_text(view)}",
        f"*Approvals*\n{_approvals(view)}",
        f"*Deadline*\n{slack_date(view.deadline) if view.deadline else 'none'}",
    ]
    blocks: list[Block] = [
        _section(f":lock: *Approval needed*: {request_line(view.action, view.params)}"),
        {"type": "section", "fields": [_mrkdwn(field, MAX_FIELD_TEXT) for field in fields]},
        _section(f"*Rule* {rule_text(view.rule, facts.rule_source)}\n*Why* {escape(view.reason)}"),
        _runbook(facts.runbook),
        _context(_state(view, decided_by, facts.owner_barred)),
    ]
    if (reason := _agent_reason(view)) is not None:
        blocks.insert(2, reason)  # after who asked: why the agent says it asks
    buttons = _buttons(view)
    if buttons:
        blocks.append({"type": "actions", "block_id": BLOCK_APPROVAL, "elements": buttons})
    text = f"Approval needed: {view.action} requested by {requester_text(view)} ({view.status})"
    return RenderedMessage(text=text, blocks=blocks)


def _approvals(view: RequestView) -> str:
    groups = " or ".join(view.required_groups) or "nobody"
    names = ", ".join(f"<@{user}>" for user in view.approvers) or "none yet"
    return f"{len(view.approvers)} of {view.required_count} from {escape(groups)}: {names}"


def _runbook(excerpt: RunbookExcerpt | None) -> Block:
    if excerpt is None:
        return _context("No runbook is named for this action in the policy.")
    if excerpt.title is None:
        named = f":warning: The governing runbook `{escape(excerpt.path)}`"
        if excerpt.problem:
            return _context(f"{named} is not quoted: {escape(excerpt.problem)}.")
        return _context(f"{named} is not in the knowledge base, so I cannot quote it.")
    name = link(excerpt.url, excerpt.title) if excerpt.url else escape(excerpt.title)
    where = f" · {escape(excerpt.section)}" if excerpt.section and excerpt.section != excerpt.title else ""
    where += f" · source `{escape(excerpt.source)}`" if excerpt.source else ""
    quote = escape(_clip(" ".join(to_plain(excerpt.text).split()), EXCERPT_CHARS))
    return _section(f"*Runbook* {name}{where}\n>{quote}")


def _waiting(view: RequestView, owner_barred: bool) -> str:
    """Who cannot approve a waiting request: its requester; for an agent's, agents and maybe the owner."""
    if view.agent is None:
        return "the requester cannot approve."
    if owner_barred and view.agent_owner is not None:
        return f"an agent never approves, nor does its owner {_person(view.agent_owner)}."
    return "an agent never approves."


def _state(view: RequestView, decided_by: str | None, owner_barred: bool = False) -> str:
    approvers = ", ".join(f"<@{user}>" for user in view.approvers) or "nobody"
    summary = f": {escape(_clip(view.result_summary, 300))}" if view.result_summary else ""
    states = {
        PENDING: ":hourglass_flowing_sand: Waiting for approval. Approvers are checked when they click; "
        + _waiting(view, owner_barred),
        APPROVED: f":arrow_forward: Approved by {approvers}: running…",
        RUNNING: f":arrow_forward: Approved by {approvers}: running…",
        SUCCEEDED: f":white_check_mark: *Succeeded*, approved by {approvers}{summary}",
        FAILED: f":x: *Failed*, approved by {approvers}{summary}",
        REJECTED: f":no_entry_sign: *Rejected*{' by ' + decided_by if decided_by else ''}. Nothing ran.",
        CANCELLED: f":wastebasket: *Cancelled*{' by ' + decided_by if decided_by else ''}. Nothing ran.",
        EXPIRED: ":hourglass: *Expired* before enough approvals came in. Nothing ran.",
        DENIED: f":no_entry: *Denied* by the policy: {escape(view.reason)}",
        NEEDS_ATTENTION: ":warning: *Needs attention*: a run was interrupted and this action is not "
        "idempotent, so a person must check what happened before anything runs again.",
    }
    return states.get(view.status, f"State: {escape(view.status)}")


def _buttons(view: RequestView) -> list[Block]:
    if view.status != PENDING:
        return []
    value = RequestValue(request_id=view.request_id).encode()
    buttons = [
        {**button("Approve", ACTION_APPROVE, value), "style": "primary"},
        {**button("Reject", ACTION_REJECT, value), "style": "danger"},
        button("Cancel (requester)", ACTION_CANCEL, value),
    ]
    if view.approvers:
        buttons.append(button("Revoke my approval", ACTION_REVOKE, value))
    return buttons


# ---- the rejection modal


def reject_modal(metadata: RejectMetadata, view: RequestView) -> dict[str, Any]:
    """Asks the approver why they reject (required)."""
    return {
        "type": "modal",
        "callback_id": VIEW_REJECT_REASON,
        "private_metadata": metadata.encode(),
        "title": {"type": "plain_text", "text": "Reject the request"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "blocks": [
            _section(f"Reject {request_line(view.action, view.params)} requested by {requester_text(view)}?"),
            {
                "type": "input",
                "block_id": BLOCK_REJECT_REASON,
                "label": {"type": "plain_text", "text": "Why? (the requester sees this in the thread)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": INPUT_REJECT_REASON,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": 1000,
                },
            },
        ],
    }


# ---- the "Request an action" form


def request_form(
    policy: Policy, spec: ActionSpec | None, initial: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The shortcut's modal: pick an action (Slack then sends a block action), then fill in its parameters.

    `initial` pre-fills parameters (a digest's "Retrain…" knows the model); the person still submits.
    """
    picker: Block = {
        "type": "static_select",
        "action_id": ACTION_PICK_ACTION,
        "placeholder": _plain("Choose an action"),
        "options": [_option(name) for name in _offered(policy)],
    }
    if spec is not None and spec.name in _offered(policy):
        picker["initial_option"] = _option(spec.name)
    blocks: list[Block] = [
        {
            "type": "input",
            "block_id": BLOCK_PICK_ACTION,
            "dispatch_action": True,
            "label": _plain("Action"),
            "element": picker,
        },
        _context(escape(spec.description) if spec else "Pick an action to see its parameters."),
        {
            "type": "input",
            "block_id": BLOCK_CHANNEL,
            "label": _plain("Post the request in"),
            "element": {
                "type": "conversations_select",
                "action_id": INPUT_CHANNEL,
                "default_to_current_conversation": True,
                "filter": {"include": ["public", "private"]},
            },
        },
    ]
    blocks += [_field(param, (initial or {}).get(param.name)) for param in (spec.params if spec else ())]
    return {
        "type": "modal",
        "callback_id": VIEW_REQUEST_ACTION,
        "private_metadata": RequestFormMetadata(action=spec.name if spec else None).encode(),
        "title": _plain("Request an action"),
        "submit": _plain("Request"),
        "close": _plain("Cancel"),
        "blocks": blocks,
    }


def _field(param: ParamSpec, initial: str | None = None) -> Block:
    """One input per parameter: enums as a select, numbers as number inputs, booleans as radio buttons."""
    default = initial if initial is not None else None if param.default is None else _text(param.default)
    if param.enum and default is not None and default not in param.enum:
        default = None
    element: Block
    if param.enum and _selectable(param.enum):
        element = {"type": "static_select", "options": [_option(value) for value in param.enum]}
    elif param.type == "boolean":
        element = {"type": "radio_buttons", "options": [_option("yes"), _option("no")]}
    elif param.type in ("integer", "number"):
        element = {"type": "number_input", "is_decimal_allowed": param.type == "number"}
        for key, bound in (("min_value", param.minimum), ("max_value", param.maximum)):
            if bound is not None:
                element[key] = str(int(bound)) if param.type == "integer" else str(bound)
    else:
        element = {"type": "plain_text_input", "max_length": 500}
    if default is not None:
        if "options" in element:
            element["initial_option"] = _option(default)
        else:
            element["initial_value"] = default
    block: Block = {
        "type": "input",
        "block_id": BLOCK_PARAM_PREFIX + param.name,
        "optional": not param.required or param.default is not None,
        "label": _plain(param.name),
        "element": {**element, "action_id": INPUT_PARAM},
    }
    if param.description:
        block["hint"] = _plain(_clip(param.description, 2000))
    return block


def _offered(policy: Policy) -> list[str]:
    """The actions the form's picker offers: those Slack can show as options (the first 100)."""
    return [name for name in policy.actions if len(name) <= MAX_OPTION_VALUE][:MAX_OPTIONS]


def _selectable(values: Sequence[str]) -> bool:
    """Whether Slack can offer these values in a select (else the form asks for them as text)."""
    return len(values) <= MAX_OPTIONS and all(len(value) <= MAX_OPTION_VALUE for value in values)


def form_values(view: Mapping[str, Any]) -> tuple[str | None, str | None, dict[str, str]]:
    """(action, channel, parameters as `key=value` strings) from a submitted request form."""
    values: dict[str, dict[str, Any]] = (view.get("state") or {}).get("values") or {}
    picked = ((values.get(BLOCK_PICK_ACTION) or {}).get(ACTION_PICK_ACTION) or {}).get("selected_option")
    channel = (values.get(BLOCK_CHANNEL) or {}).get(INPUT_CHANNEL) or {}
    raw: dict[str, str] = {}
    for block_id, inputs in values.items():
        element = inputs.get(INPUT_PARAM) or {}
        value = element.get("value") or (element.get("selected_option") or {}).get("value")
        if block_id.startswith(BLOCK_PARAM_PREFIX) and value not in (None, ""):
            raw[block_id.removeprefix(BLOCK_PARAM_PREFIX)] = str(value)
    action = str(picked["value"]) if picked else None
    return action, channel.get("selected_conversation"), raw


# ---- the catalog and parameter problems


def catalog_text(policy: Policy) -> str:
    """Every action with its usage."""
    lines = [
        f"• `/steward run {usage(spec)}`\n    {escape(spec.description)}" for spec in policy.actions.values()
    ]
    return "*Actions I can run* (the policy decides whether they run, need approval or are refused):\n" + (
        "\n".join(lines) or "none: the policy defines no actions."
    )


def problems_text(problems: Iterable[str], spec: ActionSpec | None, understood: str = "") -> str:
    """What is wrong with a request's parameters, and the usage that would work."""
    lines = [f"• {escape(_masked(problem))}" for problem in problems]
    text = "\n".join(lines)
    if understood:
        text += f"\nI understood: {understood}"
    if spec is not None:
        text += f"\nUsage: `/steward run {usage(spec)}`"
    return text


def misread_text(action: str, problems: Iterable[str], spec: ActionSpec, raw: Mapping[str, str]) -> str:
    """A request read from plain words (or proposed by the LLM) that does not validate: what is wrong."""
    understood = " ".join(f"`{escape(k)}={escape(_masked(v))}`" for k, v in raw.items())
    return (
        f"I read this as a request to run `{action}`, but:\n"
        + problems_text(problems, spec, understood)
        + "\nSay it again with what is missing, or use the command."
    )


def conflict_text(action: str, conflicts: Mapping[str, Sequence[str]], spec: ActionSpec | None) -> str:
    """A request whose words give a parameter two values: the reading, and that nothing was requested."""
    hidden = secret_params(spec)
    lines = [
        f"• {escape(_masked(conflict_problem(name, values, secret=name in hidden)))}"
        for name, values in conflicts.items()
    ]
    usage_line = f"\nOr use `/steward run {usage(spec)}`." if spec is not None else ""
    return (
        f"I read this as a request to run `{action}`, but:\n" + "\n".join(lines) + "\n"
        "Nothing was requested. Say it again with one value for each." + usage_line
    )


def invisible_text(action: str, invisible: Sequence[str]) -> str:
    """A request whose words hold characters nobody sees: what they are, and that nothing was requested."""
    return (
        f"I read this as a request to run `{action}`, but it contains invisible characters "
        f"({', '.join(invisible)}), so what you see may not be what I would read. Nothing was requested. "
        "Type the request again (not pasted), or use `/steward run ACTION key=value …`."
    )


# ---- small helpers


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _masked(value: Any) -> str:
    """A value as shown, with any credential in it masked (it may be in a parameter not declared secret)."""
    return mask_secrets(_text(value)).text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _mrkdwn(text: str, limit: int = 3000) -> Block:
    return {"type": "mrkdwn", "text": _clip(text, limit)}


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _plain(text: str, limit: int = 150) -> Block:
    return {"type": "plain_text", "text": _clip(text, limit)}


def _option(value: str) -> Block:
    return {"text": _plain(value, 75), "value": value}
