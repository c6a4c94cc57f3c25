"""Posting to Slack from the worker threads: paced per channel, errors logged by id, never by text."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.blocks import RenderedMessage
from bot.slack.pacing import ChannelPacer

log = logging.getLogger("steward.slack")

WORKING = "eyes"  # the reaction on a question while Steward works on it
FAILED = "warning"  # replaces it when something went wrong


class Poster:
    """Thin helpers over the Web API client for what Steward posts."""

    def __init__(self, pacer: ChannelPacer) -> None:
        self.pacer = pacer

    def post(
        self,
        client: WebClient,
        channel: str,
        messages: Sequence[RenderedMessage],
        thread_ts: str | None = None,
    ) -> list[str]:
        """Post messages in order (in a thread when `thread_ts` is given); returns their ts."""
        posted: list[str] = []
        for message in messages:
            self.pacer.wait(channel)
            response = client.chat_postMessage(
                channel=channel,
                thread_ts=thread_ts,
                text=message.text,
                blocks=message.blocks,
                unfurl_links=False,
                unfurl_media=False,
            )
            posted.append(str(response["ts"]))
        return posted

    def say(self, client: WebClient, channel: str, text: str, thread_ts: str | None = None) -> str:
        """Post a short plain message."""
        self.pacer.wait(channel)
        response = client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=text, unfurl_links=False
        )
        return str(response["ts"])

    def whisper(
        self,
        client: WebClient,
        channel: str,
        user: str,
        text: str,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        """An ephemeral message only `user` sees; a failure is logged, not raised."""
        try:
            client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread_ts, blocks=blocks
            )
        except SlackApiError as exc:
            log.warning("ephemeral message failed channel=%s error=%s", channel, exc.response.get("error"))

    @staticmethod
    def react(client: WebClient, channel: str, ts: str, name: str) -> None:
        """Add a reaction; the working state is a courtesy, so failures are only logged."""
        _reaction(client.reactions_add, channel, ts, name, harmless="already_reacted")

    @staticmethod
    def unreact(client: WebClient, channel: str, ts: str, name: str) -> None:
        """Remove a reaction Steward added."""
        _reaction(client.reactions_remove, channel, ts, name, harmless="no_reaction")

    @staticmethod
    def set_status(client: WebClient, channel: str, thread_ts: str, status: str) -> None:
        """The status under a thread ("" clears it); a courtesy, like the working reaction."""
        _courtesy(
            "status",
            channel,
            lambda: client.assistant_threads_setStatus(
                channel_id=channel, thread_ts=thread_ts, status=status
            ),
        )

    @staticmethod
    def set_title(client: WebClient, channel: str, thread_ts: str, title: str) -> None:
        """The title of an assistant thread in the person's history."""
        _courtesy(
            "title",
            channel,
            lambda: client.assistant_threads_setTitle(channel_id=channel, thread_ts=thread_ts, title=title),
        )

    @staticmethod
    def suggest(
        client: WebClient, channel: str, thread_ts: str, prompts: Sequence[dict[str, str]], title: str
    ) -> None:
        """Suggested prompts in an assistant thread (Slack shows at most four)."""
        _courtesy(
            "suggested prompts",
            channel,
            lambda: client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, prompts=list(prompts), title=title
            ),
        )

    @staticmethod
    def permalink(client: WebClient, channel: str, ts: str) -> str | None:
        """A link to a message, or None when Slack will not give one."""
        try:
            return str(client.chat_getPermalink(channel=channel, message_ts=ts)["permalink"])
        except SlackApiError as exc:
            log.info("permalink failed channel=%s error=%s", channel, exc.response.get("error"))
            return None


def _reaction(call: Callable[..., object], channel: str, ts: str, name: str, harmless: str) -> None:
    try:
        call(channel=channel, timestamp=ts, name=name)
    except SlackApiError as exc:
        if exc.response.get("error") != harmless:
            log.info("reaction %s failed channel=%s error=%s", name, channel, exc.response.get("error"))


def _courtesy(what: str, channel: str, call: Callable[[], object]) -> None:
    """An assistant-pane call whose failure must not stop an answer: logged by Slack's error code."""
    try:
        call()
    except SlackApiError as exc:
        log.info("assistant %s failed channel=%s error=%s", what, channel, exc.response.get("error"))
