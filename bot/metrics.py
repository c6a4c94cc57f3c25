"""Prometheus metrics of one Steward process, served at `GET /metrics`.

Counters count what this process did; the approval states are read from the state database at each
scrape, so every replica reports the same truth for them. Labels never carry message text, user ids
or parameters: only kinds, outcomes, API method names and Slack's error codes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

log = logging.getLogger("steward.metrics")

REGISTRY = CollectorRegistry()

SLACK_REQUESTS = Counter(
    "steward_slack_requests",
    "HTTP requests from Slack at /slack/events, by kind and response status",
    ["kind", "status"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "steward_slack_ack_seconds",
    "Seconds from a Slack request's arrival to its acknowledgement (the HTTP response)",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)
ANSWERS = Counter(
    "steward_answers", "Answers given, by outcome (answered, abstained)", ["outcome"], registry=REGISTRY
)
FEEDBACK = Counter("steward_feedback", "Feedback on answers, by rating", ["rating"], registry=REGISTRY)
EXECUTIONS = Counter(
    "steward_executions",
    "Guarded-action runs finished by this process, by result",
    ["result"],
    registry=REGISTRY,
)
DIGEST_RUNS = Counter(
    "steward_digest_runs",
    "Scheduled digest fires handled by this process, by outcome (posted, quiet, failed, claimed_elsewhere, "
    "not_claimed)",
    ["digest", "outcome"],
    registry=REGISTRY,
)
SLACK_OTHER_TEAM = Counter(
    "steward_slack_other_team",
    "Commands and interactions refused because they came from another workspace or organization, by kind",
    ["kind"],
    registry=REGISTRY,
)
ALERTMANAGER_REJECTED = Counter(
    "steward_alertmanager_rejected",
    "Alertmanager notifications refused (unauthorized, receiver_off, too_large, not_json, bad_notification) "
    "and alerts refused within a notification (bad_alert), by reason",
    ["reason"],
    registry=REGISTRY,
)
ALERTMANAGER_TRUNCATED = Counter(
    "steward_alertmanager_truncated_alerts",
    "Alerts Alertmanager left out of its notifications (truncatedAlerts: its webhook_config's max_alerts)",
    registry=REGISTRY,
)
SLACK_API_ERRORS = Counter(
    "steward_slack_api_errors",
    "Slack Web API calls that failed, by method and error (Slack's error code or the HTTP status)",
    ["method", "error"],
    registry=REGISTRY,
)
SLACK_RATE_LIMITED = Counter(
    "steward_slack_rate_limited",
    "Slack Web API responses 429 (rate limited; retried after Retry-After)",
    ["method"],
    registry=REGISTRY,
)

API_REQUESTS = Counter(
    "steward_api_requests",
    "Requests to the agent API (/api/v1), by route (method and path template, `unmatched` for any other) "
    "and response status",
    ["route", "status"],
    registry=REGISTRY,
)
API_SECONDS = Histogram(
    "steward_api_seconds",
    "Seconds the agent API took to respond, by route (long-polls included: they last up to their wait)",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)


class ApprovalStates(Collector):
    """`steward_action_requests{state=...}`: requests by state, read from the state database."""

    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "steward_action_requests",
            "Guarded-action requests in the state database, by state",
            labels=["state"],
        )
        try:
            counts = self.counts()
        except Exception as exc:  # a scrape must not fail because the database does; /readyz says so
            log.warning("action request states not read for /metrics error=%s", type(exc).__name__)
            counts = {}
        for state, count in sorted(counts.items()):
            family.add_metric([state], count)
        yield family


_states: ApprovalStates | None = None


def watch_action_requests(counts: Callable[[], dict[str, int]]) -> None:
    """Report request states from `counts` at each scrape (one source per process; the last one wins)."""
    global _states
    if _states is not None:
        REGISTRY.unregister(_states)
    _states = ApprovalStates(counts)
    REGISTRY.register(_states)


def exposition() -> bytes:
    """The registry in Prometheus's text format."""
    return generate_latest(REGISTRY)


def _method(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1] or "unknown"


class CountingRetryHandler(RetryHandler):
    """First in the Web API client's retry handlers: counts 429s and server errors, never retries itself."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=1_000_000)

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = _method(request)
        if response is not None and response.status_code == 429:
            SLACK_RATE_LIMITED.labels(method).inc()
        elif response is not None and response.status_code >= 400:  # every answer passes here, 200s too
            SLACK_API_ERRORS.labels(method, f"http_{response.status_code}").inc()
        elif error is not None:
            SLACK_API_ERRORS.labels(method, type(error).__name__).inc()
        return False


def count_api_error(method: str, response: Any) -> None:
    """A Web API call answered `ok: false` (Slack's error code is the label)."""
    error = response.get("error") if hasattr(response, "get") else None
    SLACK_API_ERRORS.labels(method, str(error or "unknown")).inc()
