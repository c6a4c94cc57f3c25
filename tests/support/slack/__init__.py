"""A local fake Slack (Web API over real HTTP on loopback, Socket Mode over WebSockets) and the request
bodies Slack sends to the app."""

from tests.support.slack.fake import Call, FakeSlack, payload_violations
from tests.support.slack.payloads import (
    command_body,
    event_body,
    events_api_envelope,
    form_body,
    interactive_envelope,
    sign,
    slash_commands_envelope,
    socket_envelope,
)

__all__ = [
    "Call",
    "FakeSlack",
    "command_body",
    "event_body",
    "events_api_envelope",
    "form_body",
    "interactive_envelope",
    "payload_violations",
    "sign",
    "slash_commands_envelope",
    "socket_envelope",
]
