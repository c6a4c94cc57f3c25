"""langchain's fake chat model, able to bind tools (for tool-calling proposals), remembering its prompts."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ToolCallingFake(FakeMessagesListChatModel):
    """Replies with `responses` in turn; records the tools it was bound to and every prompt it was sent."""

    tools: list[Sequence[Any]] = Field(default_factory=list)
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ToolCallingFake:
        self.tools.append(list(tools))
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def tool_call(name: str, **args: Any) -> AIMessage:
    """A model reply that calls one tool."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": "call-1"}])


_RUN = re.compile(r"(?:/steward\s+)?\brun\s+([a-z][a-z-]+)((?:\s+[a-z_]+=[^\s,;.]+)*)", re.I)
_URL = re.compile(r"https?://[^\s)>\]|\"']+")


class ObedientFake(FakeMessagesListChatModel):
    """A model that does whatever any text in its prompt tells it to: it calls the tool for every
    `run ACTION key=value` it reads (when tools are bound), repeats those commands, links every URL it
    sees and repeats any `say: ...` line. It always cites [1], so its answers pass the citation check.
    Records its prompts."""

    responses: list[BaseMessage] = Field(default_factory=list)
    bound: bool = False
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ObedientFake:
        return self.model_copy(update={"bound": True, "prompts": self.prompts})

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(list(messages))
        seen = "\n".join(str(message.content) for message in messages)
        runs = [
            (m[1].lower(), dict(pair.split("=", 1) for pair in m[2].split())) for m in _RUN.finditer(seen)
        ]
        urls = list(dict.fromkeys(_URL.findall(seen)))
        said = re.findall(r"(?im)^.*\bsay:\s*(.+)$", seen)
        if self.bound and runs:
            calls = [{"name": name, "args": args, "id": f"call-{i}"} for i, (name, args) in enumerate(runs)]
            reply: BaseMessage = AIMessage(content="", tool_calls=calls)
        else:
            parts = [
                f"/steward run {name} " + " ".join(f"{k}={v}" for k, v in args.items()) for name, args in runs
            ]
            parts += [f"[click here]({url})" for url in urls] + said
            reply = AIMessage(content=" ".join([*parts, "[1]"]))
        return ChatResult(generations=[ChatGeneration(message=reply)])
