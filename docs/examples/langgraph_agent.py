"""A LangGraph agent whose tools are Steward's guarded actions (docs/agents.md, "LangChain and LangGraph").

The agent (LangChain's `create_agent`, a LangGraph ReAct loop) gets one tool per catalog action its
token may request and `ask_knowledge_base`. When it calls an action, Steward's policy decides: the call
runs at once, is denied, or posts an approval card in Slack and waits; the tool returns the run's result,
or the reviewer's reason for a rejection, or that the request expired.

    export STEWARD_URL=http://localhost:3000 STEWARD_AGENT_TOKEN=stw_...   # steward agents add ...
    python docs/examples/langgraph_agent.py --fake                  # a scripted model, no LLM needed
    python docs/examples/langgraph_agent.py --model openai:gpt-4o-mini "Roll fraud-scorer back to 11"

With `--fake` a scripted chat model plays the LLM: it asks the knowledge base how to roll back, then
calls `rollback-model` (model fraud-scorer, version 11, env prod: the starter catalog's) with a reason,
then reports what Steward answered. Approve or reject the card in Slack and watch the agent receive it.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool

if __package__ in (None, ""):  # run as a script from a checkout: find the `bot` package beside docs/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.agents.client import StewardClient
from bot.agents.langchain import ASK_TOOL, steward_tools
from bot.agents.models import ApiError, StewardBackend

SYSTEM_PROMPT = (
    "You are an on-call assistant for an ML platform team. Check the runbook with ask_knowledge_base "
    "before you request an action, and always give the reason for a request. Actions go through "
    "Steward: some need a human's approval in Slack, so wait for the outcome and report it plainly."
)
QUESTION = "fraud-scorer v12 doubled its error rate in production: roll it back to version 11."
ROLLBACK = {
    "model": "fraud-scorer",
    "version": 11,
    "env": "prod",
    "reason": "v12 doubled the shadow error rate; the runbook says roll back to the previous version",
}


class ScriptedChatModel(BaseChatModel):
    """A stand-in for an LLM: it makes the planned tool calls, one per turn, then answers with what the
    last tool returned. Each call gets a fresh id, since Steward takes the id as the request's
    idempotency key (the same id again would find the earlier request)."""

    plan: list[tuple[str, dict[str, Any]]]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        turn = sum(isinstance(message, AIMessage) for message in messages)
        if turn < len(self.plan):
            name, args = self.plan[turn]
            call = ToolCall(name=name, args=args, id=f"call_{uuid.uuid4().hex}", type="tool_call")
            reply = AIMessage(content="", tool_calls=[call])
        else:
            said = next(m for m in reversed(messages) if isinstance(m, ToolMessage))
            reply = AIMessage(content=f"Steward answered: {said.content}")
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self  # the plan names the tools already

    @property
    def _llm_type(self) -> str:
        return "scripted"


def fake_model(tools: list[BaseTool]) -> ScriptedChatModel:
    """The scripted model: ask the knowledge base, then request the rollback (when the token may)."""
    names = {tool.name for tool in tools}
    plan: list[tuple[str, dict[str, Any]]] = []
    if ASK_TOOL in names:
        plan.append((ASK_TOOL, {"question": "How do we roll back a production model?"}))
    if "rollback-model" in names:
        plan.append(("rollback-model", ROLLBACK))
    if not plan:
        raise SystemExit("the agent's token may neither ask nor request rollback-model: nothing to show")
    return ScriptedChatModel(plan=plan)


def build_agent(backend: StewardBackend, model: BaseChatModel | None = None, timeout: float = 900.0) -> Any:
    """The LangGraph agent: Steward's tools and `model` (the scripted one when None)."""
    from langchain.agents import create_agent  # LangChain's agent factory, built on LangGraph

    tools = steward_tools(backend, timeout=timeout)
    return create_agent(model or fake_model(tools), tools, system_prompt=SYSTEM_PROMPT)


def run(agent: Any, question: str) -> list[BaseMessage]:
    """Ask the agent and return the conversation, printing it as it goes."""
    messages: list[BaseMessage] = []
    for step in agent.stream({"messages": [HumanMessage(question)]}, stream_mode="updates"):
        for update in step.values():
            for message in (update or {}).get("messages", []):
                messages.append(message)
                print(_line(message), flush=True)
    return messages


def _line(message: BaseMessage) -> str:
    """One message as the terminal shows it."""
    if isinstance(message, AIMessage) and message.tool_calls:
        return "\n".join(f"agent -> {call['name']}({call['args']})" for call in message.tool_calls)
    if isinstance(message, ToolMessage):
        return f"{message.name} [{message.status}]: {message.content}"
    return f"agent: {message.content}"


def main(argv: list[str] | None = None) -> int:
    """Run the agent once against the Steward at STEWARD_URL with STEWARD_AGENT_TOKEN."""
    parser = argparse.ArgumentParser(
        description="A LangGraph agent whose tools are Steward's guarded actions."
    )
    parser.add_argument("question", nargs="?", default=QUESTION)
    parser.add_argument("--fake", action="store_true", help="a scripted chat model instead of an LLM")
    parser.add_argument("--model", default="openai:gpt-4o-mini", help="provider:model for init_chat_model")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a tool call waits for approval")
    args = parser.parse_args(argv)
    url, token = os.environ.get("STEWARD_URL"), os.environ.get("STEWARD_AGENT_TOKEN")
    if not url or not token:
        parser.error(
            "set STEWARD_URL (Steward's base URL) and STEWARD_AGENT_TOKEN (from `steward agents add`)"
        )
    model: BaseChatModel | None = None
    if not args.fake:
        from langchain.chat_models import init_chat_model

        model = init_chat_model(args.model)
    with StewardClient(url, token) as steward:
        try:
            run(build_agent(steward, model, args.timeout), args.question)
        except ApiError as error:  # unreachable, a wrong or revoked token, a missing scope
            field = f" ({error.field})" if error.field else ""
            print(f"Steward refused: {error.message}{field}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
