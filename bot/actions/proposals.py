"""An LLM may propose an action request through tool calling; it can never run anything.

The chat model is shown the action catalog as tool schemas and the person's own message, nothing
else: no retrieved documents, no thread history, no secret parameters. Its tool call is only read as
a proposal. Steward validates it like any typed request and shows it to the person, and it becomes a
request only when that person confirms it; then the policy and the approvers decide as always.
"""

from __future__ import annotations

import concurrent.futures
import logging
from dataclasses import dataclass
from typing import Any

from bot.actions.models import ActionSpec, ParamSpec
from bot.actions.policy.engine import Policy
from bot.redaction import redact

log = logging.getLogger("steward.actions")

PROPOSAL_PROMPT = """You help engineers ask for operational actions on AI systems in production.
If the engineer's message asks for one of the actions you have as tools, call that tool once, with
the parameter values the message states. Never invent a value the message does not state: leave it
out. If the message is a question, or asks for anything else, call no tool and reply NONE.
Calling a tool runs nothing: it only proposes a request, which the engineer confirms and which the
company's policy and approvers then decide on."""

_JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}


@dataclass(frozen=True)
class Proposal:
    """The action an LLM proposed and the parameter values it read, as text (validated later)."""

    action: str
    raw: dict[str, str]


def _schema(param: ParamSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON_TYPES[param.type]}
    if param.description:
        schema["description"] = param.description
    if param.enum:
        schema["enum"] = list(param.enum)
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    if param.pattern:
        schema["pattern"] = param.pattern
    return schema


def action_tool(spec: ActionSpec) -> dict[str, Any]:
    """The action as an OpenAI-style function tool; secret parameters are left out (never sent to an LLM)."""
    shown = [param for param in spec.params if not param.secret]
    return {
        "type": "function",
        "function": {
            "name": spec.name,
            "description": f"Propose a request to {spec.description[:1].lower()}{spec.description[1:]}",
            "parameters": {
                "type": "object",
                "properties": {param.name: _schema(param) for param in shown},
                "required": [param.name for param in shown if param.required and param.default is None],
            },
        },
    }


def param_text(value: object) -> str:
    """A parameter value as the text a person would type (`true`, `12`, `fraud-scorer`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_tool_calls(reply: object, policy: Policy) -> Proposal | None:
    """The first tool call that names an action of the catalog, with only that action's own parameters."""
    for call in getattr(reply, "tool_calls", None) or []:
        spec = policy.actions.get(str(call.get("name") or ""))
        args = call.get("args")
        if spec is None or not isinstance(args, dict):
            continue
        allowed = {param.name for param in spec.params if not param.secret}
        raw = {
            name: param_text(value) for name, value in args.items() if name in allowed and value is not None
        }
        return Proposal(spec.name, raw)
    return None


class Proposer:
    """Asks a chat model, with the catalog bound as tools, whether a message requests an action."""

    def __init__(self, model: Any, timeout_seconds: float) -> None:
        self.model = model
        self.timeout_seconds = timeout_seconds
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="steward-propose"
        )

    def propose(self, text: str, policy: Policy) -> Proposal | None:
        """The proposed request, or None: not a request, or the model failed (then it is a question)."""
        from langchain_core.messages import HumanMessage, SystemMessage

        try:
            bound = self.model.bind_tools([action_tool(spec) for spec in policy.actions.values()])
        except NotImplementedError:
            log.warning("the configured chat model has no tool calling: requests are read without it")
            return None
        messages = [SystemMessage(content=PROPOSAL_PROMPT), HumanMessage(content=redact(text))]
        future = self._pool.submit(bound.invoke, messages)
        try:
            reply = future.result(timeout=self.timeout_seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.warning("the LLM proposed nothing within %g s", self.timeout_seconds)
            return None
        except Exception as exc:
            log.warning("the LLM proposal failed error=%s", type(exc).__name__)
            return None
        return read_tool_calls(reply, policy)
