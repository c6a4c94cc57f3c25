"""A question asked and recorded: the one call Slack and `steward ask` make.

Answering is `AnswerService.ask`; this adds what Steward remembers about it, the same way wherever it
was asked: the answer in the answer log (its id is what feedback refers to), a knowledge gap opened when
Steward abstains, and the thread marked as answered (so follow-ups there need no mention). Questions are
stored with their credentials masked (bot/store/conversations.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.answers.models import Answer
from bot.answers.retrieval import Filters
from bot.answers.service import AnswerService
from bot.store.conversations import ConversationStore

CLI = "cli"  # where `steward ask` asks: the answer log's channel for questions from the command line


@dataclass(frozen=True)
class Asked:
    """A question, who asked it and where."""

    text: str
    place: str  # a Slack channel id, or CLI
    asker: str  # a Slack user id, or the person at the command line
    thread: str = ""  # the Slack thread it is answered in; "" for none (the CLI, a private answer)
    earlier: tuple[str, ...] = ()  # earlier questions of the thread, oldest first
    filters: Filters | None = None


@dataclass(frozen=True)
class RecordedAnswer:
    """An answer and where it is on record."""

    answer: Answer
    answer_id: int  # in the answer log: what feedback on it refers to
    gap_id: int | None  # the knowledge gap opened because Steward abstained


class QuestionService:
    """Answers questions and records them; says which thread replies are follow-ups."""

    def __init__(
        self, answers: Callable[[], AnswerService], conversations: ConversationStore, sticky: bool = True
    ) -> None:
        self._answers = answers
        self.conversations = conversations
        self.sticky_default = sticky  # STEWARD_STICKY_THREADS: for channels without their own setting

    def ask(self, question: Asked, on_text: Callable[[str], None] | None = None) -> RecordedAnswer:
        """Answer, log the answer, open a gap when abstaining, mark the thread answered.

        `on_text` receives an LLM's text as it is written (see `AnswerService.ask`).
        """
        answer = self._answers().ask(
            question.text, question.filters, earlier=question.earlier, on_text=on_text
        )
        store = self.conversations
        answer_id = store.record_answer(
            channel=question.place,
            thread_ts=question.thread,
            asker=question.asker,
            question=question.text,
            cited=[citation.path for citation in answer.citations],
            confidence=answer.confidence,
            abstained=answer.abstained,
        )
        gap_id = None
        if answer.abstained:
            gap_id = store.open_gap(
                question=question.text,
                channel=question.place,
                thread_ts=question.thread,
                asker=question.asker,
                owners=answer.owners,
            )
        if question.thread:
            store.mark_thread_answered(question.place, question.thread)
        return RecordedAnswer(answer, answer_id, gap_id)

    def sticky(self, channel: str) -> bool:
        """Whether follow-ups without a mention are answered in this channel."""
        own = self.conversations.channel_sticky(channel)
        return self.sticky_default if own is None else own

    def set_sticky(self, channel: str, sticky: bool, user: str) -> None:
        """Turn follow-ups without a mention on or off for one channel."""
        self.conversations.set_channel_sticky(channel, sticky, user)

    def follows_up(self, channel: str, thread: str) -> bool:
        """A reply in this thread is a follow-up: Steward answered there and the channel is sticky."""
        return self.sticky(channel) and self.conversations.answered_in(channel, thread)
