"""Digests in Slack: a parent message and thread replies, each scheduled fire posted once across replicas."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from slack_sdk import WebClient

from bot.cli import main
from bot.digests.config import load_digests
from bot.digests.publishing import DigestPublisher
from bot.runtime.scheduling import latest_fire, start_scheduler
from bot.slack.digests import DigestPoster
from bot.slack.pacing import ChannelPacer
from bot.slack.payloads import ACTION_DIGEST_REQUEST, BLOCK_PARAM_PREFIX, BLOCK_PICK_ACTION
from bot.slack.posting import Poster
from bot.store.digests import DigestRuns, DriftHistory
from bot.wiring import Services
from tests.conftest import ROOT
from tests.databases import StateDatabase
from tests.slackbot import RunningBot
from tests.support.slack import FakeSlack

BERLIN = ZoneInfo("Europe/Berlin")
FIRE = dt.datetime(2026, 11, 5, 8, 0, tzinfo=BERLIN)  # a Thursday, 08:00: the starter schedule's time


@pytest.fixture
def services(make_services: Callable[..., Services], small_kb: Path) -> Services:
    """Services with the starter policies (for the `bot` fixture)."""
    built = make_services(policies_dir=ROOT / "policies")
    built.ingestor.run([small_kb])
    return built


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fresh local fake Slack."""
    with FakeSlack() as fake:
        yield fake


def _poster(demo: Path, runs: DigestRuns) -> DigestPoster:
    return DigestPoster(
        DigestPublisher(config=lambda: load_digests(demo / "digests.yaml"), runs=runs),
        Poster(ChannelPacer(50.0)),
    )


def _client(slack: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=slack.api_url)


def test_a_fire_posts_a_parent_message_and_one_reply_per_model(
    demo: Path, slack: FakeSlack, state_db: StateDatabase
) -> None:
    """The parent lists each model's verdict; the thread has the columns, windows and runbook."""
    digests = _poster(demo, DigestRuns(state_db.migrated_engine()))
    assert digests.fire(_client(slack), "model-drift", FIRE)
    (parent,) = slack.messages("C0MLOPS")
    assert "model-drift* (2026-11-05): drift digest" in str(parent["blocks"])
    assert ":red_circle: fraud-scorer: DRIFT" in str(parent["blocks"])
    (reply,) = [m for m in slack.messages("C0MLOPS", parent["ts"]) if m["ts"] != parent["ts"]]
    assert "new: crypto_exchange" in str(reply["blocks"]) and "2026-10-29 to 2026-11-04" in str(
        reply["blocks"]
    )
    (run,) = digests.publisher.runs.runs("model-drift")
    assert (
        run["fire_time"] == "2026-11-05T07:00:00Z"
        and run["status"] == "posted"
        and run["detail"] == parent["ts"]
    )
    (chart,) = slack.files()  # the most drifted column's distributions, as a PNG in the thread
    assert chart["channel"] == "C0MLOPS" and chart["thread_ts"] == parent["ts"]
    assert chart["filename"] == "fraud-scorer-drift.png" and chart["content"].startswith(b"\x89PNG")


def test_two_schedulers_on_one_database_post_each_fire_once(
    demo: Path, slack: FakeSlack, state_db: StateDatabase
) -> None:
    """Replicas fire the same schedule at once: one claims and posts, the others do nothing."""
    replicas = [_poster(demo, DigestRuns(state_db.migrated_engine())) for _ in range(4)]
    won: list[bool] = []
    threads = [
        threading.Thread(target=lambda p=p: won.append(p.fire(_client(slack), "model-drift", FIRE)))
        for p in replicas
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False, False, False, True]
    assert len(slack.messages("C0MLOPS")) == 1
    assert replicas[0].fire(
        _client(slack), "model-drift", FIRE + dt.timedelta(days=1)
    )  # the next fire is new
    assert len(slack.messages("C0MLOPS")) == 2


def test_a_quiet_digest_is_one_line_or_nothing(
    demo: Path, slack: FakeSlack, state_db: StateDatabase, tmp_path: Path
) -> None:
    """Before the drift: one "all quiet" line; with when_quiet: skip, no message and a 'quiet' run."""
    digests = _poster(demo, DigestRuns(state_db.migrated_engine()))
    early = dt.datetime(2026, 10, 22, 8, 0, tzinfo=BERLIN)
    digests.fire(_client(slack), "model-drift", early)
    (message,) = slack.messages("C0MLOPS")
    assert "all quiet: no drift in 1 model(s)" in message["text"]
    skipping = tmp_path / "digests.yaml"
    skipping.write_text((demo / "digests.yaml").read_text().replace("when_quiet: say", "when_quiet: skip"))
    (tmp_path / ".steward-demo").symlink_to(demo / ".steward-demo")
    quiet = DigestPoster(
        DigestPublisher(config=lambda: load_digests(skipping), runs=digests.publisher.runs),
        Poster(ChannelPacer(50.0)),
    )
    quiet.fire(_client(slack), "model-drift", early + dt.timedelta(days=1))
    assert len(slack.messages("C0MLOPS")) == 1
    assert [run["status"] for run in digests.publisher.runs.runs("model-drift")] == ["posted", "quiet"]


def test_a_failed_fire_is_recorded_not_retried_by_another_replica(
    demo: Path, slack: FakeSlack, state_db: StateDatabase
) -> None:
    """Slack refuses the channel: the run is 'failed' with the error; the claim stops a second attempt."""
    slack.fail("chat.postMessage", status=200, error="channel_not_found")
    digests = _poster(demo, DigestRuns(state_db.migrated_engine()))
    assert digests.fire(_client(slack), "model-drift", FIRE)
    (run,) = digests.publisher.runs.runs("model-drift")
    assert run["status"] == "failed" and "channel_not_found" in str(run["detail"])
    assert not _poster(demo, DigestRuns(state_db.migrated_engine())).fire(_client(slack), "model-drift", FIRE)


def test_the_next_digest_compares_each_column_with_the_last_one(
    demo: Path, slack: FakeSlack, state_db: StateDatabase
) -> None:
    """Results are stored after posting; the next day's thread says what each column scored before."""
    engine = state_db.migrated_engine()
    digests = DigestPoster(
        DigestPublisher(
            config=lambda: load_digests(demo / "digests.yaml"),
            runs=DigestRuns(engine),
            history=DriftHistory(engine),
        ),
        Poster(ChannelPacer(50.0)),
    )
    digests.fire(_client(slack), "model-drift", FIRE)
    digests.fire(_client(slack), "model-drift", FIRE + dt.timedelta(days=1))
    first, second = slack.messages("C0MLOPS")
    (reply,) = [m for m in slack.messages("C0MLOPS", second["ts"]) if m["ts"] != second["ts"]]
    assert "on 2026-11-05" in str(reply["blocks"]) and "was " in str(reply["blocks"])
    (earlier,) = [m for m in slack.messages("C0MLOPS", first["ts"]) if m["ts"] != first["ts"]]
    assert "was " not in str(earlier["blocks"])  # nothing before the first digest


def test_retrain_opens_the_request_form_with_the_model_filled_in(demo: Path, bot: RunningBot) -> None:
    """The drifting model's thread offers Retrain… / Roll back…: a pre-filled form the person submits."""
    digests = DigestPoster(
        DigestPublisher(
            config=lambda: load_digests(demo / "digests.yaml"),
            runs=DigestRuns(bot.services.records),
            policy=bot.services.policy,
        ),
        Poster(ChannelPacer(50.0)),
    )
    digests.fire(bot.app.bolt.client, "model-drift", FIRE)
    (parent,) = bot.slack.messages("C0MLOPS")
    (reply,) = [m for m in bot.slack.messages("C0MLOPS", parent["ts"]) if m["ts"] != parent["ts"]]
    labels = [e["text"]["text"] for b in reply["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert labels == ["Retrain…", "Roll back…"]
    assert bot.click({**reply, "channel": "C0MLOPS"}, ACTION_DIGEST_REQUEST, user="U0000SRE01").status == 200
    bot.settle()
    form = bot.slack.calls("views.open")[-1].args["view"]
    fields = {b["block_id"]: b["element"] for b in form["blocks"] if b["type"] == "input"}
    assert fields[BLOCK_PICK_ACTION]["initial_option"]["value"] == "retrain-model"
    assert fields[BLOCK_PARAM_PREFIX + "model"]["initial_value"] == "fraud-scorer"
    assert fields[BLOCK_PARAM_PREFIX + "env"]["initial_option"]["value"] == "prod"


def test_the_governance_digest_is_posted_to_its_channel(services: Services, slack: FakeSlack) -> None:
    """The starter governance digest (Mondays) posts its report; long ones continue in the thread."""
    digests = DigestPoster(
        DigestPublisher(
            config=lambda: load_digests(ROOT / "digests.yaml"),
            runs=DigestRuns(services.records),
            catalog=lambda: services.catalog,
            records=lambda: services.report_records,
        ),
        Poster(ChannelPacer(50.0)),
    )
    assert digests.fire(_client(slack), "governance", dt.datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN))
    (message,) = slack.messages("C0GOVERN")
    assert message["text"].startswith("governance (2026-11-16 to 2026-11-23)")


def test_the_fire_time_is_the_schedules_latest_at_or_before_now() -> None:
    """08:00:03 on a weekday is the 08:00 fire; a Monday-only schedule on Tuesday is Monday's."""
    now = dt.datetime(2026, 11, 24, 8, 0, 3, tzinfo=BERLIN)
    assert latest_fire("0 8 * * mon-fri", BERLIN, now) == dt.datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)
    assert latest_fire("0 8 * * mon", BERLIN, now) == dt.datetime(2026, 11, 23, 8, 0, tzinfo=BERLIN)
    assert latest_fire("*/5 * * * *", BERLIN, now) == dt.datetime(2026, 11, 24, 8, 0, tzinfo=BERLIN)


def test_the_scheduler_has_one_job_per_digest_in_its_timezone(
    demo: Path, slack: FakeSlack, tmp_path: Path
) -> None:
    """APScheduler runs the starter digest at 08:00 Berlin time on weekdays; a broken file: nothing."""
    digests = _poster(demo, DigestRuns(StateDatabase(f"sqlite:///{tmp_path}/s.db").migrated_engine()))
    scheduler = start_scheduler(
        lambda name, when: digests.fire(_client(slack), name, when), demo / "digests.yaml", 600
    )
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"model-drift", "governance", "incidents"}
        job = jobs["model-drift"]
        assert job.next_run_time.astimezone(BERLIN).strftime("%H:%M") == "08:00"
        assert job.next_run_time.astimezone(BERLIN).weekday() < 5
        assert job.misfire_grace_time == 600
    finally:
        scheduler.shutdown(wait=False)
    (tmp_path / "broken.yaml").write_text("digests: [")
    assert (
        start_scheduler(
            lambda name, when: digests.fire(_client(slack), name, when), tmp_path / "broken.yaml", 600
        )
        is None
    )


def test_steward_digest_run_post_posts_to_the_channel(
    demo: Path,
    tmp_path: Path,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--post sends it now through the Web API; without a token it says which variable is missing."""
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(demo / "digests.yaml"))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    assert main(["digest", "run", "model-drift", "--at", "2026-11-05", "--post"]) == 1
    assert "--post needs SLACK_BOT_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_API_URL", slack.api_url)
    assert main(["digest", "run", "model-drift", "--at", "2026-11-05", "--post"]) == 0
    assert "posted (message" in capsys.readouterr().out
    assert len(slack.messages("C0MLOPS")) == 1


def test_a_model_with_a_column_not_checked_is_flagged_not_green_and_offers_no_action(tmp_path: Path) -> None:
    """A reference column all blank: the parent shows a warning, never a green "ok"; no Retrain button."""
    from bot.actions.policy.files import load_policy
    from bot.digests.drift_digest import run_drift
    from bot.slack.digests import drift_messages

    (tmp_path / "ref.csv").write_text("amount,country\n" + "".join(f"{i},\n" for i in range(100)))
    (tmp_path / "cur.csv").write_text("amount,country\n" + "".join(f"{i},DE\n" for i in range(100)))
    (tmp_path / "digests.yaml").write_text(
        "digests:\n  d:\n    kind: drift\n    schedule: '0 8 * * *'\n    channel: C1\n    monitors:\n"
        "      - {model: fraud-scorer, reference: {csv: ref.csv}, current: {csv: cur.csv}, numeric: [amount],"
        " categorical: [country]}\n"
    )
    today = FIRE.date()
    results = run_drift(load_digests(tmp_path / "digests.yaml").digests["d"], today, tmp_path)
    parent, (reply,) = drift_messages("d", results, today, "say", load_policy(ROOT / "policies"))
    assert parent is not None
    assert ":warning: fraud-scorer: not checked: 0% of 2 columns drifted, 1 not checked" in str(parent.blocks)
    assert "country: not checked: no values in the reference window" in str(reply.blocks)
    assert all(block["type"] != "actions" for block in reply.blocks)
