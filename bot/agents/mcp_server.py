"""Steward as an MCP server: the agent's catalog actions, the knowledge base and its requests as MCP tools.

Written only against `StewardBackend`, so the same server runs in `steward mcp` (stdio, over the HTTP
client) and on `steward serve` at /mcp (bot/runtime/mcp_http.py, over the in-process gateway). The tool
list is built per agent at each `tools/list`: `ask_knowledge_base`, one tool per catalog action the agent
may request (its parameters' JSON Schema plus a required `reason`), `get_request` and `cancel_request`.

A call on an action returns at once: the policy's decision, the request's id and, when it waits for
approvals, "pending approval" with the card's link; `get_request` with `wait_seconds` long-polls for the
outcome and reports progress meanwhile. Refusals (`ApiError`) are tool results with `isError`, so the
model reads them; only an unknown tool name is a protocol error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.tool_name_validation import TOOL_NAME_REGEX
from pydantic import ValidationError

from bot.agents.models import (
    MAX_WAIT_SECONDS,
    ActionInfo,
    AnswerInfo,
    ApiError,
    NewRequest,
    RequestInfo,
    StewardBackend,
)
from bot.errors import BadRequest, Refused, Situation, Told, Unavailable

log = logging.getLogger("steward.mcp")

SERVER_NAME = "steward"
ASK_TOOL = "ask_knowledge_base"
GET_TOOL = "get_request"
CANCEL_TOOL = "cancel_request"
REASON = "reason"
IDEMPOTENCY_KEY = "idempotency_key"
MISSING_SCOPE = 403  # the token may not request actions (`--scope ask`): only ask_knowledge_base
PROGRESS_EVERY = 5.0  # seconds between progress notifications while get_request waits

INSTRUCTIONS = (
    "Steward guards operational actions behind a policy and human approval in Slack. Call an action's "
    "tool with a `reason`: it returns at once with the request's id and status. 'pending approval' means "
    "people must approve it in Slack first: call get_request with the id and wait_seconds to learn the "
    "outcome. A denied request says why. ask_knowledge_base answers from the team's runbooks, with sources."
)
STATUS_WORDS = {
    "denied": "denied by policy",
    "pending": "pending approval",
    "approved": "approved, about to run",
    "running": "approved and running",
    "succeeded": "run: succeeded",
    "failed": "run: failed",
    "rejected": "rejected by a reviewer",
    "cancelled": "cancelled",
    "expired": "expired without enough approvals",
    "needs_attention": "needs attention (the run's outcome is unknown; a person will look)",
}
FAILED_AT_ONCE = frozenset({"denied", "failed", "needs_attention"})  # an action call that did not work

FAILED = Situation(
    unexpected="Steward failed to answer this call; quote reference {reference} to its operators.",
    context="MCP tool call failed tool={tool} reference={reference}",
    told={
        Unavailable: Told(
            "Steward cannot answer now ({error}); try again later.",
            log="MCP tool call: Steward unavailable tool={tool}: {error}",
            level=logging.WARNING,
        ),
        BadRequest: Told("{error}"),
        Refused: Told("{error}"),
    },
)

BackendSource = Callable[[], StewardBackend]
_T = TypeVar("_T")


def build_server(backend: BackendSource, progress_every: float = PROGRESS_EVERY) -> Server[Any]:
    """The MCP server; `backend()` gives the backend of the agent making the current request (one
    backend for stdio, the authenticated agent's for each HTTP request)."""

    async def list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        try:
            actions = await _in_thread(backend().actions)
        except ApiError as exc:
            if exc.status != MISSING_SCOPE:
                raise MCPError(types.INTERNAL_ERROR, f"{exc.message} [{exc.status} {exc.code}]") from None
            return types.ListToolsResult(tools=fixed_tools()[:1])  # a token for questions only
        except Exception as exc:  # as for a tool call: the client reads a reference, the log the traceback
            raise MCPError(types.INTERNAL_ERROR, FAILED.render(exc, log, tool="tools/list")) from None
        return types.ListToolsResult(
            tools=fixed_tools() + [action_tool(action) for action in offered(actions)]
        )

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        steward = backend()
        arguments = dict(params.arguments or {})
        try:
            if params.name == ASK_TOOL:
                return answer_result(await _in_thread(steward.ask, _text(arguments, "question")))
            if params.name == GET_TOOL:
                return request_result(await _wait_for(ctx, steward, arguments, progress_every))
            if params.name == CANCEL_TOOL:
                return request_result(await _in_thread(steward.cancel, _text(arguments, "request_id")))
            action = next(
                (a for a in offered(await _in_thread(steward.actions)) if a.name == params.name), None
            )
            if action is None:
                raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
            info = await _in_thread(steward.request, new_request(action, arguments))
            return request_result(info, failed=info.status in FAILED_AT_ONCE)
        except ApiError as exc:
            return error_result(exc)
        except MCPError:
            raise
        except Exception as exc:  # the model reads one line (a reference), the log has the traceback
            text = FAILED.render(exc, log, tool=params.name)
            return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True)

    return Server(SERVER_NAME, instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


def checked(backend: StewardBackend, where: str) -> StewardBackend:
    """The backend, once Steward at `where` has accepted the agent's token: a clear error before any MCP
    client is answered, not a failure at its first tool call."""
    try:
        backend.actions()
    except ApiError as exc:
        if exc.status == MISSING_SCOPE:  # a token for questions only: accepted
            return backend
        if exc.status == 401:
            raise Refused(
                f"Steward at {where} refused the agent's token ({exc.message}): check STEWARD_AGENT_TOKEN, "
                "and `steward agents list` for the agent's state"
            ) from None
        if exc.code == "unreachable":  # the client's answer when no server answered at all
            raise Unavailable(f"{exc.message}: is `steward serve` running there (STEWARD_URL)?") from None
        raise Unavailable(f"Steward at {where} answered {exc.status} {exc.code}: {exc.message}") from None
    return backend


def serve_stdio(backend: StewardBackend) -> None:
    """`steward mcp`: serve one agent over standard input and output until the client closes them. While
    it serves, the SDK points file descriptor 1 at standard error, so stray output cannot corrupt the wire."""
    from mcp.server.stdio import stdio_server

    server = build_server(lambda: backend)

    async def run() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    anyio.run(run)


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    """Call the (synchronous) backend in a worker thread: the event loop never waits on Steward."""
    return await anyio.to_thread.run_sync(function, *args)


async def _wait_for(
    ctx: ServerRequestContext[Any], steward: StewardBackend, arguments: dict[str, Any], every: float
) -> RequestInfo:
    """`get_request`: long-poll in slices of `every` seconds, reporting progress after each slice (a no-op
    unless the client sent a progress token), until the request is final or the wait is over."""
    request_id = _text(arguments, "request_id")
    wait = _seconds(arguments.get("wait_seconds", 0))
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        info = await _in_thread(steward.get, request_id, max(0.0, min(every, wait - elapsed)))
        elapsed = time.monotonic() - started
        if info.final or elapsed >= wait:
            return info
        await ctx.session.report_progress(elapsed, wait, f"{info.id}: {_state(info)}")


def fixed_tools() -> list[types.Tool]:
    """The tools every agent has: the knowledge base, then its requests (not for a questions-only token)."""
    request_id = {
        "type": "string",
        "minLength": 1,
        "description": "The request's id, as an action tool gave it",
    }
    return [
        types.Tool(
            name=ASK_TOOL,
            description="Ask Steward's knowledge base (runbooks, decision records): an answer with its "
            "sources and confidence, or an abstention when the documents do not say.",
            input_schema=_object(
                {"question": {"type": "string", "minLength": 1, "maxLength": 4000}}, ["question"]
            ),
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
        ),
        types.Tool(
            name=GET_TOOL,
            description="A request's status, approvals, reviewer's reason and result. With wait_seconds, "
            f"wait up to that long (at most {MAX_WAIT_SECONDS:g}) for the request to be final; call again "
            "if it is not.",
            input_schema=_object(
                {
                    "request_id": request_id,
                    "wait_seconds": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_WAIT_SECONDS,
                        "default": 0,
                    },
                },
                ["request_id"],
            ),
            annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
        ),
        types.Tool(
            name=CANCEL_TOOL,
            description="Withdraw a request of yours that has not run yet (its approval card says so).",
            input_schema=_object({"request_id": request_id}, ["request_id"]),
            annotations=types.ToolAnnotations(
                destructive_hint=False, idempotent_hint=True, open_world_hint=False
            ),
        ),
    ]


def offered(actions: list[ActionInfo]) -> list[ActionInfo]:
    """The actions that can be tools: a name MCP allows that is not one of the fixed tools' (the others
    are logged, not offered)."""
    fixed = {ASK_TOOL, GET_TOOL, CANCEL_TOOL}
    usable = []
    for action in actions:
        if action.name in fixed or not TOOL_NAME_REGEX.match(action.name):
            log.warning(
                "catalog action not offered over MCP: its name is not a usable tool name action=%s",
                action.name,
            )
            continue
        usable.append(action)
    return usable


def action_tool(action: ActionInfo) -> types.Tool:
    """A catalog action as a tool: its parameters' schema plus the request's `reason` (required) and
    `idempotency_key`. An action with a `reason` parameter of its own gets the agent's reason there too."""
    schema = dict(action.input_schema)
    properties = dict(schema.get("properties") or {})
    required = list(schema.get("required") or [])
    reason: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 2000}
    properties[REASON] = {
        **properties.get(REASON, {}),
        **reason,
        "description": "Why the action is needed now: shown to the approvers and kept in the audit log.",
    }
    if REASON not in required:
        required.append(REASON)
    if IDEMPOTENCY_KEY not in properties:
        properties[IDEMPOTENCY_KEY] = {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "description": "Optional: the same key returns the same request, not a second one (retries).",
        }
    schema.update({"type": "object", "properties": properties, "required": required})
    description = (
        f"{action.description}\nRisk: {action.risk}. Needs approval in Slack when the policy says so: "
        "the call returns at once with the request's id and status ('pending approval' while people "
        f"decide); then use {GET_TOOL} to learn the outcome."
    )
    if action.runbook:
        description += f"\nRunbook: {action.runbook} ({ASK_TOOL} answers from it)."
    return types.Tool(
        name=action.name,
        description=description,
        input_schema=schema,
        annotations=types.ToolAnnotations(
            read_only_hint=False, destructive_hint=action.risk == "high", idempotent_hint=action.idempotent
        ),
    )


def new_request(action: ActionInfo, arguments: dict[str, Any]) -> NewRequest:
    """The request a call on an action's tool asks for; `ApiError` 422 naming the argument at fault."""
    own = set((action.input_schema.get("properties") or {}).keys())
    parameters = dict(arguments)
    reason = parameters.get(REASON) if REASON in own else parameters.pop(REASON, None)
    key = None if IDEMPOTENCY_KEY in own else parameters.pop(IDEMPOTENCY_KEY, None)
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(422, "invalid_argument", "say why the action is needed: `reason` is required", REASON)
    try:
        return NewRequest(action=action.name, parameters=parameters, reason=reason, idempotency_key=key)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or REASON
        raise ApiError(422, "invalid_argument", f"{field}: {error['msg']}", field) from None


def request_result(info: RequestInfo, failed: bool = False) -> types.CallToolResult:
    """A request as a tool result: the text a model reads and the request as structured content."""
    return types.CallToolResult(
        content=[types.TextContent(text=describe(info))],
        structured_content=info.model_dump(mode="json"),
        is_error=failed,
    )


def _state(info: RequestInfo) -> str:
    words = STATUS_WORDS.get(info.status, info.status)
    if info.status == "pending":
        approvals = info.approvals
        words += f" ({len(approvals.approvers)} of {approvals.required} approvals"
        words += f" from {', '.join(approvals.groups)})" if approvals.groups else ")"
    return words


def describe(info: RequestInfo) -> str:
    """What a model reads about a request: its state, the policy's reason, the card, the outcome."""
    lines = [f"Request {info.id} ({info.action}): {_state(info)}."]
    rule = f" (rule {info.decision.rule})" if info.decision.rule else ""
    lines.append(f"Policy{rule}: {info.decision.reason}")
    if info.card_url:
        lines.append(f"Approval card: {info.card_url}")
    if info.rejection_reason:
        lines.append(f"Reviewer's reason: {info.rejection_reason}")
    if info.result is not None:
        lines.append(f"Result: {info.result.summary}")
        if info.result.output:
            lines.append(info.result.output)
    if not info.final:
        lines.append(f'Call {GET_TOOL} with request_id "{info.id}" and wait_seconds to learn the outcome.')
    return "\n".join(lines)


def answer_result(answer: AnswerInfo) -> types.CallToolResult:
    """Steward's answer as a tool result: the answer, its confidence, its numbered sources (and who might
    know, when it abstained); the answer as JSON in the structured content."""
    lines = [answer.answer, ""]
    if answer.abstained:
        lines.append("Steward abstained: the knowledge base does not answer this.")
        if answer.owners:
            lines.append(f"Who might know: {', '.join(answer.owners)}")
    else:
        lines.append(f"Confidence: {answer.confidence:.2f}")
    for number, citation in enumerate(answer.citations, start=1):
        section = f", {citation.section}" if citation.section else ""
        lines.append(f"[{number}] {citation.title}{section}: {citation.url or citation.path}")
    lines += [f"Warning: {warning}" for warning in answer.warnings]
    return types.CallToolResult(
        content=[types.TextContent(text="\n".join(lines))], structured_content=answer.model_dump(mode="json")
    )


def error_result(error: ApiError) -> types.CallToolResult:
    """A refusal as a tool result the model can read and act on (`isError`), not a protocol error."""
    field = f" (field: {error.field})" if error.field else ""
    retry = f" Retry after {error.retry_after:g} s." if error.retry_after is not None else ""
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.message}{field} [{error.status} {error.code}]{retry}")],
        structured_content=error.body(),
        is_error=True,
    )


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _text(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, "invalid_argument", f"`{name}` is required: a non-empty string", name)
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise ApiError(
            422,
            "invalid_argument",
            f"`wait_seconds` must be a number from 0 to {MAX_WAIT_SECONDS:g}",
            "wait_seconds",
        )
    return float(value)
