"""/readyz says what is not ready and why; /metrics counts Slack API failures; in Socket Mode the HTTP
server serves probes but never the (unverified) /slack/events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import Settings
from bot.metrics import REGISTRY
from bot.runtime.health import Readiness
from bot.slack.app import web_client
from bot.wiring import Services
from tests.servers import chroma_server, free_port, http
from tests.slackbot import SECRET, build_test_app, serving
from tests.support.slack import FakeSlack, event_body


@contextmanager
def _serving(services: Services, slack: FakeSlack, **app_settings: object) -> Iterator[str]:
    """Steward's HTTP server on loopback with readiness checks; yields its base URL."""
    app = build_test_app(services, slack, slack_signing_secret=SecretStr(SECRET), **app_settings)
    client = WebClient(token="xoxb-test", base_url=slack.api_url)
    with serving(app, readiness=Readiness(services, client).check) as base:
        yield base


def test_ready_when_the_database_index_and_token_work(services: Services) -> None:
    with FakeSlack() as slack, _serving(services, slack) as base:
        status, body = http(f"{base}/readyz")
    assert status == 200
    report = json.loads(body)
    assert report["status"] == "ready"
    assert report["checks"]["database"] == "ok" and report["checks"]["slack_token"] == "ok"
    assert report["checks"]["index"].startswith("ok: ") and "chunks" in report["checks"]["index"]


def test_an_empty_index_is_ready_and_says_so(make_services: Callable[..., Services]) -> None:
    ready, checks = Readiness(make_services()).check()
    assert ready and checks["index"] == "ok: empty (run `steward ingest`)"


def test_a_database_that_is_down_is_not_ready_and_named(tmp_path: Path) -> None:
    """Services as `steward serve` builds them before start-up has opened anything (the `make_services`
    fixture builds the answer service at once, which opens the catalog: here, the same database)."""
    url = f"postgresql+psycopg://steward:s3cret@127.0.0.1:{free_port()}/steward"
    services = Services(Settings(data_dir=tmp_path / "data", database_url=url))
    ready, checks = Readiness(services).check()
    services.close()
    assert not ready
    assert checks["database"].startswith("failed: postgresql+psycopg://steward:***@127.0.0.1:")
    assert "s3cret" not in json.dumps(checks)


@pytest.mark.slow
def test_a_chroma_server_that_is_down_is_not_ready(
    make_services: Callable[..., Services], small_kb: Path, tmp_path: Path
) -> None:
    with chroma_server(tmp_path / "chroma-server") as url:
        services = make_services(chroma_url=url)
        services.ingestor.run([small_kb])
        assert Readiness(services).check()[0]
    ready, checks = Readiness(services).check()
    assert not ready and checks["index"].startswith("failed: ") and checks["database"] == "ok"


def test_a_rejected_token_is_not_ready_and_auth_test_is_not_called_at_every_probe(services: Services) -> None:
    with FakeSlack() as slack:
        slack.fail("auth.test", status=200, times=1, error="token_revoked")
        clock = iter([0.0, 5.0, 11.0, 30.0, 80.0])
        readiness = Readiness(
            services, WebClient(token="xoxb-test", base_url=slack.api_url), clock=lambda: next(clock)
        )
        ready, checks = readiness.check()
        assert (
            not ready
            and checks["slack_token"] == "failed: Slack rejected the token (auth.test: token_revoked)"
        )
        assert not readiness.check()[0]  # 5 s later: the failure is kept (10 s)
        assert readiness.check()[0]  # 11 s: checked again, now accepted
        assert readiness.check()[0]  # 30 s: the success is kept (60 s)
        assert readiness.check()[0]  # 80 s: checked again
        assert len(slack.calls("auth.test")) == 3


def test_slack_unreachable_or_failing_is_reported_but_keeps_the_replica_ready(services: Services) -> None:
    """Slack's outage is every replica's: only a rejected token takes a replica out of the load balancer."""
    with FakeSlack() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)  # no retry handlers: one call
        slack.fail("auth.test", status=503, times=1)
        ready, checks = Readiness(services, client).check()
        assert ready and checks["slack_token"] == "unknown: the Slack Web API answered HTTP 503", checks
        slack.fail("auth.test", status=200, times=1, error="service_unavailable")
        ready, checks = Readiness(services, client).check()
        assert ready and checks["slack_token"].startswith("unknown: "), checks
        port = slack.port
    ready, checks = Readiness(
        services, WebClient(token="x", base_url=f"http://127.0.0.1:{port}/api/")
    ).check()
    assert ready and checks["slack_token"].startswith("unknown: cannot reach the Slack Web API"), checks


def test_slack_api_errors_are_counted_by_method_and_code(tmp_path: Path) -> None:
    def errors(method: str, code: str) -> float:
        value = REGISTRY.get_sample_value("steward_slack_api_errors_total", {"method": method, "error": code})
        return value or 0.0

    with FakeSlack() as slack:
        client = web_client(
            Settings(slack_bot_token=SecretStr("xoxb-test"), slack_api_url=slack.api_url, data_dir=tmp_path)  # type: ignore[call-arg]
        )
        before = errors("chat.postMessage", "channel_not_found")
        slack.fail("chat.postMessage", status=200, times=1, error="channel_not_found")
        with pytest.raises(SlackApiError):
            client.chat_postMessage(channel="CNOPE", text="hello")
        assert errors("chat.postMessage", "channel_not_found") == before + 1
        server_errors = errors("chat.postMessage", "http_503")
        slack.fail("chat.postMessage", status=503, times=1)
        client.chat_postMessage(channel="CGENERAL", text="retried after a 503")
        assert errors("chat.postMessage", "http_503") == server_errors + 1

        def all_errors() -> float:
            return sum(
                sample.value
                for metric in REGISTRY.collect()
                if metric.name == "steward_slack_api_errors"
                for sample in metric.samples
                if sample.name.endswith("_total")
            )

        counted = all_errors()
        client.auth_test()
        client.chat_postMessage(channel="CGENERAL", text="a call that works is not an error")
        assert all_errors() == counted


def test_socket_mode_serves_probes_but_not_slack_events(services: Services) -> None:
    """Without signature checks (Socket Mode), a forged event over HTTP must reach nothing."""
    with FakeSlack() as slack, _serving(services, slack, slack_app_token=SecretStr("xapp-test")) as base:
        body = event_body(
            {"type": "app_mention", "channel": "C1", "user": "U1", "ts": "1.0", "text": "hi"}, "Ev1"
        )
        status, _reply = http(f"{base}/slack/events", body, {"Content-Type": "application/json"})
        assert status == 404
        assert http(f"{base}/healthz")[0] == 200 and http(f"{base}/metrics")[0] == 200
        assert not slack.calls("chat.postMessage")
