"""Where a request is made: a channel, where approvers can see it, or a direct message, where they cannot.

Slack says what a conversation is in most payloads: a message event's `channel_type` (`im`, `mpim`), a
slash command's `channel_name` (`directmessage`, `mpdm-…`) and a direct message's id (`D…`). A mention
does not always carry `channel_type`, and a group DM's id starts with `G` like an older private
channel's; for those ids `conversations.info` (scopes `groups:read` and `mpim:read`) tells them apart,
once per conversation. When Slack cannot tell, no request is made there (fail closed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger("steward.slack")

DIRECT = ("im", "mpim")  # a direct message and a group direct message: approvers cannot see them
REQUEST_IN_A_CHANNEL = (
    "That reads as an action request. Requests are made in a channel, where the approvers can see "
    "them: mention me there, use `/steward run ACTION key=value …`, or the *Request an action* shortcut."
)
BOTS_USE_THE_AGENT_API = (
    "That reads as an action request, and bots do not request actions in Slack: only people's words "
    "do. An AI agent requests actions through Steward's agent API or MCP server, with a token an operator "
    "makes with `steward agents add`; the approval card then comes here, naming the agent and its owner."
)
RUN_IN_A_CHANNEL = (
    "Requests are not made in direct messages or group DMs, because the approvers could not see them; "
    "nothing was requested. Run `/steward run …` in a channel (one I am in), mention me there, or use "
    "the *Request an action* shortcut."
)


@dataclass(frozen=True)
class Place:
    """What a conversation is (`im`, `mpim`, `channel`), or why that is unknown (Slack's error)."""

    kind: str | None
    error: str | None = None

    @property
    def direct(self) -> bool:
        """A direct or group direct message: no request is made here."""
        return self.kind in DIRECT

    @property
    def unknown(self) -> bool:
        """Slack could not say what this conversation is."""
        return self.kind is None


def command_hint(command: Mapping[str, Any]) -> str | None:
    """What a slash command's own payload says about its conversation."""
    name = str(command.get("channel_name") or "")
    if name == "directmessage":
        return "im"
    if name.startswith("mpdm-"):
        return "mpim"
    return None


class Places:
    """Tells channels from direct messages; asks Slack at most once per conversation."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._lock = threading.Lock()

    def place(self, client: WebClient, channel: str, hint: str | None = None) -> Place:
        """What `channel` is, from the payload's `hint` (`channel_type`), its id, or conversations.info."""
        if hint in ("im", "mpim", "channel", "group"):
            return Place(hint)
        if channel.startswith("D"):
            return Place("im")
        if channel.startswith("C"):
            return Place("channel")  # public and private channels; group DMs have G ids
        with self._lock:
            known = self._known.get(channel)
        if known is not None:
            return Place(known)
        try:
            found = client.conversations_info(channel=channel).get("channel") or {}
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "unknown_error")
            log.warning("cannot tell what conversation %s is (conversations.info: %s)", channel, error)
            return Place(None, error)
        kind = "im" if found.get("is_im") else "mpim" if found.get("is_mpim") else "channel"
        with self._lock:
            self._known[channel] = kind
        return Place(kind)


def unknown_place_text(place: Place) -> str:
    """Why nothing was requested where Slack would not say what the conversation is."""
    return (
        f"I cannot tell whether this conversation is a channel (Slack said `{place.error}`), so nothing "
        "was requested. Make the request in a channel; an admin can give me the `groups:read` and "
        "`mpim:read` scopes so that I can tell."
    )
