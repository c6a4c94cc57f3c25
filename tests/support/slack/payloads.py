"""Slack's request signing and the bodies Slack sends to the app: events, slash commands, interactions,
and their Socket Mode envelopes."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode


def sign(secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request-signing headers: v0 HMAC-SHA256 of "v0:{timestamp}:{raw body}"."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode("utf-8") if isinstance(body, str) else body
    basestring = b"v0:" + stamp.encode("ascii") + b":" + raw
    digest = hmac.new(secret.encode("utf-8"), basestring, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def event_body(
    event: dict[str, Any],
    event_id: str,
    team_id: str = "T0FAKE",
    api_app_id: str = "A0FAKE",
    event_time: int | None = None,
    bot_user_id: str = "UBOT",
) -> bytes:
    """An Events API event_callback envelope, as JSON bytes."""
    envelope = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(envelope).encode("utf-8")


def form_body(payload: dict[str, Any]) -> bytes:
    """An interactivity request body: payload=<urlencoded JSON>."""
    return urlencode({"payload": json.dumps(payload)}).encode("utf-8")


def command_body(
    command: str = "/steward",
    text: str = "",
    user_id: str = "UASKER",
    channel_id: str = "CGENERAL",
    response_url: str = "http://127.0.0.1:9/response/unset",
    trigger_id: str = "1337.4242.fake-trigger",
    team_id: str = "T0FAKE",
    user_name: str = "asker",
    channel_name: str = "general",
    api_app_id: str = "A0FAKE",
) -> bytes:
    """A urlencoded slash-command body with the fields Slack sends."""
    fields = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": "fake",
        "channel_id": channel_id,
        "channel_name": channel_name,
        "user_id": user_id,
        "user_name": user_name,
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id,
    }
    return urlencode(fields).encode("utf-8")


# Socket Mode envelopes, as Slack sends them over the WebSocket


def socket_envelope(
    kind: str,
    payload: dict[str, Any],
    envelope_id: str,
    accepts_response_payload: bool = False,
    retry_attempt: int | None = None,
    retry_reason: str | None = None,
) -> dict[str, Any]:
    """A Socket Mode envelope of type `kind` ("events_api", "slash_commands", "interactive")."""
    envelope: dict[str, Any] = {
        "envelope_id": envelope_id,
        "type": kind,
        "accepts_response_payload": accepts_response_payload,
        "payload": payload,
    }
    if retry_attempt is not None:
        envelope["retry_attempt"] = retry_attempt
        envelope["retry_reason"] = retry_reason or ""
    return envelope


def events_api_envelope(
    event: dict[str, Any],
    event_id: str,
    envelope_id: str,
    retry_attempt: int = 0,
    retry_reason: str = "",
    **event_body_args: Any,
) -> dict[str, Any]:
    """An events_api envelope around the event_callback body `event_body` builds."""
    payload = json.loads(event_body(event, event_id, **event_body_args))
    return socket_envelope("events_api", payload, envelope_id, False, retry_attempt, retry_reason)


def slash_commands_envelope(envelope_id: str, **command_body_args: Any) -> dict[str, Any]:
    """A slash_commands envelope; the payload holds the fields `command_body` sends (as strings)."""
    payload = dict(parse_qsl(command_body(**command_body_args).decode("utf-8"), keep_blank_values=True))
    return socket_envelope("slash_commands", payload, envelope_id, accepts_response_payload=True)


def interactive_envelope(payload: dict[str, Any], envelope_id: str) -> dict[str, Any]:
    """An interactive envelope (block action, shortcut, view submission); modals and menus take a reply."""
    replies = payload.get("type") in ("view_submission", "block_suggestion")
    return socket_envelope("interactive", payload, envelope_id, accepts_response_payload=replies)
