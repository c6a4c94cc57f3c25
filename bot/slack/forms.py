"""Slash commands whose words contain "payload", read as the commands they are.

Bolt (slack_bolt 1.x, `request.internals.parse_body`) reads any form body that contains the text
`payload` as an interaction's `payload=` field; a slash command has no such field, so its body becomes
`{}` and no listener sees it. `/steward ask why is the payload too large?`, or any command typed in a
channel named `#payload-team`, was acknowledged and then silently dropped. `FormRequest` reads such a
body as the form it is, also in the copy Bolt makes for lazy listeners.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.context import BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context
from slack_bolt.response import BoltResponse


class FormRequest(BoltRequest):
    """A BoltRequest that reads a form without a `payload` field as that form."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raw = self.raw_body
        if self.mode != "http" or not raw or raw.startswith("{") or self.content_type == "application/json":
            return
        if "payload" in raw and not self.body:
            fields = dict(parse_qsl(raw, keep_blank_values=True))
            if "payload" not in fields:
                self.body = fields
                self.context = build_context(BoltContext(dict(self.context)), fields)

    def to_copyable(self) -> BoltRequest:
        """The copy lazy listeners get, read the same way."""
        body: str | dict[str, Any] = self.raw_body if self.mode == "http" else self.body
        return FormRequest(
            body=body,
            query=self.query,
            headers=self.headers,
            context=self.context.to_copyable(),
            mode=self.mode,
        )


class FormRequestHandler(SlackRequestHandler):
    """Bolt's WSGI handler, dispatching FormRequests."""

    def dispatch(self, request: WsgiHttpRequest) -> BoltResponse:
        """As Bolt's, with the form read right."""
        return self.app.dispatch(
            FormRequest(body=request.get_body(), query=request.query_string, headers=request.get_headers())
        )
