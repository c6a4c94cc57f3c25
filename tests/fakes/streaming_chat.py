"""A LangChain chat model that streams a scripted reply piece by piece, and can hold it half-way."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

GATE_SECONDS = 30.0  # how long a held stream waits for the test to let it go on


class StreamingChatModel(BaseChatModel):
    """Streams `reply` in pieces of `piece_chars`. With `hold_after`, it stops after that many characters
    until `go_on` is set, so a test can look at Slack while the answer is still being written."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reply: str
    piece_chars: int = 20
    hold_after: int | None = None
    go_on: threading.Event = Field(default_factory=threading.Event)
    held: threading.Event = Field(default_factory=threading.Event)  # set once the stream is holding
    streams: int = 0

    @property
    def _llm_type(self) -> str:
        return "streaming-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> StreamingChatModel:
        """No tools are ever called: a mention stays a question."""
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.reply))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.streams += 1
        for start in range(0, len(self.reply), self.piece_chars):
            if self.hold_after is not None and start >= self.hold_after and not self.go_on.is_set():
                self.held.set()
                if not self.go_on.wait(GATE_SECONDS):
                    raise TimeoutError("the test never let the stream go on")
            piece = self.reply[start : start + self.piece_chars]
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
