"""A digest whose data source fails says which source and why: never a crash, never a silent skip.

The sources here are real and really down: a Chroma server that was stopped after ingesting, and a
PostgreSQL URL on a port where nothing listens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from slack_sdk import WebClient

from bot.cli import main
from bot.digests.cli import SOURCE_FAILED
from bot.digests.config import load_digests
from bot.digests.drift_digest import knowledge_runbooks, render_text, run_drift
from bot.digests.publishing import DigestPublisher
from bot.digests.reports import build_report
from bot.incidents.digest import incident_runbooks
from bot.incidents.records import IncidentStore
from bot.slack.digests import DigestPoster
from bot.slack.pacing import ChannelPacer
from bot.slack.posting import Poster
from bot.store.catalog import Catalog
from bot.store.digests import DigestRuns
from bot.store.engine import create_engine
from bot.wiring import Services
from tests.conftest import ROOT
from tests.servers import chroma_server, free_port
from tests.support.records import migrated_engine, report_records
from tests.support.slack import FakeSlack

AT = dt.date(2026, 11, 5)


def _down_postgres() -> str:
    return f"postgresql+psycopg://steward:s3cret@127.0.0.1:{free_port()}/steward"


@pytest.mark.slow
def test_a_chroma_server_that_is_down_is_named_where_the_runbook_would_be(
    demo: Path, small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """Findings still go out; instead of a runbook, the digest says the knowledge base failed and why."""
    with chroma_server(tmp_path / "chroma-server") as url:
        services = make_services(chroma_url=url)
        services.ingestor.run([small_kb])
    # the server is stopped now
    config = load_digests(demo / "digests.yaml")
    results = run_drift(
        config.digests["model-drift"], AT, demo, find_runbook=knowledge_runbooks(lambda: services.retriever)
    )
    text = render_text("model-drift", results, AT)
    assert "fraud-scorer: DRIFT" in text
    assert "what to do: no runbook named: the knowledge base could not be searched (" in text

    IncidentStore(services.records).declare(
        "Checkout latency above SLO",
        "2",
        "checkout",
        "U1",
        "C1",
        dt.datetime(2026, 11, 4, 9, tzinfo=dt.UTC).timestamp(),
    )
    digest = load_digests(ROOT / "digests.yaml").digests["incidents"]
    text, failed = build_report(
        "incidents",
        digest,
        services.catalog,
        services.report_records,
        AT,
        runbook_for=incident_runbooks(lambda: services.retriever),
    )
    assert failed is None  # the digest is made; only its runbooks are missing
    assert "Checkout latency above SLO" in text
    assert (
        "Runbooks: only those named by the alerts are shown: the knowledge base could not be searched" in text
    )


@pytest.mark.parametrize("name", ["governance", "incidents"])
def test_a_state_database_that_is_down_is_named_in_the_digest(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`steward digest run` prints which database failed and what to check; no traceback, no password."""
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(ROOT / "digests.yaml"))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STEWARD_DATABASE_URL", _down_postgres())
    assert main(["digest", "run", name, "--at", "2026-11-24"]) == SOURCE_FAILED  # a cron job notices
    out, err = capsys.readouterr()
    assert (
        f"{name} (" in out
        and "NOT PRODUCED: cannot reach the state database postgresql+psycopg://steward:***@" in out
    )
    assert "s3cret" not in out + err and "Traceback" not in out + err


def test_a_scheduled_digest_whose_database_fails_is_posted_as_a_failure(tmp_path: Path) -> None:
    """The fire is claimed and posted: the channel learns that today's governance digest failed, and why."""
    runs = DigestRuns(migrated_engine(tmp_path / "runs.db"))
    down = Catalog(_down_postgres())
    with FakeSlack() as slack:
        digests = DigestPoster(
            DigestPublisher(
                config=lambda: load_digests(ROOT / "digests.yaml"),
                runs=runs,
                catalog=lambda: down,
                records=lambda: report_records(runs.engine),
            ),
            Poster(ChannelPacer(50.0)),
        )
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        assert digests.fire(client, "governance", dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC))
        (message,) = slack.messages("C0GOVERN")
    assert message["text"].startswith("governance (2026-11-16 to 2026-11-23): NOT PRODUCED: cannot reach")


def test_a_fire_that_cannot_be_claimed_is_logged_as_not_posted(caplog: pytest.LogCaptureFixture) -> None:
    """Without the database no replica can claim the fire: none posts, and each logs why (no password)."""
    with FakeSlack() as slack:
        digests = DigestPoster(
            DigestPublisher(
                config=lambda: load_digests(ROOT / "digests.yaml"),
                runs=DigestRuns(create_engine(_down_postgres())),
                catalog=lambda: Catalog(_down_postgres()),
                records=lambda: report_records(create_engine(_down_postgres())),
            ),
            Poster(ChannelPacer(50.0)),
        )
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        with caplog.at_level("ERROR", logger="steward.digests"):
            assert not digests.fire(client, "governance", dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC))
        assert slack.messages("C0GOVERN") == []
    (record,) = [r for r in caplog.records if "cannot be claimed" in r.getMessage()]
    assert "digest=governance" in record.getMessage() and "s3cret" not in record.getMessage()
