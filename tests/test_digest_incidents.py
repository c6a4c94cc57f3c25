"""The incident digest: Alertmanager's webhook (real HTTP, bearer token), incidents opened and resolved
by its alerts, and the digest of a period."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.incidents.alertmanager import AlertReceiver
from bot.incidents.digest import gather, incident_runbooks, render_text
from bot.incidents.records import AlertUpdate, IncidentStore
from bot.wiring import Services
from tests import alertmanager_bodies as bodies
from tests.slackbot import CHANNEL, EXPERT, SECRET, USER, RunningBot, build_test_app, serving
from tests.support.records import migrated_engine
from tests.support.slack import FakeSlack

T0 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
TOKEN = "alertmanager-test-token"


def _alert(
    name: str,
    starts: dt.datetime,
    ends: dt.datetime | None = None,
    *,
    instance: str = "x:9100",
    description: str = "p99 latency above 300 ms for 10 minutes",
    runbook_url: str | None = "https://runbooks.example.com/latency",
) -> dict[str, object]:
    """One alert as Alertmanager v0.27 sends it (tests/alertmanager_bodies.py): firing until it ends."""
    labels = {"alertname": name, "severity": "critical", "service": "fraud-scorer", "instance": instance}
    annotations = {"summary": f"{name} on fraud-scorer", "description": description}
    if runbook_url:
        annotations["runbook_url"] = runbook_url
    return bodies.alert(labels, starts, ends, annotations)


def _notification(*alerts: dict[str, object], truncated: int = 0) -> bytes:
    return bodies.encode(bodies.message(alerts, truncated=truncated))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[IncidentStore]:
    engine = migrated_engine(tmp_path / "state.db")
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
    latency = _alert("InferenceLatencyHigh", T0)
    drift = _alert("FeatureDriftHigh", T0 + dt.timedelta(minutes=3))
    assert _post(hook, _notification(latency, drift)) == (
        200,
        {"received": 2, "rejected": [], "truncated": 0},
    )
    assert _post(hook, _notification(latency))[1]["received"] == 1  # repeated: the same incident
    ended = T0 + dt.timedelta(minutes=42)
    assert _post(hook, _notification(_alert("InferenceLatencyHigh", T0, ended)))[0] == 200
    found = {i.title: i for i in store.in_period(T0.timestamp(), (T0 + dt.timedelta(days=1)).timestamp())}
    assert set(found) == {
        "InferenceLatencyHigh: InferenceLatencyHigh on fraud-scorer",
        "FeatureDriftHigh: FeatureDriftHigh on fraud-scorer",
    }
    latency_incident = found["InferenceLatencyHigh: InferenceLatencyHigh on fraud-scorer"]
    assert latency_incident.status == "resolved" and latency_incident.resolved_at == ended.timestamp()
    assert latency_incident.severity == "critical" and latency_incident.service == "fraud-scorer"


def test_an_alert_that_fires_again_is_a_new_episode(hook: str, store: IncidentStore) -> None:
    """Fire, resolve, fire again (same labels, so the same fingerprint): the digest shows the alert firing
    again, and the time to resolve is the median of the episodes (12 min, not 26)."""

    def minutes(n: int) -> dt.datetime:
        return T0 + dt.timedelta(minutes=n)

    for body in (
        _notification(_alert("InferenceLatencyHigh", minutes(0))),
        _notification(_alert("FeatureDriftHigh", minutes(10))),
        _notification(_alert("FeatureDriftHigh", minutes(10), minutes(22))),  # 12 min
        _notification(_alert("InferenceLatencyHigh", minutes(0), minutes(40))),  # 40 min
        _notification(_alert("InferenceLatencyHigh", minutes(60))),  # fires again
        _notification(_alert("InferenceLatencyHigh", minutes(60))),  # repeated: the same episode
        _notification(_alert("InferenceLatencyHigh", minutes(60), minutes(65))),  # 5 min
        _notification(_alert("InferenceLatencyHigh", minutes(90))),  # a third time, still firing
    ):
        assert _post(hook, body)[0] == 200
    report = gather(store, T0, T0 + dt.timedelta(hours=3))
    assert report.minutes_to("resolve") == 12.0  # the median of 40, 12 and 5
    latency = [i for i in report.new if i.title.startswith("InferenceLatencyHigh")]
    assert [(i.episode, i.status) for i in latency] == [(1, "resolved"), (2, "resolved"), (3, "open")]
    text = render_text("incidents", report)
    assert (
        "(fired again: episode 3, severity critical, service fraud-scorer, since 2026-11-23 11:30 UTC" in text
    )
    assert "Median time to acknowledge: n/a (no acknowledgements recorded); to resolve: 12 min" in text


def test_a_resolve_that_never_came_ends_the_episode_when_the_alert_fires_anew(store: IncidentStore) -> None:
    """A later startsAt while an episode is open: the open one ended by then (its resolve was missed)."""
    first = AlertUpdate("f1", "DiskFull", "firing", "DiskFull", None, None, T0.timestamp(), None, None, None)
    store.record_alerts([first], T0.timestamp())
    later = T0 + dt.timedelta(hours=1)
    store.record_alerts([replace(first, starts_at=later.timestamp())], later.timestamp())
    store.record_alerts([first], later.timestamp())  # a late copy of the first episode changes nothing
    episodes = store.in_period(0, float("inf"))
    assert [(i.episode, i.status, i.resolved_at) for i in episodes] == [
        (1, "resolved", later.timestamp()),
        (2, "open", None),
    ]


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
    status, reply = AlertReceiver(store, None).receive("Bearer x", _notification())
    assert status == 503 and "STEWARD_ALERTMANAGER_TOKEN" in str(reply["error"])


def test_the_digest_sorts_incidents_and_measures_them(hook: str, store: IncidentStore) -> None:
    """New, ongoing and resolved in the period, time to resolve, the noisiest alerts, the runbooks."""
    before = T0 - dt.timedelta(days=2)
    _post(hook, _notification(_alert("DiskFilling", before)))
    _post(hook, _notification(_alert("InferenceLatencyHigh", T0)))
    _post(hook, _notification(_alert("InferenceLatencyHigh", T0)))
    ended = T0 + dt.timedelta(minutes=30)
    _post(hook, _notification(_alert("InferenceLatencyHigh", T0, ended)))
    report = gather(store, T0 - dt.timedelta(hours=1), T0 + dt.timedelta(days=1))
    assert [i.title.split(":")[0] for i in report.new] == ["InferenceLatencyHigh"]
    assert [i.title.split(":")[0] for i in report.ongoing] == ["DiskFilling"]
    assert [i.title.split(":")[0] for i in report.resolved] == ["InferenceLatencyHigh"]
    assert report.minutes_to("resolve") == 30.0
    text = render_text("incidents", report)
    assert "runbook: https://runbooks.example.com/latency" in text
    assert "Median time to acknowledge: n/a (no acknowledgements recorded); to resolve: 30 min" in text
    assert "InferenceLatencyHigh (2 notifications, 1 alert), DiskFilling (1 notification, 1 alert)" in text


def test_a_section_cut_at_15_says_how_many_more(hook: str, store: IncidentStore) -> None:
    """Eighteen new incidents: fifteen are listed, and the digest says 3 more are not."""
    alerts = [_alert("InferenceLatencyHigh", T0, instance=f"pod-{n}:9100") for n in range(18)]
    assert _post(hook, _notification(*alerts))[1]["received"] == 18
    text = render_text("incidents", gather(store, T0, T0 + dt.timedelta(days=1)))
    assert "New: 18" in text and text.count("\n- #") == 15
    assert "\n- and 3 more\n" in text


def test_noisiest_alerts_count_notifications(hook: str, store: IncidentStore) -> None:
    """Three alerts of one name in each of two notifications: 2 notifications of 3 alerts, not "6"."""
    alerts = [_alert("InferenceLatencyHigh", T0, instance=f"pod-{n}:9100") for n in range(3)]
    _post(hook, _notification(*alerts))
    _post(hook, _notification(*alerts))  # Alertmanager's repeat_interval: the same group again
    report = gather(store, T0, T0 + dt.timedelta(days=1))
    assert [(n.alertname, n.notifications, n.alerts) for n in report.noisiest] == [
        ("InferenceLatencyHigh", 2, 3)
    ]
    text = render_text("incidents", report)
    assert (
        "Noisiest alerts (notifications in which each fired; alerts of that name): "
        "InferenceLatencyHigh (2 notifications, 3 alerts)"
    ) in text


def test_alerts_alertmanager_left_out_are_shown_in_the_digest(hook: str, store: IncidentStore) -> None:
    """truncatedAlerts (max_alerts) is answered, stored and said in the digest, with the group."""
    status, reply = _post(hook, _notification(_alert("InferenceLatencyHigh", T0), truncated=7))
    assert (status, reply["truncated"]) == (200, 7)
    text = render_text("incidents", gather(store, T0, T0 + dt.timedelta(days=1)))
    assert "Not in this digest:\n- 7 alerts were left out by Alertmanager (truncatedAlerts: its " in text
    assert 'in groups {}:{alertname="InferenceLatencyHigh"}' in text


def test_an_incident_gets_a_knowledge_base_runbook_only_when_it_is_close(
    hook: str, store: IncidentStore, services: Services, small_kb: Path
) -> None:
    """Without a runbook_url, the latency alert gets the latency runbook; the disk alert gets none."""
    from tests.conftest import ROOT

    latency_runbook = ROOT / "knowledge" / "runbooks" / "inference-latency-slo-breach.md"
    (small_kb / "runbooks" / latency_runbook.name).write_text(latency_runbook.read_text())
    services.ingestor.run([small_kb])
    latency = _alert(
        "InferenceLatencyHigh", T0, description="p99 latency of fraud-scorer above 300 ms", runbook_url=None
    )
    disk = _alert(
        "NodeDiskFull",
        T0,
        instance="node-3:9100",
        description="Filesystem /var/lib on node-3 has less than 5% space left",
        runbook_url=None,
    )
    _post(hook, _notification(latency, disk))
    report = gather(
        store,
        T0,
        T0 + dt.timedelta(days=1),
        incident_runbooks(lambda: services.retriever, services.settings.runbook_min_similarity),
    )
    text = render_text("incidents", report)
    latency_line, disk_line = (text.split("\n- #")[n] for n in (1, 2))
    assert "InferenceLatencyHigh" in latency_line and "NodeDiskFull" in disk_line
    assert "runbook: Inference latency SLO breach (runbooks/inference-latency-slo-breach.md)" in latency_line
    assert "runbook: no runbook found (no knowledge-base document is close enough)" in disk_line


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
