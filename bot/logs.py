"""Logs for `steward serve`: one JSON object a line (or plain text), each with the correlation id of the
Slack request or event it belongs to.

The correlation id is Slack's `event_id` for events, else its `trigger_id`, else a fresh id; it is set
when Bolt receives the request and follows the work onto the listener threads (`ContextExecutor`), so
the acknowledgement, the answer and its Web API calls share it. Steward's log lines carry ids, sizes and
timings, never message text, tokens or secrets.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TextIO

from bot.redaction import redact

CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar("steward_correlation", default=None)


def correlation_for(body: dict[str, Any]) -> str:
    """The id that ties a Slack request's log lines together."""
    for key in ("event_id", "trigger_id"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
    return uuid.uuid4().hex[:16]


def correlate(body: dict[str, Any], next: Callable[[], Any]) -> Any:
    """Bolt middleware: the request's correlation id for everything done while handling it."""
    CORRELATION.set(correlation_for(body))
    return next()


class ContextExecutor(ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context (its correlation id included)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        context = contextvars.copy_context()
        return super().submit(context.run, fn, *args, **kwargs)


class RedactingFilter(logging.Filter):
    """Masks secrets and personal data in every record's message and exception before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, correlation id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation = CORRELATION.get()
        if correlation:
            entry["correlation_id"] = correlation
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain text for a terminal, with the correlation id when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        correlation = CORRELATION.get()
        return f"{text} [{correlation}]" if correlation else text


def configure(log_format: str, stream: TextIO | None = None) -> None:
    """Root logging at INFO in `json` or `text` (to stderr, or `stream`); the Slack libraries only warn
    (their DEBUG logs carry payloads), and waitress's queue-depth warnings (normal under a burst) are not
    logged."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("slack_bolt", "slack_sdk", "steward.bolt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
