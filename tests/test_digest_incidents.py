"""The incident digest: Alertmanager's webhook (real HTTP, bearer token), incidents opened and resolved
by its alerts, and the digest of a period."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.digests.alertmanager import AlertReceiver
from bot.digests.incidents import gather, render_text
from bot.store.engine import create_engine
from bot.store.incidents import IncidentStore
from bot.wiring import Services
from tests.fakes.slack_api import FakeSlack
from tests.slackbot import CHANNEL, EXPERT, SECRET, USER, RunningBot, build_test_app, serving

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
TOKEN = "alertmanager-test-token"


def _alert(
    status: str, name: str, fingerprint: str, starts: dt.datetime, ends: dt.datetime | None = None
) -> dict[str, object]:
    """One alert as Alertmanager's webhook documents it."""
    return {
        "status": status,
        "labels": {
            "alertname": name,
            "severity": "critical",
            "service": "fraud-scorer",
            "instance": "x:9100",
        },
        "annotations": {
            "summary": f"{name} on fraud-scorer",
            "description": "p99 latency above 300 ms for 10 minutes",
            "runbook_url": "https://runbooks.example.com/latency",
        },
        "startsAt": starts.isoformat().replace("+00:00", "Z"),
        "endsAt": (ends or dt.datetime(1, 1, 1, tzinfo=dt.UTC)).isoformat().replace("+00:00", "Z"),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
        "fingerprint": fingerprint,
    }


def _notification(status: str, *alerts: dict[str, object]) -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="InferenceLatencyHigh"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "steward",
            "groupLabels": {"alertname": "InferenceLatencyHigh"},
            "commonLabels": {"alertname": "InferenceLatencyHigh"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": list(alerts),
        }
    ).encode()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    engine = create_engine(f"sqlite:///{tmp_path}/state.db")
    yield IncidentStore(engine)
    engine.dispose()


@pytest.fixture
def hook(services: Services, store: IncidentStore) -> Iterator[str]:
    """Steward's HTTP server with the receiver on; yields its /hooks/alertmanager URL."""
    clock = iter(T0.timestamp() + 60 * minute for minute in range(0, 10_000, 5))
    with FakeSlack() as slack:
        app = build_test_app(services, slack, slack_signing_secret=SecretStr(SECRET))
        with serving(app, alerts=AlertReceiver(store, TOKEN, clock=lambda: next(clock))) as base:
            yield f"{base}/hooks/alertmanager"


def _post(
    url: str, body: bytes, token: str | None = TOKEN, method: str = "POST"
) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(
        url, data=body if method == "POST" else None, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_alerts_open_and_resolve_incidents(hook: str, store: IncidentStore) -> None:
    """A firing notification opens one incident per alert; the resolved one closes it at endsAt."""
    latency = _alert("firing", "InferenceLatencyHigh", "a1", T0)
    drift = _alert("firing", "FeatureDriftHigh", "b2", T0 + dt.timedelta(minutes=3))
    assert _post(hook, _notification("firing", latency, drift)) == (200, {"received": 2})
    assert _post(hook, _notification("firing", latency)) == (200, {"received": 1})  # repeated: same incident
    ended = T0 + dt.timedelta(minutes=42)
    assert (
        _post(hook, _notification("resolved", _alert("resolved", "InferenceLatencyHigh", "a1", T0, ended)))[0]
        == 200
    )
    found = {i.title: i for i in store.in_period(T0.timestamp(), (T0 + dt.timedelta(days=1)).timestamp())}
    assert set(found) == {
        "InferenceLatencyHigh: InferenceLatencyHigh on fraud-scorer",
        "FeatureDriftHigh: FeatureDriftHigh on fraud-scorer",
    }
    latency_incident = found["InferenceLatencyHigh: InferenceLatencyHigh on fraud-scorer"]
    assert latency_incident.status == "resolved" and latency_incident.resolved_at == ended.timestamp()
    assert latency_incident.severity == "critical" and latency_incident.service == "fraud-scorer"


@pytest.mark.parametrize(
    ("body", "token", "status", "message"),
    [
        (b"{}", "wrong", 401, "bearer token"),
        (b"{}", None, 401, "bearer token"),
        (b"not json", TOKEN, 400, "not JSON"),
        (b'{"version": "4", "status": "firing"}', TOKEN, 400, "alerts: Field required"),
        (b'{"version": "3", "status": "firing", "alerts": []}', TOKEN, 400, "version '3' is not supported"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    hook: str, body: bytes, token: str | None, status: int, message: str
) -> None:
    """Wrong or missing token: 401; not Alertmanager's JSON: 400 naming the field."""
    code, reply = _post(hook, body, token)
    assert code == status and message in str(reply["error"])


def test_without_a_token_the_receiver_is_off(store: IncidentStore) -> None:
    """No STEWARD_ALERTMANAGER_TOKEN: 503, saying which setting turns it on; nothing is stored."""
    status, reply = AlertReceiver(store, None).receive("Bearer x", _notification("firing"))
    assert status == 503 and "STEWARD_ALERTMANAGER_TOKEN" in str(reply["error"])


def test_the_digest_sorts_incidents_and_measures_them(hook: str, store: IncidentStore) -> None:
    """New, ongoing and resolved in the period, time to resolve, the noisiest alerts, the runbooks."""
    before = T0 - dt.timedelta(days=2)
    _post(hook, _notification("firing", _alert("firing", "DiskFilling", "old", before)))
    _post(hook, _notification("firing", _alert("firing", "InferenceLatencyHigh", "a1", T0)))
    _post(hook, _notification("firing", _alert("firing", "InferenceLatencyHigh", "a1", T0)))
    ended = T0 + dt.timedelta(minutes=30)
    _post(hook, _notification("resolved", _alert("resolved", "InferenceLatencyHigh", "a1", T0, ended)))
    report = gather(store, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
    assert [i.title.split(":")[0] for i in report.new] == ["InferenceLatencyHigh"]
    assert [i.title.split(":")[0] for i in report.ongoing] == ["DiskFilling"]
    assert [i.title.split(":")[0] for i in report.resolved] == ["InferenceLatencyHigh"]
    assert report.minutes_to("resolve") == 30.0
    text = render_text("incidents", report)
    assert "runbook: https://runbooks.example.com/latency" in text
    assert "Median time to acknowledge: n/a (no acknowledgements recorded); to resolve: 30 min" in text
    assert "Noisiest alerts: InferenceLatencyHigh (" in text


def test_a_quiet_day_is_one_line(store: IncidentStore) -> None:
    """No incidents and no alerts: "all quiet"."""
    report = gather(store, T0, T0 + dt.timedelta(days=1))
    assert (
        render_text("incidents", report)
        == "incidents (2026-11-23 to 2026-11-24): all quiet: no incidents and no alerts."
    )


def test_steward_digest_run_renders_the_incident_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The starter configuration's incident digest renders from the CLI (an empty database: all quiet)."""
    from bot.cli import main
    from tests.conftest import ROOT

    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(ROOT / "digests.yaml"))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["digest", "run", "incidents", "--at", "2026-11-24"]) == 0
    assert "incidents (2026-11-23 to 2026-11-24): all quiet" in capsys.readouterr().out


def test_an_incident_declared_in_slack_is_acknowledged_and_resolved(bot: RunningBot) -> None:
    """The declaration is posted; the first reply by someone else acknowledges; resolve closes it."""
    assert bot.command('incident open "Checkout latency above SLO" sev=2 service=checkout').status == 200
    bot.settle()
    (root,) = bot.bot_posts(CHANNEL)
    assert "Incident #1" in root["text"] and "(sev 2, service checkout)" in root["text"]
    store = IncidentStore(bot.services.records)
    bot.say("looking at the dashboards", user=USER, thread_ts=root["ts"], mention=False)  # the declarer
    bot.settle()
    assert store.in_period(0, float("inf"))[0].acknowledged_at is None
    bot.say("on it, rolling back the canary", user=EXPERT, thread_ts=root["ts"], mention=False)
    bot.settle()
    assert bot.command("incident resolve 1").status == 200
    bot.settle()
    assert "Incident #1 resolved by" in bot.bot_posts(CHANNEL, root["ts"])[-1]["text"]
    (incident,) = store.in_period(0, float("inf"))
    assert incident.source == "slack" and incident.status == "resolved"
    assert incident.acknowledged_at is not None and incident.resolved_at is not None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('incident open "DB down" sev=9', "sev must be 1 to 5 (got '9')"),
        ("incident open sev=2", "a title is missing"),
        ('incident open "x" sev=2 owner=me', "unknown field(s): owner"),
        ("incident resolve 77", "There is no open incident #77."),
        ("incident", "/steward incident open"),
    ],
)
def test_incident_commands_explain_what_is_wrong(bot: RunningBot, text: str, message: str) -> None:
    """Bad declarations and unknown numbers get a private reply; nothing is posted."""
    assert bot.command(text).status == 200
    bot.settle()
    replies = [str(call.args.get("text")) for call in bot.slack.calls("response_url")]
    assert any(message in reply for reply in replies), replies
    assert bot.bot_posts(CHANNEL) == []
