"""Feedback on answers, "Ask an expert" and "Save as guidance" in Slack: how the knowledge base grows.

The gap service (bot/answers/gaps.py) records, routes and drafts, each click at most once; this module
reads the clicks, reaches the experts in Slack (`SlackExperts`) and tells people what happened.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.answers.gaps import (
    ALREADY,
    FAILED,
    GAP_CLOSED,
    GAP_DRAFTED,
    MISSING,
    NOWHERE,
    Gap,
    GapService,
    Routing,
)
from bot.metrics import FEEDBACK
from bot.redaction import mask_secrets, masked_notice
from bot.slack.mrkdwn import escape
from bot.slack.payloads import (
    ACTION_SAVE_GUIDANCE,
    BLOCK_REASON,
    INPUT_REASON,
    VIEW_FEEDBACK_REASON,
    ExpertValue,
    FeedbackReasonMetadata,
    FeedbackValue,
    SaveGuidanceValue,
)
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

_USER_ID = re.compile(r"^<?@?([UW][A-Z0-9]{6,})(?:\|[^>]*)?>?$")
_DIRECTORY_TTL = 3600.0
Payload = TypeVar("Payload", bound=BaseModel)


def offer_to_save(
    poster: Poster, client: WebClient, gap_id: int, channel: str, ts: str, user: str, thread_ts: str
) -> None:
    """Tell the person who replied in a gap's thread that their reply can become guidance."""
    value = SaveGuidanceValue(gap_id=gap_id, channel=channel, ts=ts).encode()
    text = "Is this the answer? *Save as guidance* turns your reply into a draft document for review."
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "style": "primary",
                    "text": {"type": "plain_text", "text": "Save as guidance", "emoji": True},
                    "action_id": ACTION_SAVE_GUIDANCE,
                    "value": value,
                }
            ],
        },
    ]
    poster.whisper(client, channel, user, text, thread_ts=thread_ts, blocks=blocks)


class Expertise:
    """Handlers for feedback, the expert route and guidance capture."""

    def __init__(self, gaps: GapService, poster: Poster, clock: Callable[[], float] = time.monotonic) -> None:
        self.gaps = gaps
        self.poster = poster
        self.directory = SlackDirectory(clock)  # owners named by handle, looked up in Slack

    # -- feedback ------------------------------------------------------------------------------

    def on_feedback(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Helpful / not helpful: store the vote; "not helpful" also asks for an optional reason."""
        user = str(body["user"]["id"])
        channel = str((body.get("channel") or {}).get("id") or "")
        value = _read(FeedbackValue, action.get("value"), "feedback button", user)
        if value is None:
            return
        feedback_id = self.gaps.record_feedback(value.answer_id, user, value.helpful)
        if feedback_id is None:
            self.poster.whisper(
                client, channel, user, "That answer is no longer on record; feedback not stored."
            )
            return
        FEEDBACK.labels("helpful" if value.helpful else "not_helpful").inc()
        log.info("feedback answer=%s helpful=%s", value.answer_id, value.helpful)
        thread_ts = (body.get("message") or {}).get("thread_ts")
        if value.helpful:
            self.poster.whisper(client, channel, user, "Thanks — recorded as helpful.", thread_ts=thread_ts)
            return
        metadata = FeedbackReasonMetadata(feedback_id=feedback_id, channel=channel, user=user)
        try:
            client.views_open(trigger_id=str(body["trigger_id"]), view=reason_modal(metadata))
        except (SlackApiError, KeyError):
            self.poster.whisper(
                client, channel, user, "Thanks — recorded as not helpful.", thread_ts=thread_ts
            )

    def on_reason(self, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """The optional reason of a "not helpful" vote."""
        user = str(body["user"]["id"])
        metadata = _read(FeedbackReasonMetadata, view.get("private_metadata"), "feedback reason", user)
        if metadata is None:
            return
        state = (view.get("state") or {}).get("values") or {}
        reason = str(((state.get(BLOCK_REASON) or {}).get(INPUT_REASON) or {}).get("value") or "").strip()
        if reason:
            self.gaps.give_reason(metadata.feedback_id, user, reason)  # stored masked
            kinds = mask_secrets(reason).kinds
            if kinds:
                self.poster.whisper(client, metadata.channel, user, masked_notice(kinds, "your feedback"))

    # -- ask an expert -------------------------------------------------------------------------

    def on_ask_expert(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Post the question to the experts channel (or the owners), once, and say so in the thread."""
        user = str(body["user"]["id"])
        channel = str((body.get("channel") or {}).get("id") or "")
        value = _read(ExpertValue, action.get("value"), "ask-expert button", user)
        if value is None:
            return
        routing = self.gaps.route(value.gap_id, user, SlackExperts(client, self.poster, self.directory))
        gap = routing.gap
        if routing.outcome == MISSING or gap is None:
            self.poster.whisper(client, channel, user, "I have no record of that question any more.")
            return
        if routing.outcome == ALREADY:
            self.poster.whisper(client, channel, user, _already(gap), thread_ts=gap.thread_ts)
            return
        if routing.outcome in (FAILED, NOWHERE):
            text = (
                "I could not reach the experts; please try *Ask an expert* again."
                if routing.outcome == FAILED
                else "I cannot route this: no experts channel is configured (`STEWARD_EXPERTS_CHANNEL`) and "
                "none of the owners could be found in Slack. Ask an admin to set one."
            )
            self.poster.say(client, gap.channel, text, gap.thread_ts)
            return
        self.poster.say(
            client,
            gap.channel,
            f"I asked {_asked(routing)}. An answer posted in this thread can be saved as guidance for next "
            "time.",
            gap.thread_ts,
        )
        self._mark_asked(client, body, user)

    def _mark_asked(self, client: WebClient, body: dict[str, Any], user: str) -> None:
        """Replace the "Ask an expert" button with who asked, so nobody clicks it again."""
        message = body.get("message") or {}
        channel = str((body.get("channel") or {}).get("id") or "")
        if not message.get("ts") or not channel:
            return
        blocks = [block for block in message.get("blocks") or [] if block.get("type") != "actions"]
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"Experts asked by <@{user}>."}]}
        )
        try:
            client.chat_update(
                channel=channel, ts=str(message["ts"]), text=str(message.get("text") or ""), blocks=blocks
            )
        except SlackApiError as exc:
            log.info(
                "could not update the abstention channel=%s error=%s", channel, exc.response.get("error")
            )

    # -- save as guidance ----------------------------------------------------------------------

    def on_save_button(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """The "Save as guidance" button offered to whoever replied in a gap's thread."""
        user = str(body["user"]["id"])
        value = _read(SaveGuidanceValue, action.get("value"), "save-guidance button", user)
        if value is None:
            return
        gap = self.gaps.gap(value.gap_id)
        if gap is None:
            self.poster.whisper(client, value.channel, user, "I have no record of that question any more.")
            return
        message = self._find_message(client, gap, value.channel, value.ts)
        if message is None:
            self.poster.whisper(
                client, value.channel, user, "I cannot find that reply any more (was it deleted?)."
            )
            return
        self.save(client, gap, message, value.channel, user)

    def on_save_shortcut(self, body: dict[str, Any], shortcut: dict[str, Any], client: WebClient) -> None:
        """The "Save as guidance" message shortcut, on a reply in a gap's thread."""
        user = str(body["user"]["id"])
        channel = str((body.get("channel") or {}).get("id") or "")
        message = dict(body.get("message") or {})
        thread_ts = str(message.get("thread_ts") or message.get("ts") or "")
        gap = self.gaps.open_in_thread(channel, thread_ts) if channel and thread_ts else None
        if gap is None:
            closed = self.gaps.asked_in_thread(channel, thread_ts)
            text = (
                _already(closed)
                if closed
                else ("*Save as guidance* works on a reply in the thread of a question I could not answer.")
            )
            self.poster.whisper(client, channel, user, text, thread_ts=thread_ts or None)
            return
        self.save(client, gap, message, channel, user)

    @staticmethod
    def _find_message(client: WebClient, gap: Gap, channel: str, ts: str) -> dict[str, Any] | None:
        root = gap.thread_ts if channel == gap.channel else gap.expert_ts
        if root is None:
            return None
        try:
            replies = client.conversations_replies(channel=channel, ts=root, limit=200)
        except SlackApiError as exc:
            log.info("thread unavailable channel=%s error=%s", channel, exc.response.get("error"))
            return None
        return next((dict(m) for m in replies.get("messages") or [] if m.get("ts") == ts), None)

    def save(
        self, client: WebClient, gap: Gap, message: dict[str, Any], channel: str, clicked_by: str
    ) -> None:
        """Write the reply as a draft guidance document, once, and say where it is."""
        author = str(message.get("user") or "")
        reply = mask_secrets(str(message.get("text") or "").strip())
        text = reply.text
        thread_ts = gap.thread_ts if channel == gap.channel else gap.expert_ts
        if not author or message.get("bot_id") or not text:
            self.poster.whisper(
                client,
                channel,
                clicked_by,
                "Only a person's written reply can be saved as guidance.",
                thread_ts,
            )
            return
        link = self.poster.permalink(client, channel, str(message.get("ts") or ""))
        drafting = self.gaps.save_draft(gap, author, text, link)
        if drafting.outcome == ALREADY:
            self.poster.whisper(client, channel, clicked_by, _already(drafting.gap), thread_ts)
            return
        if drafting.path is None:
            text = f"I could not save the draft: {escape(drafting.error)}."
            self.poster.whisper(client, channel, clicked_by, text, thread_ts)
            return
        if reply.kinds:
            notice = masked_notice(reply.kinds, f"<@{author}>'s reply")
            self.poster.whisper(client, channel, clicked_by, notice, thread_ts)
        self.poster.say(
            client,
            gap.channel,
            f"<@{author}>'s answer is saved as draft guidance `{drafting.path}` for review. When a reviewer "
            "sets `status: accepted` and runs `steward ingest`, I will answer this question from it.",
            gap.thread_ts,
        )


class SlackDirectory:
    """Slack user ids for the owners documents name by handle (`@dana.okafor`), from users.list, kept an
    hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._names: dict[str, str] = {}
        self._read_at = -_DIRECTORY_TTL
        self._lock = threading.Lock()

    def user_id(self, client: WebClient, owner: str) -> str | None:
        """A Slack user id for an owner written as `<@U…>`, `U…` or a handle such as `@dana.okafor`."""
        match = _USER_ID.match(owner.strip())
        if match:
            return match.group(1)
        handle = owner.strip().lstrip("@").lower()
        with self._lock:
            if self.clock() - self._read_at > _DIRECTORY_TTL:
                self._names = self._read(client)
                self._read_at = self.clock()
            return self._names.get(handle)

    @staticmethod
    def _read(client: WebClient) -> dict[str, str]:
        names: dict[str, str] = {}
        try:
            for page in client.users_list(limit=200):
                for member in page.get("members") or []:
                    if member.get("deleted") or member.get("is_bot"):
                        continue
                    profile = member.get("profile") or {}
                    for name in (member.get("name"), profile.get("display_name"), member.get("real_name")):
                        if name:
                            names.setdefault(str(name).lower(), str(member["id"]))
        except SlackApiError as exc:
            log.warning(
                "users.list failed error=%s; owners named by handle cannot be reached",
                exc.response.get("error"),
            )
        return names


class SlackExperts:
    """The gap service's way to the experts (`ExpertReach`): a channel, or the owners' direct messages."""

    def __init__(self, client: WebClient, poster: Poster, directory: SlackDirectory) -> None:
        self.client = client
        self.poster = poster
        self.directory = directory

    def person(self, owner: str) -> str | None:
        """The owner's Slack user id."""
        return self.directory.user_id(self.client, owner)

    def ask(self, gap: Gap, where: Sequence[str]) -> list[str]:
        """Post the question to each channel or person; the messages' ts."""
        text = self._question(gap)
        return [self.poster.say(self.client, place, text) for place in where]

    def _question(self, gap: Gap) -> str:
        link = self.poster.permalink(self.client, gap.channel, gap.thread_ts)
        thread = f"<{link}|this thread>" if link else f"<#{gap.channel}>"
        owners = ", ".join(escape(owner) for owner in gap.owners) or "nobody named"
        question = mask_secrets(gap.question).text  # a gap recorded before questions were stored masked
        return (
            f"*A question Steward could not answer*, from <@{gap.asker}> in {thread}:\n"
            f">{escape(question)}\n"
            f"Owners of the nearest documents: {owners}.\n"
            "Reply in the thread; the reply can then be saved with *Save as guidance* "
            "(button, or the message shortcut) as a draft for the knowledge base."
        )


def _read(model: type[Payload], text: object, what: str, user: str) -> Payload | None:
    """A button's value or a modal's metadata as its typed payload; None (logged) when unreadable."""
    try:
        return model.model_validate_json(str(text or ""))
    except ValidationError:
        log.warning("%s with an unreadable value dropped user=%s", what, user)
        return None


def _asked(routing: Routing) -> str:
    """Whom "Ask an expert" asked, as the asker's thread says it."""
    if routing.channel:
        return f"the experts in <#{routing.channel}>"
    return ", ".join(f"<@{person}>" for person in routing.people)


def reason_modal(metadata: FeedbackReasonMetadata) -> dict[str, Any]:
    """The optional "what was wrong?" modal of a not-helpful vote."""
    return {
        "type": "modal",
        "callback_id": VIEW_FEEDBACK_REASON,
        "private_metadata": metadata.encode(),
        "title": {"type": "plain_text", "text": "Thanks for the feedback"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Skip"},
        "blocks": [
            {
                "type": "input",
                "block_id": BLOCK_REASON,
                "optional": True,
                "label": {"type": "plain_text", "text": "What was wrong or missing? (optional)"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": INPUT_REASON,
                    "multiline": True,
                    "max_length": 2000,
                },
            }
        ],
    }


def _already(gap: Gap) -> str:
    if gap.status == GAP_CLOSED:
        return f"This question is answered by accepted guidance (`{gap.closed_by_path}`)."
    if gap.status == GAP_DRAFTED:
        return f"An answer is already saved as draft guidance `{gap.draft_path}`, waiting for review."
    return "The experts have already been asked about this question."
