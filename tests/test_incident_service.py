"""Declared incidents without Slack: the service masks, records, resolves and acknowledges, and returns
plain values the Slack command renders."""

from __future__ import annotations

from pathlib import Path

from bot.incidents.records import IncidentStore
from bot.incidents.service import IncidentService
from tests.support.clock import SettableClock
from tests.support.records import migrated_engine

TOKEN = "xoxb-2048675309-4096123456789-Qw3rTy7UiOp9AsDfGhJkLzXc"


def _service(tmp_path: Path, clock: SettableClock) -> IncidentService:
    return IncidentService(IncidentStore(migrated_engine(tmp_path / "steward.db")), clock=clock)


def test_a_declared_incident_is_stored_masked_and_resolved_with_its_thread(tmp_path: Path) -> None:
    """The title's credential is masked before it is stored (and the kind is returned, to tell the
    declarer); resolving says how long it was open and where its thread is; only once."""
    clock = SettableClock(1_800_000_000.0)
    incidents = _service(tmp_path, clock)
    declared = incidents.declare(f"login broken, token {TOKEN}", "2", "auth", "U1", "C1")
    assert TOKEN not in declared.title and declared.masked and declared.service == "auth"
    (stored,) = incidents.store.in_period(0, float("inf"))
    assert stored.title == declared.title and stored.status == "open"
    incidents.posted(declared.number, "1800000000.000100")
    clock.now += 30 * 60
    resolved = incidents.resolve(declared.number)
    assert resolved is not None
    assert (resolved.minutes, resolved.channel, resolved.thread) == (30.0, "C1", "1800000000.000100")
    assert incidents.resolve(declared.number) is None  # no longer open


def test_the_first_reply_by_someone_else_acknowledges(tmp_path: Path) -> None:
    """The declarer's own reply does not acknowledge; the first by another person does, once."""
    clock = SettableClock(1_800_000_000.0)
    incidents = _service(tmp_path, clock)
    declared = incidents.declare("checkout down", "1", None, "U1", "C1")
    incidents.posted(declared.number, "1800000000.000100")
    assert not incidents.replied("C1", "1800000000.000100", "U1")
    assert incidents.replied("C1", "1800000000.000100", "U2")
    assert not incidents.replied("C1", "1800000000.000100", "U3")
