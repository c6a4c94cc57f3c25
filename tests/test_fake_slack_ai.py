"""The fake Slack's assistant and streaming methods refuse what Slack refuses (driven by slack_sdk)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from tests.support.slack import FakeSlack
from tests.support.slack.assistant import COMPLETED, MAX_MARKDOWN_TEXT, STREAMING, block_problems

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "Roll back with the alias."}}


@pytest.fixture
def pane(slack: FakeSlack) -> tuple[str, str]:
    """An assistant thread the person opened: its DM channel and thread ts."""
    thread = slack.open_assistant_thread("UASKER", "CGENERAL")["assistant_thread"]
    return thread["channel_id"], thread["thread_ts"]


def error_of(call: Callable[[], Any]) -> str:
    """The error code Slack answers a call with (the call must fail)."""
    with pytest.raises(SlackApiError) as failure:
        call()
    return str(failure.value.response["error"])


def test_opening_the_pane_makes_a_dm_thread_and_the_event_slack_sends(slack: FakeSlack) -> None:
    """assistant_thread_started carries the DM channel, the thread and the channel the person views."""
    event = slack.open_assistant_thread("UASKER", "CGENERAL")
    thread = event["assistant_thread"]
    assert event["type"] == "assistant_thread_started" and thread["user_id"] == "UASKER"
    assert thread["context"]["channel_id"] == "CGENERAL" and thread["channel_id"] == "DASKER"
    (root,) = slack.messages("DASKER")
    assert root["ts"] == thread["thread_ts"] and root["subtype"] == "assistant_app_thread"


def test_status_title_and_prompts_show_in_the_pane(
    slack: FakeSlack, client: WebClient, pane: tuple[str, str]
) -> None:
    """What the three assistant.threads methods set is what the person sees; a reply clears the status."""
    channel, thread = pane
    client.assistant_threads_setStatus(channel_id=channel, thread_ts=thread, status="searching the runbooks…")
    client.assistant_threads_setTitle(channel_id=channel, thread_ts=thread, title="Rollbacks")
    prompts = [{"title": "Rollback", "message": "How do we roll back?"}]
    client.assistant_threads_setSuggestedPrompts(
        channel_id=channel, thread_ts=thread, prompts=prompts, title="Try"
    )
    assert slack.status(channel, thread) == "searching the runbooks…"
    shown = slack.assistant_thread(channel, thread)
    assert (shown.title, shown.prompts, shown.prompts_title) == ("Rollbacks", prompts, "Try")
    client.chat_postMessage(channel=channel, thread_ts=thread, text="Here is how.")
    assert slack.status(channel, thread) == ""


PROMPT = {"title": "Rollback", "message": "How do we roll back?"}


@pytest.mark.parametrize(
    ("method", "args", "error"),
    [
        pytest.param(
            "assistant.threads.setStatus",
            {"status": "x", "channel_id": None},
            "invalid_arguments",
            id="status-no-channel",
        ),
        pytest.param(
            "assistant.threads.setStatus", {"status": None}, "invalid_arguments", id="status-missing"
        ),
        pytest.param(
            "assistant.threads.setStatus",
            {"status": "x", "loading_messages": ["…"] * 11},
            "invalid_arguments",
            id="eleven-loading-messages",
        ),
        pytest.param(
            "assistant.threads.setStatus",
            {"status": "x", "thread_ts": "1.000001"},
            "invalid_thread_ts",
            id="status-unknown-thread",
        ),
        pytest.param(
            "assistant.threads.setStatus",
            {"status": "x", "channel_id": "DNOBODY"},
            "channel_not_found",
            id="status-unknown-channel",
        ),
        pytest.param("assistant.threads.setTitle", {"title": " "}, "invalid_arguments", id="blank-title"),
        pytest.param(
            "assistant.threads.setTitle",
            {"title": "x", "thread_ts": "CHANNEL_THREAD"},
            "invalid_thread_ts",
            id="title-outside-pane",
        ),
        pytest.param(
            "assistant.threads.setSuggestedPrompts",
            {"prompts": [PROMPT] * 5},
            "invalid_arguments",
            id="five-prompts",
        ),
        pytest.param(
            "assistant.threads.setSuggestedPrompts", {"prompts": []}, "invalid_arguments", id="no-prompts"
        ),
        pytest.param(
            "assistant.threads.setSuggestedPrompts",
            {"prompts": [{"title": "x"}]},
            "invalid_arguments",
            id="prompt-without-message",
        ),
        pytest.param(
            "assistant.threads.setSuggestedPrompts",
            {"prompts": [{**PROMPT, "url": "x"}]},
            "invalid_arguments",
            id="prompt-extra-field",
        ),
        pytest.param(
            "assistant.threads.setSuggestedPrompts",
            {"prompts": [PROMPT], "thread_ts": None},
            "invalid_arguments",
            id="prompts-no-thread",
        ),
    ],
)
def test_assistant_methods_refuse_what_slack_refuses(
    slack: FakeSlack, client: WebClient, pane: tuple[str, str], method: str, args: dict[str, Any], error: str
) -> None:
    """Missing or malformed arguments, Slack's limits, and threads it does not know are errors."""
    channel, thread = pane
    channel_thread = slack.add_message(channel, "a plain DM", "UASKER")
    full = {"channel_id": channel, "thread_ts": thread, **args}
    if full["thread_ts"] == "CHANNEL_THREAD":
        full["thread_ts"] = channel_thread
    assert (
        error_of(lambda: client.api_call(method, json={k: v for k, v in full.items() if v is not None}))
        == error
    )


def test_a_stream_builds_one_message_and_ends_with_checked_blocks(
    slack: FakeSlack, client: WebClient
) -> None:
    """slack_sdk's ChatStream against the fake: start, appends, stop with blocks; the text is all there."""
    root = slack.add_message("CGENERAL", "how do I roll back?", "UASKER")
    stream = client.chat_stream(
        channel="CGENERAL",
        thread_ts=root,
        recipient_user_id="UASKER",
        recipient_team_id="T0FAKE",
        buffer_size=8,
    )
    for piece in ("Move the alias ", "back to the ", "previous version."):
        stream.append(markdown_text=piece)
    (message,) = [m for m in slack.messages("CGENERAL", root) if m["ts"] != root]
    assert message["streaming_state"] == STREAMING
    stream.stop(blocks=[SECTION])
    (message,) = [m for m in slack.messages("CGENERAL", root) if m["ts"] != root]
    assert message["text"] == "Move the alias back to the previous version."
    assert (message["streaming_state"], message["blocks"]) == (COMPLETED, [SECTION])
    assert [call.method for call in slack.calls()] == [
        "chat.startStream",
        "chat.appendStream",
        "chat.appendStream",
        "chat.stopStream",
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        pytest.param({"recipient_user_id": None}, "missing_recipient_user_id", id="no-recipient-user"),
        pytest.param({"recipient_team_id": None}, "missing_recipient_team_id", id="no-recipient-team"),
        pytest.param({"thread_ts": None}, "invalid_arguments", id="no-thread"),
        pytest.param({"thread_ts": "1.000001"}, "invalid_thread_ts", id="unknown-thread"),
        pytest.param({"markdown_text": "x" * (MAX_MARKDOWN_TEXT + 1)}, "msg_too_long", id="too-long"),
        pytest.param({"chunks": [{"type": "poem", "text": "x"}]}, "invalid_arguments", id="unknown-chunk"),
    ],
)
def test_starting_a_stream_in_a_channel_needs_its_reader_and_a_thread(
    slack: FakeSlack, client: WebClient, args: dict[str, Any], error: str
) -> None:
    """Outside a DM Slack must know who reads the stream; streams always answer in a thread."""
    root = slack.add_message("CGENERAL", "how do I roll back?", "UASKER")
    full = {
        "channel": "CGENERAL",
        "thread_ts": root,
        "recipient_user_id": "UASKER",
        "recipient_team_id": "T0FAKE",
    }
    full.update(args)
    call = {key: value for key, value in full.items() if value is not None}
    assert error_of(lambda: client.api_call("chat.startStream", json=call)) == error


def test_a_dm_stream_needs_no_recipient(slack: FakeSlack, client: WebClient) -> None:
    """In a direct message the reader is known."""
    root = slack.add_message("DASKER", "how do I roll back?", "UASKER")
    assert client.chat_startStream(channel="DASKER", thread_ts=root, markdown_text="Move")["ts"]


def test_only_the_apps_own_streaming_message_takes_more_text(slack: FakeSlack, client: WebClient) -> None:
    """appendStream and stopStream refuse a finished stream, someone else's message, and no text."""
    root = slack.add_message("DASKER", "how do I roll back?", "UASKER")
    ts = client.chat_startStream(channel="DASKER", thread_ts=root, markdown_text="Move")["ts"]
    assert error_of(lambda: client.chat_appendStream(channel="DASKER", ts=ts)) == "no_text"
    assert error_of(lambda: client.chat_appendStream(channel="DASKER", ts=root, markdown_text="x")) == (
        "message_not_owned_by_app"
    )
    client.chat_stopStream(channel="DASKER", ts=ts)
    assert error_of(lambda: client.chat_appendStream(channel="DASKER", ts=ts, markdown_text="x")) == (
        "message_not_in_streaming_state"
    )
    assert (
        error_of(lambda: client.chat_stopStream(channel="DASKER", ts=ts)) == "message_not_in_streaming_state"
    )


@pytest.mark.parametrize(
    "blocks",
    [
        pytest.param(
            [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}], id="section-too-long"
        ),
        pytest.param([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "x"}}], id="unknown-type"),
        pytest.param([{**SECTION, "colour": "red"}], id="unknown-field"),
        pytest.param([SECTION] * 51, id="fifty-one-blocks"),
    ],
)
def test_a_stream_ends_only_with_blocks_slack_sdk_accepts(
    slack: FakeSlack, client: WebClient, blocks: list[dict[str, Any]]
) -> None:
    """The blocks under a finished stream are checked with slack_sdk's own Block Kit models."""
    root = slack.add_message("DASKER", "how do I roll back?", "UASKER")
    ts = client.chat_startStream(channel="DASKER", thread_ts=root, markdown_text="Move")["ts"]
    assert block_problems(blocks)
    assert (
        error_of(lambda: client.chat_stopStream(channel="DASKER", ts=ts, blocks=blocks)) == "invalid_blocks"
    )
    assert block_problems([SECTION]) == []
    assert slack.take_violations()  # recorded, as every refused payload is (this one is on purpose)
