"""LangChain and LangGraph tools whose calls go through Steward: the policy decides, people approve in
Slack, Steward's executor runs the action once, and the tool returns the outcome to the model.

`steward_tools(backend)` gives one tool per catalog action the agent may request, plus
`ask_knowledge_base`; `guarded(tool, backend)` puts an existing LangChain tool behind Steward. Either
works with any `StewardBackend`: the HTTP client (`bot/agents/client.py`) or the in-process gateway.

A call waits for the outcome (long-polling the request) and answers the model with one `ToolMessage`:
the run's summary and output when it succeeded (status "success"); otherwise a sentence saying why
nothing useful happened (status "error"): denied by policy, rejected by a reviewer (worded as
LangChain's `HumanInTheLoopMiddleware` words a reject, so a prompt written for it reads ours too),
expired without approval, cancelled, failed, needing a person's attention, or still waiting when the
tool's timeout ran out. The message's artifact is the request as JSON (id, status, card link).

Only `langchain_core` is imported: LangGraph, LangChain's agents and any chat model are the caller's.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, ValidationError

from bot.agents.models import (
    MAX_WAIT_SECONDS,
    ActionInfo,
    AnswerInfo,
    ApiError,
    NewRequest,
    RequestInfo,
    StewardBackend,
)

DEFAULT_TIMEOUT = 900.0  # seconds a tool call waits for approval and the run before it reports "pending"
ASK_TOOL = "ask_knowledge_base"
REASON = "reason"
REASON_DESCRIPTION = (
    "Why this action is needed now, in one or two sentences. The approvers read it on the approval "
    "card and it goes to the audit log."
)
RETRY_STATUSES = frozenset({429, 502, 503, 504})  # a replica restarting or a limit: wait and ask again

# The id of the model's tool call being answered, set by StewardTool.run/arun for the tool's function.
_CALL_ID: ContextVar[str | None] = ContextVar("steward_tool_call_id", default=None)

Reply = ToolMessage | str


class StewardTool(StructuredTool):
    """A StructuredTool that knows which tool call of the model it answers.

    The call's id becomes the request's idempotency key (a graph that replays a tool call, say when it
    resumes from a checkpoint, finds the same request instead of asking the approvers twice) and the
    `tool_call_id` of the `ToolMessage` the tool returns."""

    def run(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Run the tool, its function seeing the tool call's id."""
        token = _CALL_ID.set(kwargs.get("tool_call_id"))
        try:
            return super().run(tool_input, *args, **kwargs)
        finally:
            _CALL_ID.reset(token)

    async def arun(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        """Run the tool asynchronously, its coroutine seeing the tool call's id."""
        token = _CALL_ID.set(kwargs.get("tool_call_id"))
        try:
            return await super().arun(tool_input, *args, **kwargs)
        finally:
            _CALL_ID.reset(token)


def steward_tools(
    backend: StewardBackend,
    *,
    actions: list[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    channel: str | None = None,
    cancel_on_timeout: bool = False,
    knowledge: bool = True,
) -> list[BaseTool]:
    """One tool per catalog action the agent may request (all of them, or those named in `actions`),
    plus `ask_knowledge_base` unless `knowledge` is False.

    An action tool's arguments are the action's parameters (its JSON Schema from the catalog) and a
    required `reason`. A call makes a Steward request (its approval card goes to `channel`, or the
    action's default channel) and waits up to `timeout` seconds for the outcome; a request still
    waiting then stays open for the approvers, or is withdrawn with `cancel_on_timeout`. Raises
    ValueError naming an action in `actions` that the agent may not request."""
    catalog = {info.name: info for info in backend.actions()}
    if actions is not None:
        unknown = [name for name in actions if name not in catalog]
        if unknown:
            raise ValueError(
                f"actions: {', '.join(unknown)} not in the catalog this agent may request "
                f"({', '.join(sorted(catalog)) or 'none'})"
            )
    chosen = [catalog[name] for name in actions] if actions is not None else list(catalog.values())
    asking = _Asking(backend, timeout, channel, cancel_on_timeout)
    tools: list[BaseTool] = [_action_tool(asking, info) for info in chosen]
    if knowledge:
        tools.append(_ask_tool(backend))
    return tools


def guarded(
    tool: BaseTool,
    backend: StewardBackend,
    *,
    action: str | None = None,
    reason_from: Callable[[dict[str, Any]], str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    channel: str | None = None,
    cancel_on_timeout: bool = False,
) -> BaseTool:
    """Put an existing LangChain tool behind Steward: a call becomes a request for `action` (default:
    the tool's name) with the call's arguments as its parameters, and returns the outcome.

    The wrapped tool's own function is never called. Steward's executor for `action` (the catalog's
    webhook, command, MLflow or MCP executor) runs it, after the policy and the approvers agreed, under
    Steward's exactly-once claim and in its audit chain. Running the local function after an approval
    instead would put a second, unaudited path to the same side effect beside Steward's: one that runs
    again whenever the graph replays the call, and whose code the approvers never see. So the catalog
    entry must do what the tool did; the tool lends its name, description and argument schema.

    The model fills the tool's own arguments (validated by the tool's schema before anything is asked)
    and a `reason`; with `reason_from`, the reason is computed from the arguments instead and the model
    is not asked for one. `timeout`, `channel` and `cancel_on_timeout` are as for `steward_tools`.
    Raises ValueError when `action` is not an action the agent may request."""
    name = action or tool.name
    catalog = {info.name: info for info in backend.actions()}
    if name not in catalog:
        raise ValueError(
            f"action: {name!r} is not in the catalog this agent may request "
            f"({', '.join(sorted(catalog)) or 'none'}); pass action= to name the catalog entry that runs "
            f"the tool {tool.name!r}"
        )
    # The arguments as the model sees them (LangChain's own conversion), validated by the tool's pydantic
    # model when it has one, by Steward's catalog in any case.
    json_schema: dict[str, Any] = convert_to_openai_tool(tool)["function"]["parameters"]
    schema = tool.tool_call_schema
    validator = schema if isinstance(schema, type) and issubclass(schema, BaseModel) else None
    shares_reason = REASON in (json_schema.get("properties") or {})
    asking = _Asking(backend, timeout, channel, cancel_on_timeout)
    if reason_from is None:
        json_schema = _with_reason(json_schema)

    def call(**arguments: Any) -> Reply:
        if reason_from is not None:
            reason: object = reason_from(arguments)
        else:
            reason = arguments.get(REASON) if shares_reason else arguments.pop(REASON, None)
        if validator is not None:
            try:
                arguments = validator.model_validate(arguments).model_dump(mode="json", exclude_unset=True)
            except ValidationError as error:
                return _reply(tool.name, _bad_arguments(tool.name, error), ok=False)
        return asking.ask(tool.name, name, arguments, reason)

    return _tool(
        tool.name,
        f"{tool.description}\n\n{_GATE_NOTE}",
        json_schema,
        call,
        metadata={**(tool.metadata or {}), "steward_action": name},
    )


_GATE_NOTE = (
    "Steward guards this tool: its policy may run it at once, deny it, or ask people to approve it in "
    "Slack first. The call waits for the outcome and returns the result, or why it did not run."
)


def _action_tool(asking: _Asking, info: ActionInfo) -> BaseTool:
    """The tool for one catalog action."""
    shares_reason = REASON in (info.input_schema.get("properties") or {})

    def call(**arguments: Any) -> Reply:
        reason = arguments.get(REASON) if shares_reason else arguments.pop(REASON, None)
        return asking.ask(info.name, info.name, arguments, reason)

    description = f"{info.description} (risk: {info.risk}"
    description += f"; runbook: {info.runbook})" if info.runbook else ")"
    return _tool(
        info.name,
        f"{description}\n\n{_GATE_NOTE}",
        _with_reason(info.input_schema),
        call,
        metadata={"steward_action": info.name},
    )


def _with_reason(schema: dict[str, Any]) -> dict[str, Any]:
    """The parameters' JSON Schema with the request's `reason` added as a required string. An action
    with a parameter of that name shares it: the one value is both the parameter and the reason."""
    schema = copy.deepcopy(schema)
    schema.setdefault("type", "object")
    properties = schema.setdefault("properties", {})
    own = properties.get(REASON) or {}
    description = (
        f"{own['description']}. {REASON_DESCRIPTION}" if own.get("description") else REASON_DESCRIPTION
    )
    properties[REASON] = {**own, "type": "string", "minLength": 1, "description": description}
    required = schema.setdefault("required", [])
    if REASON not in required:
        required.append(REASON)
    return schema


def _tool(
    name: str,
    description: str,
    args_schema: dict[str, Any] | type[BaseModel],
    call: Callable[..., Reply],
    metadata: dict[str, Any],
) -> StewardTool:
    """A StewardTool around a blocking function, with an async variant that runs it in a thread."""

    async def acall(**arguments: Any) -> Reply:
        return await asyncio.to_thread(call, **arguments)

    return StewardTool(
        name=name,
        description=description,
        args_schema=args_schema,
        func=call,
        coroutine=acall,
        metadata=metadata,
    )


@dataclass(frozen=True)
class _Asking:
    """How the tools ask Steward: the backend, how long a call waits, the channel for its card, and
    whether a request still waiting then is withdrawn."""

    backend: StewardBackend
    timeout: float
    channel: str | None
    cancel_on_timeout: bool

    def ask(self, tool_name: str, action: str, parameters: dict[str, Any], reason: object) -> Reply:
        """Ask Steward for `action`, wait for the outcome and tell the model."""
        if not isinstance(reason, str) or not reason.strip():
            text = (
                f"The tool call for `{tool_name}` needs a `reason`: say in a sentence why it is needed now."
            )
            return _reply(tool_name, text, ok=False)
        try:
            new = NewRequest(
                action=action,
                parameters=parameters,
                reason=reason.strip(),
                channel=self.channel,
                idempotency_key=_idempotency_key(_CALL_ID.get()),
            )
        except ValidationError as error:
            return _reply(tool_name, _bad_arguments(tool_name, error), ok=False)
        try:
            info = wait_for_outcome(self.backend, self.backend.request(new), self.timeout)
            if not info.final and self.cancel_on_timeout:
                info = self._withdraw(info)
        except ApiError as error:
            return _reply(tool_name, refusal_text(tool_name, error), ok=False)
        text, ok = outcome_text(tool_name, info)
        return _reply(tool_name, text, ok=ok, request=info)

    def _withdraw(self, info: RequestInfo) -> RequestInfo:
        """Cancel a request that is still waiting; when it is too late (approved meanwhile), where it is."""
        try:
            return self.backend.cancel(info.id)
        except ApiError as error:
            if error.status != 409:
                raise
            return self.backend.get(info.id)


def _idempotency_key(call_id: str | None) -> str | None:
    """The request's idempotency key for a model's tool call (hashed when the id is long)."""
    if not call_id:
        return None
    if len(call_id) <= 100:
        return f"langchain:{call_id}"
    return "langchain:" + hashlib.sha256(call_id.encode()).hexdigest()


def wait_for_outcome(
    backend: StewardBackend,
    info: RequestInfo,
    timeout: float,
    monotonic: Callable[[], float] = time.monotonic,
) -> RequestInfo:
    """The request once it is final, or as it stands after `timeout` seconds; long-polls `backend.get`.
    A 429 or a 5xx while waiting (a limit, a replica restarting) is waited out, as its Retry-After says."""
    deadline = monotonic() + timeout
    while not info.final:
        remaining = deadline - monotonic()
        if remaining <= 0:
            break
        try:
            info = backend.get(info.id, wait=min(remaining, MAX_WAIT_SECONDS))
        except ApiError as error:
            if error.status not in RETRY_STATUSES:
                raise
            time.sleep(min(error.retry_after or 1.0, max(deadline - monotonic(), 0.0)))
    return info


def outcome_text(tool_name: str, info: RequestInfo) -> tuple[str, bool]:
    """What the model is told about a request, and whether the tool call succeeded."""
    ref = f"Steward request {info.id}"
    not_run = "The tool was not executed."
    match info.status:
        case "succeeded":
            result = info.result
            if result is None:
                return f"`{tool_name}` succeeded ({ref}).", True
            return "\n\n".join(part for part in (result.summary, result.output) if part), True
        case "denied":
            rule = f" (rule `{info.decision.rule}`)" if info.decision.rule else ""
            return (
                f"The tool call for `{tool_name}` was denied by policy: {info.decision.reason}{rule}. "
                f"{not_run} Do not retry it unless the situation changes."
            ), False
        case "rejected":
            # HumanInTheLoopMiddleware's reject message, word for word (langchain/agents/middleware/
            # human_in_the_loop.py, _answer_message).
            if info.rejection_reason:
                return (
                    f"User rejected the tool call for `{tool_name}` with reason: {info.rejection_reason}"
                ), False
            return (
                f"User rejected the tool call for `{tool_name}` with id {info.id}. {not_run} "
                "Do not retry this tool call unless the user explicitly requests it."
            ), False
        case "expired":
            return (
                f"The tool call for `{tool_name}` expired without approval ({ref}): no approver decided in "
                f"time. {not_run}"
            ), False
        case "cancelled":
            return f"The tool call for `{tool_name}` was cancelled before it ran ({ref}). {not_run}", False
        case "failed":
            result = info.result
            detail = "\n\n".join(part for part in (result.summary, result.output) if part) if result else ""
            return f"The tool call for `{tool_name}` ran and failed ({ref}).\n\n{detail}".rstrip(), False
        case "needs_attention":
            return (
                f"The run of `{tool_name}` was interrupted and needs a person's attention ({ref}): it is "
                "not retried automatically, since running it twice could do harm. Do not retry it."
            ), False
        case _:  # pending, approved or running when the tool's timeout ran out
            where = f" Its approval card: {info.card_url}." if info.card_url else ""
            return (
                f"The tool call for `{tool_name}` is still {info.status} ({ref}, "
                f"{len(info.approvals.approvers)} of {info.approvals.required} approvals); the tool stopped "
                f"waiting. {_STILL.get(info.status, '')}{where}"
            ), False


_STILL = {
    "pending": "It has not run; it runs if the approvers approve it later.",
    "approved": "It is approved and about to run.",
    "running": "It is running now.",
}


def refusal_text(tool_name: str, error: ApiError) -> str:
    """What the model is told when Steward refused the call itself (bad parameters, a limit …)."""
    field = f" (field `{error.field}`)" if error.field else ""
    later = f" Retry after {error.retry_after:g} seconds." if error.retry_after is not None else ""
    return f"Steward refused the tool call for `{tool_name}`: {error.message}{field}.{later}"


def _bad_arguments(tool_name: str, error: ValidationError) -> str:
    """The problems with a call's arguments, one per field."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'arguments'}: {problem['msg']}"
        for problem in error.errors()
    )
    return f"The tool call for `{tool_name}` has invalid arguments: {problems}. Nothing was requested."


def _reply(tool_name: str, text: str, *, ok: bool, request: RequestInfo | None = None) -> Reply:
    """A ToolMessage for the model's tool call (the request as its artifact), or the bare text when the
    tool was invoked without one."""
    call_id = _CALL_ID.get()
    if call_id is None:
        return text
    return ToolMessage(
        content=text,
        name=tool_name,
        tool_call_id=call_id,
        status="success" if ok else "error",
        artifact=request.model_dump(mode="json") if request is not None else None,
    )


def answer_text(answer: AnswerInfo) -> str:
    """Steward's answer for the model: the text (or that there is none), warnings, numbered sources, and
    who might know when it abstained."""
    if answer.abstained:
        parts = [f"The knowledge base has no confident answer to this. {answer.answer}".rstrip()]
    else:
        parts = [f"{answer.answer}\n\n(confidence {answer.confidence:.2f})"]
    parts += [f"Warning: {warning}" for warning in answer.warnings]
    if answer.citations:
        sources = []
        for number, citation in enumerate(answer.citations, start=1):
            where = f"{citation.path} § {citation.section}" if citation.section else citation.path
            sources.append(f"[{number}] {citation.title} ({where})")
        parts.append("Sources:\n" + "\n".join(sources))
    if answer.abstained and answer.owners:
        parts.append("People who might know: " + ", ".join(answer.owners))
    return "\n\n".join(parts)


class _Question(BaseModel):
    question: str = Field(min_length=1, max_length=4000, description="The question, in plain words")


def _ask_tool(backend: StewardBackend) -> BaseTool:
    """`ask_knowledge_base`: Steward's answer from the runbooks and decision records, with sources."""

    def call(question: str) -> Reply:
        try:
            answer = backend.ask(question)
        except ApiError as error:
            return _reply(ASK_TOOL, refusal_text(ASK_TOOL, error), ok=False)
        return _reply(ASK_TOOL, answer_text(answer), ok=True)

    return _tool(
        ASK_TOOL,
        "Ask the team's knowledge base (runbooks, decision records, guides) a question; check the "
        "runbook before requesting an action. The answer cites its sources, or says it has none.",
        _Question,
        call,
        metadata={},
    )
