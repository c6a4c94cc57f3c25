"""The digest publisher without Slack: it claims each fire once, decides what is published, and hands it
to any DigestOutlet (here one that records what it is given)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.digests.config import load_digests
from bot.digests.publishing import DigestPublisher, DriftPost, OutletRefused
from bot.incidents.records import IncidentStore
from bot.store.catalog import Catalog
from bot.store.digests import DigestRuns
from tests.conftest import ROOT
from tests.support.records import migrated_engine, report_records

FIRE = dt.datetime(2026, 11, 24, 8, 30, tzinfo=dt.UTC)  # the incidents digest covers 2026-11-23


@dataclass
class RecordingOutlet:
    """A DigestOutlet that keeps what it is asked to post; `refuse` makes it refuse like Slack."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    drifts: list[tuple[str, DriftPost]] = field(default_factory=list)
    refuse: str | None = None

    def post_drift(self, channel: str, post: DriftPost) -> str:
        self.drifts.append((channel, post))
        return f"drift-{len(self.drifts)}"

    def post_text(self, channel: str, text: str) -> str:
        if self.refuse:
            raise OutletRefused(f"refused: {self.refuse}", self.refuse)
        self.texts.append((channel, text))
        return f"text-{len(self.texts)}"

    def upload_chart(self, channel: str, thread_id: str, model: str, png: bytes, title: str) -> None:
        raise AssertionError("an incident digest has no chart")


@pytest.fixture
def publisher(tmp_path: Path) -> DigestPublisher:
    records = migrated_engine(tmp_path / "steward.db")
    declared = dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp()
    IncidentStore(records).declare("Checkout latency above SLO", "2", "checkout", "U1", "C1", declared)
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    catalog.ensure_schema()
    return DigestPublisher(
        config=lambda: load_digests(ROOT / "digests.yaml"),
        runs=DigestRuns(records),
        catalog=lambda: catalog,
        records=lambda: report_records(records),
    )


def test_a_fire_is_published_once_and_its_outcome_recorded(publisher: DigestPublisher) -> None:
    """The first fire publishes the incident digest's text in its channel; the same fire again is
    another replica's (claimed), so nothing more is published."""
    outlet = RecordingOutlet()
    assert publisher.fire(outlet, "incidents", FIRE)
    assert not publisher.fire(RecordingOutlet(), "incidents", FIRE)
    ((channel, text),) = outlet.texts
    assert channel == "C0INCIDENT" and "Checkout latency above SLO" in text
    (run,) = publisher.runs.runs("incidents")
    assert (run["status"], run["detail"]) == ("posted", "text-1")


def test_a_refused_fire_is_recorded_as_failed_with_the_outlets_reason(publisher: DigestPublisher) -> None:
    """The outlet refuses (say, Slack's not_in_channel): the fire is failed, with why, and not retried."""
    assert publisher.fire(RecordingOutlet(refuse="not_in_channel"), "incidents", FIRE)
    (run,) = publisher.runs.runs("incidents")
    assert run["status"] == "failed" and "not_in_channel" in str(run["detail"])
    assert not publisher.fire(RecordingOutlet(), "incidents", FIRE)
