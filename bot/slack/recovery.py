"""Answering the questions a dead replica acknowledged but never answered.

Slack does not deliver an acknowledged event again, and the event's claim keeps the other replicas from
answering a retry. So each replica records a heartbeat, question events stay open until answered, and
at each housekeeping round a live replica takes over the open events of replicas it has not seen for
`dead_after` seconds: it reads the message from Slack again (no text is stored) and answers it, once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.answers.deliveries import Deliveries, OpenEvent
from bot.slack.questions import QuestionFlows

log = logging.getLogger("steward.slack")


@dataclass
class EventRecovery:
    """Heartbeats, and the take-over of orphaned question events."""

    conversations: QuestionFlows
    deliveries: Deliveries
    _identity: dict[str, str] = field(default_factory=dict)

    def heartbeat(self) -> None:
        """This replica is alive."""
        self.deliveries.heartbeat()

    def recover(self, client: WebClient, dead_after: float) -> int:
        """Answer the events dead replicas left open; returns how many this replica took over."""
        self.deliveries.heartbeat()
        taken = 0
        for orphan in self.deliveries.orphans(dead_after):
            if not self.deliveries.take_over(orphan):
                continue  # another live replica has it
            taken += 1
            body = {"event_id": orphan.event_id}
            try:
                self._answer(client, orphan, body)
            except Exception:
                log.exception("taking over event=%s failed", orphan.event_id)
            finally:
                self.conversations.finished(body)
        return taken

    def _answer(self, client: WebClient, orphan: OpenEvent, body: dict[str, Any]) -> None:
        context = self._context(client)
        message, answered = self._message(client, orphan, context.bot_user_id or "")
        if message is None:
            log.info("orphaned event dropped: its message is gone event=%s", orphan.event_id)
            return
        if answered:  # the dead replica posted its answer and died before it could finish the event
            log.info("orphaned event already answered in its thread event=%s", orphan.event_id)
            return
        event: dict[str, Any] = {
            "channel": orphan.channel,
            "channel_type": "im" if orphan.channel.startswith("D") else "channel",
            "user": message.get("user"),
            "ts": orphan.message_ts,
            "text": str(message.get("text") or ""),
        }
        if orphan.thread_ts:
            event["thread_ts"] = orphan.thread_ts
        log.info("taking over event=%s from replica=%s", orphan.event_id, orphan.owner)
        if f"<@{context.bot_user_id}" in event["text"] and not orphan.channel.startswith("D"):
            self.conversations.handle_mention(body, {**event, "type": "app_mention"}, client, context)
        else:
            self.conversations.handle_message(body, {**event, "type": "message"}, client, context)

    @staticmethod
    def _message(
        client: WebClient, orphan: OpenEvent, bot_user_id: str
    ) -> tuple[dict[str, Any] | None, bool]:
        """The event's message as Slack has it now (None when deleted or unreadable), and whether Steward
        already replied to it: its reply comes after the message in the thread, before anyone else's."""
        try:
            replies = client.conversations_replies(
                channel=orphan.channel, ts=orphan.thread_ts or orphan.message_ts, limit=200
            )
        except SlackApiError as exc:
            log.info(
                "orphaned message unreadable event=%s error=%s", orphan.event_id, exc.response.get("error")
            )
            return None, False
        messages = sorted(replies.get("messages") or [], key=lambda m: float(m.get("ts") or 0))
        for index, message in enumerate(messages):
            if str(message.get("ts")) != orphan.message_ts:
                continue
            later = messages[index + 1 : index + 2]  # the next message in the thread, if any
            answered = bool(later) and bool(bot_user_id) and later[0].get("user") == bot_user_id
            return dict(message), answered
        return None, False

    def _context(self, client: WebClient) -> BoltContext:
        """Who Steward is in Slack (auth.test, once), as Bolt would have passed it."""
        if not self._identity:
            identity = client.auth_test()
            self._identity = {
                "bot_user_id": str(identity.get("user_id") or ""),
                "bot_id": str(identity.get("bot_id") or ""),
                "team_id": str(identity.get("team_id") or ""),  # who reads a streamed answer
            }
        return BoltContext(dict(self._identity))
