"""Requests at /slack/events are checked before Bolt sees them: signed (with a numeric timestamp), a body
Bolt can parse into an object, and the shapes the listeners rely on.

Bolt meets a non-numeric `X-Slack-Request-Timestamp`, a body or `payload=` that is not JSON, or
`actions` that is not a list with an exception: HTTP 500, a traceback, and (when its request parser
fails) no response at all for /metrics to count. Here such a request gets 401 (not signed) or 400
(signed but malformed) and one log line, under a correlation id of its own.
"""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl
from wsgiref.types import StartResponse

from slack_bolt.request.internals import parse_body
from slack_sdk.signature import SignatureVerifier

from bot.errors import Refused
from bot.logs import CORRELATION, correlation_for

log = logging.getLogger("steward.slack")

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Interactions whose listeners read `actions[0]`; the parts of an interaction Slack sends as objects
# (`team` too, but Bolt also reads it as an id string).
_ACTION_TYPES = ("block_actions", "interactive_message")
_INTERACTIONS = (
    *_ACTION_TYPES,
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
    "block_suggestion",
)
_OBJECTS = ("user", "channel", "container", "message", "view", "enterprise")


class RefusedError(Refused):
    """A request refused before Bolt: its HTTP status and why (never its content)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def checked_body(
    raw: bytes, content_type: str, timestamp: str, signature: str, secret: str
) -> dict[str, Any]:
    """The request body as Bolt will parse it, once its signature holds; `RefusedError` when it cannot be."""
    if not _TIMESTAMP.fullmatch(timestamp):
        raise RefusedError(401, "the X-Slack-Request-Timestamp header is not a number")
    if not SignatureVerifier(secret).is_valid(raw, timestamp, signature):
        raise RefusedError(401, "the signature is missing, stale or wrong")
    try:
        text = raw.decode("utf-8")
        body = parse_body(text, content_type.split(";")[0].strip() or None)
    except (UnicodeDecodeError, ValueError):  # json.JSONDecodeError is a ValueError
        raise RefusedError(400, "the body (or its payload field) is not JSON") from None
    if not isinstance(body, dict):
        raise RefusedError(400, "the body is not a JSON object")
    _check_shape(body)
    return body


def _check_shape(body: dict[str, Any]) -> None:
    """The parts listeners (Bolt's and Steward's) index into have the type Slack documents."""
    if body.get("type") == "event_callback" and not isinstance(body.get("event"), dict):
        raise RefusedError(400, "event_callback without an event object")
    if body.get("type") in _ACTION_TYPES:
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            raise RefusedError(400, f"{body['type']} whose actions is not a list of objects")
    if body.get("type") in _INTERACTIONS:
        for part in _OBJECTS:
            if body.get(part) is not None and not isinstance(body[part], dict):
                raise RefusedError(400, f"{body['type']} whose {part} is not an object")


def guarded(handler: WSGIApp, secret: str | None) -> WSGIApp:
    """`handler` (Bolt's) behind the checks; every request logs under a correlation id of its own."""

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        token = CORRELATION.set(uuid.uuid4().hex[:16])  # never the id of a request this thread served before
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length > 0 else b""
            environ["wsgi.input"] = io.BytesIO(raw)
            if secret is None or _ssl_check(raw):  # Bolt answers Slack's SSL check before any signature
                return list(handler(environ, start_response))
            try:
                body = checked_body(
                    raw,
                    str(environ.get("CONTENT_TYPE") or ""),
                    str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or ""),
                    str(environ.get("HTTP_X_SLACK_SIGNATURE") or ""),
                    secret,
                )
            except RefusedError as refused:
                return _refuse(start_response, refused, len(raw))
            CORRELATION.set(correlation_for(body))
            return list(handler(environ, start_response))  # consumed here, under this request's id
        finally:
            CORRELATION.reset(token)

    return application


def _ssl_check(raw: bytes) -> bool:
    """Slack's SSL check (a form with ssl_check=1), which Bolt answers before verifying signatures."""
    form = dict(parse_qsl(raw.decode("utf-8", errors="replace")))
    return form.get("ssl_check") == "1" and "payload" not in raw.decode("utf-8", errors="replace")


def _refuse(start_response: StartResponse, refused: RefusedError, size: int) -> list[bytes]:
    log.warning("slack request refused status=%d bytes=%d reason=%s", refused.status, size, refused.reason)
    data = json.dumps({"error": "invalid request" if refused.status == 401 else refused.reason}).encode()
    phrase = "Unauthorized" if refused.status == 401 else "Bad Request"
    start_response(
        f"{refused.status} {phrase}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]
