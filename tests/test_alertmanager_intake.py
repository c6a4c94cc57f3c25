"""Alertmanager's webhook loses nothing: bodies built as Alertmanager v0.27 sends them
(tests/alertmanager_bodies.py), posted over real HTTP to Steward's server.

Alertmanager retries only 5xx answers, so a refused notification is gone: a batch is accepted alert by
alert, large groups fit, and every refusal is answered, logged and counted in /metrics.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bot.config import Settings
from bot.incidents.alertmanager import AlertReceiver, label_fingerprint
from bot.incidents.digest import gather, render_text
from bot.incidents.records import IncidentStore
from bot.wiring import Services
from tests import alertmanager_bodies as bodies
from tests.databases import StateDatabase
from tests.slackbot import SECRET, build_test_app, serving
from tests.support.slack import FakeSlack

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
TOKEN = "alertmanager-test-token"
SMALL_LIMIT = 20_000


@pytest.fixture
def store(state_db: StateDatabase) -> IncidentStore:
    """The incident store on SQLite, then on PostgreSQL (where CI provides one)."""
    return IncidentStore(state_db.migrated_engine())


@pytest.fixture
def serve(make_services: Callable[..., Services], store: IncidentStore) -> Iterator[Callable[[int], str]]:
    """Starts Steward's HTTP server with the receiver on and a body limit; returns its base URL."""
    services = make_services()  # nothing ingested: the receiver needs no knowledge base
    clock = iter(T0.timestamp() + 60 * minute for minute in range(0, 10_000, 5))
    with FakeSlack() as slack, ExitStack() as servers:
        app = build_test_app(services, slack, slack_signing_secret=SecretStr(SECRET))

        def start(max_bytes: int) -> str:
            receiver = AlertReceiver(store, TOKEN, clock=lambda: next(clock), max_bytes=max_bytes)
            return servers.enter_context(serving(app, alerts=receiver))

        yield start


@pytest.fixture
def base(serve: Callable[[int], str]) -> str:
    """The server with the default limit (STEWARD_ALERTMANAGER_MAX_BYTES unset)."""
    return serve(Settings().alertmanager_max_bytes)


def _post(
    base: str, body: bytes, authorization: str | None = f"Bearer {TOKEN}"
) -> tuple[int, dict[str, object]]:
    headers = {
        "Content-Type": "application/json",
        **({"Authorization": authorization} if authorization else {}),
    }
    request = urllib.request.Request(f"{base}/hooks/alertmanager", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _rejected(base: str) -> dict[str, float]:
    """steward_alertmanager_rejected_total by reason, read from /metrics."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "steward_alertmanager_rejected":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels["reason"]] = sample.value
    return counts


def _alert(name: str, instance: str, ends: dt.datetime | None = None, **extra: str) -> dict[str, object]:
    labels = {"alertname": name, "severity": "critical", "instance": instance, **extra}
    return bodies.alert(labels, T0, ends, {"summary": f"{name} on {instance}"})


def test_the_fingerprint_is_prometheus_label_signature() -> None:
    """Steward's fingerprint of a label set (and the test builder's) is Alertmanager's: prometheus/common's
    published signatures (model/signature_test.go), as 16 hexadecimal digits."""
    published = {
        (): 14695981039346656037,
        (("name", "garland, briggs"), ("fear", "love is not enough")): 5799056148416392346,
        (("first-label", "first-label-value"),): 5146282821936882169,
        (("first-label", "first-label-value"), ("second-label", "second-label-value")): 3195800080984914717,
    }
    for pairs, signature in published.items():
        assert label_fingerprint(dict(pairs)) == f"{signature:016x}"
        assert bodies.signature(dict(pairs)) == signature


def test_a_batch_with_a_bad_alert_keeps_the_others(base: str, store: IncidentStore) -> None:
    """One alert too long for the database is refused by name; the valid ones are stored, the one without
    a fingerprint under the fingerprint Alertmanager itself computes (its resolve finds it)."""
    unnamed = _alert("DiskFull", "node-1:9100")
    del unnamed["fingerprint"]
    too_long = _alert("DiskFull", "node-2:9100", severity="s" * 40)
    body = bodies.encode(bodies.message([_alert("DiskFull", "node-0:9100"), unnamed, too_long]))
    status, reply = _post(base, body)
    assert (status, reply["received"]) == (200, 2)
    assert reply["rejected"] == [
        {"index": 2, "error": "alerts.2.labels.severity: longer than 32 characters; shorten it"}
    ]
    resolved = _alert("DiskFull", "node-1:9100", ends=T0 + dt.timedelta(minutes=9))  # with its fingerprint
    assert _post(base, bodies.encode(bodies.message([resolved])))[0] == 200
    found = store.in_period(0, float("inf"))
    assert [(i.title, i.status) for i in found] == [
        ("DiskFull: DiskFull on node-0:9100", "open"),
        ("DiskFull: DiskFull on node-1:9100", "resolved"),
    ]
    assert store.gaps(0, float("inf")).rejected == 1  # the digest says so


def test_a_batch_of_bad_alerts_only_is_refused_naming_each(base: str) -> None:
    """Nothing readable: 400 (Alertmanager logs the answer), each alert named with its field."""
    message = bodies.message([_alert("X", "a"), _alert("X", "b")])
    message["alerts"] = [{**message["alerts"][0], "status": "pending"}, {"labels": {}}]  # not Alertmanager's
    body = bodies.encode(message)
    status, reply = _post(base, body)
    assert status == 400 and str(reply["error"]).startswith(
        "alerts: none of the 2 alerts could be read: "
        "alerts.0.status: Input should be 'firing' or 'resolved'; alerts.1.status: Field required"
    )


def test_a_large_group_fits_the_default_limit(base: str, store: IncidentStore) -> None:
    """1,300 alerts with long annotations (about 5.4 MB) are all received."""
    description = "Filesystem usage above 90%. " * 137
    alerts = [
        bodies.alert(
            {"alertname": "DiskFull", "severity": "warning", "instance": f"node-{n}:9100"},
            T0,
            annotations={"summary": "disk almost full", "description": description},
        )
        for n in range(1300)
    ]
    body = bodies.encode(bodies.message(alerts))
    assert 5_200_000 < len(body) < 5_600_000
    status, reply = _post(base, body)
    assert (status, reply["received"], reply["rejected"]) == (200, 1300, [])
    assert len(store.in_period(0, float("inf"))) == 1300


def test_a_body_over_the_limit_gets_413_stating_its_size(
    serve: Callable[[int], str], caplog: pytest.LogCaptureFixture
) -> None:
    """413 with the body's real size and the setting to raise; logged in one line, counted in /metrics."""
    base = serve(SMALL_LIMIT)
    alerts = [_alert("DiskFull", f"node-{n}:9100") for n in range(100)]
    body = bodies.encode(bodies.message(alerts))
    before = _rejected(base).get("too_large", 0.0)
    with caplog.at_level(logging.WARNING, logger="steward.alertmanager"):
        status, reply = _post(base, body)
    assert status == 413
    assert reply["error"] == (
        f"the body is {len(body):,} bytes; the limit is {SMALL_LIMIT:,} (STEWARD_ALERTMANAGER_MAX_BYTES): "
        "raise it, or set max_alerts in Alertmanager's webhook_config"
    )
    assert _rejected(base).get("too_large", 0.0) == before + 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == "steward.alertmanager"]
    assert "status=413 reason=too_large" in line and "\n" not in line


def test_the_default_body_limit_is_a_documented_setting(
    monkeypatch: pytest.MonkeyPatch, serve: Callable[[int], str]
) -> None:
    """STEWARD_ALERTMANAGER_MAX_BYTES: 16 MiB unless set; a body over it is refused stating its size."""
    assert Settings().alertmanager_max_bytes == 16 * 1024 * 1024
    monkeypatch.setenv("STEWARD_ALERTMANAGER_MAX_BYTES", "1000")
    base = serve(Settings().alertmanager_max_bytes)
    body = bodies.encode(bodies.message([_alert("DiskFull", f"node-{n}:9100") for n in range(10)]))
    assert _post(base, body) == (
        413,
        {
            "error": f"the body is {len(body):,} bytes; the limit is 1,000 (STEWARD_ALERTMANAGER_MAX_BYTES): "
            "raise it, or set max_alerts in Alertmanager's webhook_config"
        },
    )


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(base: str, scheme: str) -> None:
    """RFC 7235: the scheme's case does not matter."""
    body = bodies.encode(bodies.message([_alert("DiskFull", "node-0:9100")]))
    assert _post(base, body, f"{scheme} {TOKEN}")[0] == 200


@pytest.mark.parametrize(
    ("authorization", "body", "status", "reason"),
    [
        (f"Basic {TOKEN}", b"{}", 401, "unauthorized"),
        (TOKEN, b"{}", 401, "unauthorized"),  # no scheme
        (f"Bearer {TOKEN}", b"not json", 400, "not_json"),
        (f"Bearer {TOKEN}", b'{"version": "3", "status": "firing", "alerts": []}', 400, "bad_notification"),
        (
            f"Bearer {TOKEN}",
            bodies.encode(bodies.message([_alert("A", "a"), {**_alert("B", "b"), "startsAt": "yesterday"}])),
            200,
            "bad_alert",
        ),
    ],
)
def test_every_rejection_is_logged_and_counted(
    base: str,
    caplog: pytest.LogCaptureFixture,
    authorization: str,
    body: bytes,
    status: int,
    reason: str,
) -> None:
    """Each refused notification or alert: one log line naming the reason, one count in /metrics."""
    before = _rejected(base).get(reason, 0.0)
    with caplog.at_level(logging.WARNING, logger="steward.alertmanager"):
        assert _post(base, body, authorization)[0] == status
    assert _rejected(base).get(reason, 0.0) == before + 1
    lines = [r.getMessage() for r in caplog.records if r.name == "steward.alertmanager"]
    assert len(lines) == 1 and f"reason={reason}" in lines[0], lines
    assert TOKEN not in lines[0]


def test_what_was_refused_is_said_in_the_digest(base: str, store: IncidentStore) -> None:
    """An unreadable alert and a notification refused whole are in the next digest; a request with a wrong
    token is not (anyone can send one)."""
    bad = {**_alert("B", "b"), "startsAt": "yesterday"}
    assert _post(base, bodies.encode(bodies.message([_alert("A", "a"), bad])))[0] == 200
    assert _post(base, b"not json")[0] == 400
    assert _post(base, b"not json", "Bearer wrong")[0] == 401
    text = render_text("incidents", gather(store, T0, T0 + dt.timedelta(days=1)))
    assert text.endswith(
        "Not in this digest:\n"
        "- 1 alert could not be read (Steward's log names each one and the field at fault)\n"
        "- 1 notification was refused whole (not_json: the body is not JSON (expected ident at line 1 "
        "column 2)): their alerts are unknown"
    )
