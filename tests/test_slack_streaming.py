"""LLM answers stream into Slack as they are written (chat.startStream / appendStream / stopStream) and
end as the checked, cited answer, end to end over signed requests and the fake Slack."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.slack.questions import STATUS
from bot.slack.streaming import ZERO_WIDTH, Defuser
from bot.wiring import Services
from tests.fakes.streaming_chat import StreamingChatModel
from tests.slackbot import CHANNEL, USER, RunningBot, assert_valid_blocks, blocks_text, running_bot
from tests.support.slack import Call
from tests.support.slack.assistant import COMPLETED, STREAMING

ROLLBACK = "How do I roll back the fraud-scorer model in production?"
UNKNOWN = "How often do we rotate the feature store encryption key?"
SENTENCE = (
    "Move the MLflow alias production back to the previous version of fraud-scorer, then watch the "
    "shadow error rate for half an hour before closing the incident. [1] "
)
REPLY = SENTENCE * 4  # about 600 characters: several pieces reach Slack before the answer ends
HOLD_AFTER = 300  # characters written before the model pauses (more than the 256 Slack sees at once)
STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


@contextmanager
def llm_bot(
    make_services: Callable[..., Services], small_kb: Path, model: StreamingChatModel, **settings: Any
) -> Iterator[RunningBot]:
    """Steward with `model` as its LLM, over the small knowledge base; the model is let go at the end."""
    services = make_services(chat_model=model, **settings)
    services.ingestor.run([small_kb])
    try:
        with running_bot(services) as bot:
            yield bot
    finally:
        model.go_on.set()


def streamed(calls: list[Call]) -> str:
    """The markdown the stream methods sent, in order (markdown_text and markdown_text chunks)."""
    parts = []
    for call in calls:
        if call.method in STREAM_METHODS:
            parts.append(str(call.args.get("markdown_text") or ""))
            parts += [str(chunk.get("text") or "") for chunk in call.args.get("chunks") or []]
    return "".join(parts)


def only_answer(bot: RunningBot, channel: str, thread: str) -> dict[str, Any]:
    """The one message Steward left in the thread."""
    (answer,) = [post for post in bot.bot_posts(channel, thread) if post.get("blocks")]
    return answer


def test_an_llm_answer_is_shown_as_it_is_written_then_as_its_checked_version(
    make_services: Callable[..., Services], small_kb: Path
) -> None:
    """While the LLM writes, its text is already in the thread; then the same message becomes the cited
    answer with its sources and buttons (chat.update), and nothing else is posted."""
    model = StreamingChatModel(reply=REPLY, hold_after=HOLD_AFTER)
    with llm_bot(make_services, small_kb, model) as bot:
        question = bot.say(ROLLBACK)
        (start,) = bot.slack.wait_for("chat.startStream")
        assert model.held.wait(10)
        assert start.args["thread_ts"] == question
        (shown,) = bot.bot_posts(CHANNEL, question)
        assert shown["streaming_state"] == STREAMING and bot.slack.calls("chat.update") == []
        assert REPLY.startswith(shown["text"]) and len(shown["text"]) >= 256  # written so far, not all
        assert (start.args["recipient_user_id"], start.args["recipient_team_id"]) == (USER, "T0FAKE")
        model.go_on.set()
        bot.settle()
        answer = only_answer(bot, CHANNEL, question)
        assert answer["ts"] == shown["ts"] and answer["streaming_state"] == COMPLETED
        assert "shadow error rate" in blocks_text(answer) and "*Sources*" in blocks_text(answer)
        assert "written by StreamingChatModel" in blocks_text(answer)
        assert_valid_blocks(answer["blocks"])
        assert bot.slack.calls("chat.stopStream")[0].at < bot.slack.calls("chat.update")[0].at
        assert [c.args["ts"] for c in bot.slack.calls("chat.update")] == [answer["ts"]]


@pytest.mark.parametrize(
    ("reply", "settings", "reason"),
    [
        pytest.param(
            SENTENCE.replace("[1]", "[9]") * 4,
            {},
            "the LLM answer cites passages that were not retrieved: [9]",
            id="bad-citation",
        ),
        pytest.param(
            REPLY, {"llm_timeout_seconds": 3.0}, "the LLM did not finish its answer within 3 s", id="timeout"
        ),
    ],
)
def test_a_rejected_llm_answer_is_replaced_by_the_extractive_one(
    make_services: Callable[..., Services], small_kb: Path, reply: str, settings: dict[str, Any], reason: str
) -> None:
    """The streamed text was never checked: when the check (or the clock) rejects it, the message becomes
    the extractive answer, and its footer says why."""
    model = StreamingChatModel(reply=reply, hold_after=HOLD_AFTER if settings else None)
    with llm_bot(make_services, small_kb, model, **settings) as bot:
        question = bot.say(ROLLBACK)
        bot.settle()
        answer = only_answer(bot, CHANNEL, question)
        assert bot.slack.calls("chat.startStream") and answer["streaming_state"] == COMPLETED
        assert f"written by extractive because {reason}" in blocks_text(answer)
        assert "shadow error rate for half an hour" not in blocks_text(answer)
        assert "Model rollback" in blocks_text(answer)
        assert_valid_blocks(answer["blocks"])


def test_without_an_llm_nothing_streams(bot: RunningBot) -> None:
    """The extractive answer is posted whole, as before."""
    question = bot.say(ROLLBACK)
    bot.settle()
    assert [bot.slack.calls(method) for method in STREAM_METHODS] == [[], [], []]
    assert "written by extractive" in blocks_text(only_answer(bot, CHANNEL, question))


def test_an_abstention_calls_no_llm_and_streams_nothing(
    make_services: Callable[..., Services], small_kb: Path
) -> None:
    """When Steward does not know, the LLM is not asked, so there is nothing to stream."""
    model = StreamingChatModel(reply=REPLY)
    with llm_bot(make_services, small_kb, model) as bot:
        question = bot.say(UNKNOWN, channel="DASKER", mention=False)
        bot.settle()
        assert model.streams == 0 and bot.slack.calls("chat.startStream") == []
        assert "Ask an expert" in blocks_text(only_answer(bot, "DASKER", question))


def test_streamed_text_links_nowhere_and_mentions_nobody(
    make_services: Callable[..., Services], small_kb: Path
) -> None:
    """An LLM repeating a poisoned document: what streams has every link and mention broken (even split
    across pieces), and the final answer follows the link policy."""
    hostile = (
        "Roll back per [the runbook](https://evil.example/x), tell <!channel> and <@U0ADMIN>, "
        "see https://evil.example/y or www.evil.example today. [1] "
    ) * 3
    model = StreamingChatModel(reply=hostile, piece_chars=7)
    with llm_bot(make_services, small_kb, model) as bot:
        question = bot.say(ROLLBACK, channel="DASKER", mention=False)
        bot.settle()
        text = streamed(bot.slack.calls())
        shown = text.replace(ZERO_WIDTH, "")
        assert hostile.startswith(shown) and hostile[: len(hostile) // 3] in shown  # it streamed...
        for active in ("](", "://", "<!", "<@", "www."):
            assert active not in text, active  # ...with nothing live in it
        answer = only_answer(bot, "DASKER", question)
        assert "link to evil.example removed" in blocks_text(answer)
        assert "<https://evil.example" not in json.dumps(answer["blocks"])


@pytest.mark.parametrize(
    ("method", "error"),
    [
        pytest.param("chat.startStream", "channel_type_not_supported", id="start-refused"),
        pytest.param("chat.appendStream", "message_not_in_streaming_state", id="append-refused"),
        pytest.param("chat.update", "cant_update_message", id="update-refused"),
    ],
)
def test_a_stream_slack_refuses_still_ends_in_one_answer(
    make_services: Callable[..., Services], small_kb: Path, method: str, error: str
) -> None:
    """Streaming is a courtesy: whichever call Slack refuses, the thread ends with the one checked answer."""
    model = StreamingChatModel(reply=REPLY)
    with llm_bot(make_services, small_kb, model) as bot:
        bot.slack.fail(method, status=200, error=error)
        question = bot.say(ROLLBACK)
        bot.settle()
        answer = only_answer(bot, CHANNEL, question)
        assert [call.status for call in bot.slack.calls(method)][:1] == [200]
        assert answer.get("streaming_state", COMPLETED) == COMPLETED
        assert "written by StreamingChatModel" in blocks_text(answer)
        assert len(bot.bot_posts(CHANNEL, question)) == 1


def test_an_answer_streams_in_the_assistant_pane(
    make_services: Callable[..., Services], small_kb: Path
) -> None:
    """In the pane the status shows first, then the text streams into the pane's thread and becomes the
    checked answer; the status is gone."""
    model = StreamingChatModel(reply=REPLY)
    with llm_bot(make_services, small_kb, model) as bot:
        channel, thread = bot.open_pane()
        bot.say(ROLLBACK, channel=channel, thread_ts=thread, mention=False)
        bot.settle()
        (status,) = bot.slack.calls("assistant.threads.setStatus")
        (start,) = bot.slack.calls("chat.startStream")
        assert status.args["status"] == STATUS and status.at < start.at
        assert (start.args["channel"], start.args["thread_ts"]) == (channel, thread)
        answer = only_answer(bot, channel, thread)
        assert answer["streaming_state"] == COMPLETED and "written by StreamingChatModel" in blocks_text(
            answer
        )
        assert bot.slack.status(channel, thread) == ""


@pytest.mark.parametrize(
    "pieces",
    [
        pytest.param(["see [docs](https://evil.example)"], id="whole"),
        pytest.param(["see [docs]", "(https:", "//evil.example)"], id="split-link"),
        pytest.param(["see www", ".evil.example and <", "!here>"], id="split-www-and-entity"),
    ],
)
def test_the_defuser_breaks_links_split_across_pieces(pieces: list[str]) -> None:
    """Links and entities are broken wherever the pieces happen to be cut; the text reads the same."""
    defuse = Defuser()
    text = "".join(defuse(piece) for piece in pieces)
    assert text.replace(ZERO_WIDTH, "") == "".join(pieces)
    for active in ("](", "://", "www.", "<!"):
        assert active not in text
