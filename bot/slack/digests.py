"""Digests in Slack: rendered as a parent message with one thread reply per model (the outlet of the
digest publisher, bot/digests/publishing.py, which claims each fire once across replicas)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.policy.engine import Policy
from bot.digests.drift_digest import details, headline, is_quiet, quiet_line
from bot.digests.publishing import DigestPublisher, DriftPost, OutletRefused
from bot.slack.app import SlackSetupError
from bot.slack.blocks import MAX_SECTION_TEXT, RenderedMessage, button, split_mrkdwn
from bot.slack.mrkdwn import escape
from bot.slack.payloads import ACTION_DIGEST_REQUEST, DigestActionValue
from bot.slack.posting import Poster

log = logging.getLogger("steward.digests")

_ICON = {
    "drift": ":red_circle:",
    "watch": ":large_yellow_circle:",
    "unchecked": ":warning:",  # a column could not be measured: never shown green
    "ok": ":large_green_circle:",
}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


OFFERED = (("retrain-model", "Retrain…"), ("rollback-model", "Roll back…"))
SECTIONS_PER_MESSAGE = 10


def text_messages(text: str) -> list[RenderedMessage]:
    """A long plain-text digest as a parent message and thread replies, each within Slack's limits."""
    sections = [_section(part) for part in split_mrkdwn(escape(text), MAX_SECTION_TEXT)]
    first_line = text.splitlines()[0][:300] if text else ""
    return [
        RenderedMessage(text=first_line, blocks=sections[start : start + SECTIONS_PER_MESSAGE])
        for start in range(0, len(sections), SECTIONS_PER_MESSAGE)
    ]


def _action_buttons(model: str, policy: Policy | None) -> list[dict[str, Any]]:
    """Buttons that open the request form for the model (the guarded-action flow decides from there)."""
    buttons = []
    for action, label in OFFERED:
        spec = policy.actions.get(action) if policy is not None else None
        names = {param.name: param for param in spec.params} if spec else {}
        if spec is None or "model" not in names:
            continue
        params = {"model": model}
        if "env" in names and (names["env"].enum is None or "prod" in names["env"].enum):
            params["env"] = "prod"
        value = DigestActionValue(action=action, params=params).encode()
        buttons.append(button(label, ACTION_DIGEST_REQUEST, value))
    return buttons


def drift_messages(
    name: str, results: list[Any], today: dt.date, quiet: str, policy: Policy | None = None
) -> tuple[RenderedMessage | None, list[RenderedMessage]]:
    """The parent message (None: a quiet digest set to skip) and the thread replies, one per model.

    A model that drifts or is watched gets Retrain… / Roll back… buttons when the policy has them.
    """
    if is_quiet(results):
        if quiet == "skip":
            return None, []
        line = quiet_line(name, results, today)
        return RenderedMessage(text=line, blocks=[_section(f":white_check_mark: {escape(line)}")]), []
    lines = [f"*{escape(name)}* ({today}): drift digest"]
    for result in results:
        icon = _ICON[result.drift.level] if result.drift is not None else ":warning:"
        lines.append(f"{icon} {escape(headline(result))}")
    parent = RenderedMessage(
        text=f"{name} ({today}): drift digest",
        blocks=[_section(part) for part in split_mrkdwn("\n".join(lines), MAX_SECTION_TEXT)][:50],
    )
    replies = []
    for result in results:
        body = "\n".join([f"*{escape(headline(result))}*", *(escape(line) for line in details(result))])
        blocks = [_section(part) for part in split_mrkdwn(body, MAX_SECTION_TEXT)][:49]
        buttons = (
            _action_buttons(result.model, policy)
            if result.drift and result.drift.level in ("watch", "drift")
            else []
        )
        if buttons:
            blocks.append({"type": "actions", "elements": buttons})
        replies.append(RenderedMessage(text=headline(result)[:300], blocks=blocks))
    return parent, replies


class SlackOutlet:
    """Digests posted in Slack through `client`, paced by `poster` (the DigestOutlet of bot/digests)."""

    def __init__(self, client: WebClient, poster: Poster) -> None:
        self.client = client
        self.poster = poster

    def post_drift(self, channel: str, post: DriftPost) -> str:
        """The headline message, one thread reply per model; the headline's ts."""
        parent, replies = drift_messages(post.name, post.results, post.today, post.when_quiet, post.policy)
        if parent is None:  # the publisher does not publish a quiet digest set to skip
            raise ValueError(f"digest {post.name!r} is quiet and set to skip: there is nothing to post")
        return self._post(channel, parent, replies)

    def post_text(self, channel: str, text: str) -> str:
        """A text digest split into a parent message and thread replies; the parent's ts."""
        parent, *replies = text_messages(text)
        return self._post(channel, parent, replies)

    def _post(self, channel: str, parent: RenderedMessage, replies: list[RenderedMessage]) -> str:
        try:
            (ts,) = self.poster.post(self.client, channel, [parent])
            if replies:
                self.poster.post(self.client, channel, replies, thread_ts=ts)
        except SlackApiError as exc:
            raise OutletRefused(str(exc), exc.response.get("error")) from exc
        return ts

    def upload_chart(self, channel: str, thread_id: str, model: str, png: bytes, title: str) -> None:
        """The chart in the digest's thread; a refusal (say, no files:write scope) is logged, not fatal."""
        try:
            self.client.files_upload_v2(
                channel=channel, thread_ts=thread_id, file=png, filename=f"{model}-drift.png", title=title
            )
        except SlackApiError as exc:
            log.warning("drift chart not uploaded channel=%s error=%s", channel, exc.response.get("error"))


@dataclass
class DigestPoster:
    """The digest publisher with Slack as its outlet (a client per call: the app's, or the CLI's)."""

    publisher: DigestPublisher
    poster: Poster

    def post(self, client: WebClient, name: str, today: dt.date) -> str | None:
        """Post digest `name` as of `today`; returns the parent message's ts (None: quiet, skipped)."""
        return self.publisher.publish(SlackOutlet(client, self.poster), name, today)

    def fire(self, client: WebClient, name: str, fire_time: dt.datetime) -> bool:
        """A scheduled fire: claimed once across replicas, posted, its outcome recorded."""
        return self.publisher.fire(SlackOutlet(client, self.poster), name, fire_time)


def post_now(digests: DigestPoster, client: WebClient, name: str, today: dt.date) -> str | None:
    """`steward digest run NAME --post`: post the digest now (not a scheduled fire: nothing is claimed)."""
    try:
        return digests.post(client, name, today)
    except OutletRefused as exc:
        channel = digests.publisher.channel(name)
        raise SlackSetupError(
            f"Slack refused the digest ({exc.code}): is Steward invited to {channel}?"
        ) from None
