"""Time in tests: services read the test's clock, and `tests.clock.at` really moves the machine's clock."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.actions.models import ActionRequest, Actor
from bot.wiring import Services
from tests.clock.at import DEFAULT_LIBRARY, check_clock, faked_environment
from tests.conftest import ROOT
from tests.support.clock import BERLIN, SATURDAY_NOON, TUESDAY_NOON, RunningClock, starter_policies

AT_BERLIN = [sys.executable, "-m", "tests.clock.at"]
PROD_RETRAIN = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"})
needs_libfaketime = pytest.mark.skipif(
    not DEFAULT_LIBRARY.is_file(), reason="libfaketime is not built (make test builds it)"
)


@pytest.mark.parametrize(("start", "outcome"), [(TUESDAY_NOON, "require_approval"), (SATURDAY_NOON, "deny")])
def test_services_decide_with_the_clock_they_are_given(
    make_services: Callable[..., Services], tmp_path: Path, start: float, outcome: str
) -> None:
    """The approvals of Services read the injected clock: the freeze holds at its Saturday, not on Tuesday."""
    services = make_services(
        policies_dir=starter_policies(tmp_path / "policies", freeze=True), clock=RunningClock(start)
    )
    _view, decision = services.approvals.submit(PROD_RETRAIN, Actor(user_id="U0000SRE01", channel="COPS"))
    assert decision.outcome == outcome


def test_starter_policies_without_the_freeze_leave_only_the_freeze_out(tmp_path: Path) -> None:
    """The copy for replicas drops the freeze file and nothing else."""
    copy = starter_policies(tmp_path / "policies", freeze=False)
    assert sorted(p.name for p in (ROOT / "policies").iterdir() if p.name != "20-freeze.yaml") == sorted(
        p.name for p in copy.iterdir()
    )


def test_the_running_clock_starts_where_it_is_told_and_runs_on() -> None:
    """A running clock reads its start, then later times, never the machine's date."""
    clock = RunningClock(SATURDAY_NOON)
    first, second = clock(), clock()
    assert SATURDAY_NOON <= first <= second < SATURDAY_NOON + 60


def test_the_faked_environment_moves_the_clock_by_the_offset_to_the_wanted_time() -> None:
    """The offset is the wanted time minus now, and the monotonic clock stays real."""
    when = dt.datetime(2026, 12, 12, 12, 0, tzinfo=BERLIN)
    env = faked_environment(when, Path("/lib/faketime.so"), now=when.timestamp() - 3600)
    assert env["FAKETIME"] == "+3600s" and env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"
    assert env["LD_PRELOAD"].split()[0] == "/lib/faketime.so"


def test_a_clock_that_did_not_move_is_refused() -> None:
    """Without libfaketime preloaded the check fails, naming the build script, instead of running."""
    when = dt.datetime(2001, 1, 6, 12, 0, tzinfo=BERLIN)  # no machine running this test is at that time
    unfaked = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}
    with pytest.raises(SystemExit, match=r"build-libfaketime\.sh"):
        check_clock(unfaked, when)


@needs_libfaketime
def test_a_command_and_its_children_run_at_the_chosen_berlin_time() -> None:
    """`tests.clock.at` moves the clock of the command and of the processes it starts."""
    child = "import subprocess, sys, time; print(time.time()); print(subprocess.run(['date', '+%s'], capture_output=True, text=True).stdout)"  # noqa: E501
    done = subprocess.run(
        # as the Makefile writes it: the zone after the time, then the command after --
        [*AT_BERLIN, "2026-12-12 12:00", "--zone", "Europe/Berlin", "--", sys.executable, "-c", child],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    wanted = dt.datetime(2026, 12, 12, 11, 0, tzinfo=dt.UTC).timestamp()
    readings = [float(line) for line in done.stdout.splitlines()[1:] if line.strip()]
    assert len(readings) == 2 and all(abs(reading - wanted) < 60 for reading in readings), done.stdout


def test_a_bad_time_is_refused_with_an_example() -> None:
    """A time that is not a date and time says what to write."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.clock.at", "saturday", "--", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "is not a date and time such as '2026-12-12 12:00'" in done.stderr
