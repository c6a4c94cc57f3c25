"""Malformed requests at /slack/events: 401 or 400 (never 500), counted in /metrics, one log line without a
traceback, under a correlation id of their own (never an earlier request's)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.types import StartResponse

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.logs import configure
from bot.metrics import REGISTRY
from bot.runtime.http import metered
from bot.wiring import Services
from tests.servers import http
from tests.slackbot import SECRET, build_test_app, serving
from tests.support.slack import FakeSlack, event_body, form_body, sign

EARLIER = "EvEARLIER0001"  # the event delivered just before each malformed request, on the same thread
JSON, FORM = "application/json", "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Malformed:
    """A request Slack would never send, how it is sent, and what it must get."""

    body: bytes
    content_type: str
    headers: Callable[[bytes], dict[str, str]]
    status: int
    kind: str  # its label in steward_slack_requests_total


def _signed(body: bytes) -> dict[str, str]:
    return sign(SECRET, body)


def _stamped_soon(body: bytes) -> dict[str, str]:
    """A non-numeric timestamp: anyone can send it, no secret needed."""
    return {**sign(SECRET, body), "X-Slack-Request-Timestamp": "soon"}


_BLOCK_ACTIONS = {
    "type": "block_actions",
    "user": {"id": "UASKER", "username": "asker"},
    "team": {"id": "T0FAKE"},
    "api_app_id": "A0FAKE",
    "trigger_id": "trigger-malformed",
    "channel": {"id": "CGENERAL"},
    "actions": "steward_feedback_helpful",
}

CASES = {
    "non-numeric timestamp": Malformed(
        event_body({"type": "app_mention", "channel": "CGENERAL", "user": "U1", "ts": "1.0"}, "EvSTAMP"),
        JSON,
        _stamped_soon,
        401,
        "event",
    ),
    "signed body that is not JSON": Malformed(
        b'{"type": "event_callback", "event": {', JSON, _signed, 400, "event"
    ),
    "payload that is not JSON": Malformed(b"payload=%7Bnot+json", FORM, _signed, 400, "interaction"),
    "actions that is not a list": Malformed(form_body(_BLOCK_ACTIONS), FORM, _signed, 400, "interaction"),
}


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """The server's log as `steward serve` writes it (JSON lines, its levels), into a buffer."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("slack_bolt", "slack_sdk", "steward.bolt")}
    stream = io.StringIO()
    configure("json", stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)


def _requests(base: str, kind: str, status: int) -> float:
    """steward_slack_requests_total{kind, status}, read from /metrics over HTTP."""
    code, text = http(f"{base}/metrics")
    assert code == 200
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "steward_slack_requests_total" and sample.labels == {
                "kind": kind,
                "status": str(status),
            }:
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_a_malformed_request_is_refused_counted_and_logged_once(
    make_services: Callable[..., Services], server_log: io.StringIO, case: Malformed
) -> None:
    """401/400 (not 500), counted by kind and status, one log line, no traceback, its own correlation id."""
    with FakeSlack() as slack:
        app = build_test_app(make_services(), slack, slack_signing_secret=SecretStr(SECRET))
        with serving(app, threads=1) as base:  # one thread: the earlier event's context is the one reused
            url = f"{base}/slack/events"
            earlier = event_body(
                {"type": "message", "channel": "CGENERAL", "user": "U1", "text": "hi", "ts": "1.0"}, EARLIER
            )
            assert http(url, earlier, {"Content-Type": JSON, **_signed(earlier)})[0] == 200
            counted = _requests(base, case.kind, case.status)
            written = len(server_log.getvalue())
            status, _reply = http(
                url, case.body, {"Content-Type": case.content_type, **case.headers(case.body)}
            )
            logged = server_log.getvalue()[written:]
            assert status == case.status, logged
            assert _requests(base, case.kind, case.status) == counted + 1
    lines = [json.loads(line) for line in logged.splitlines()]
    assert len(lines) == 1, logged
    (line,) = lines
    assert "exception" not in line and "Traceback" not in logged
    assert line["correlation_id"] and line["correlation_id"] != EARLIER
    assert str(case.status) in line["message"]


def test_a_request_the_app_fails_on_is_still_counted() -> None:
    """An unexpected exception under /slack/events is counted as a 500 (the server answers it) and raised."""

    def failing(_environ: dict[str, Any], _start: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("a bug")

    def count() -> float:
        value = REGISTRY.get_sample_value("steward_slack_requests_total", {"kind": "event", "status": "500"})
        return value or 0.0

    before = count()
    body = b'{"type": "event_callback"}'
    environ = {"CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    with pytest.raises(RuntimeError):
        metered(failing)(environ, lambda status, headers, exc_info=None: lambda data: None)
    assert count() == before + 1
