"""Guarded actions under attack: decisions that change after the request, lapsed approvers, runs that
outlive their process or are still going.

Each test here is the regression test for a defect found by an adversarial pass (issue 14): on the
code before it, the freeze was decided only at submission, an approver who had left the group still
completed the quorum, a live process started a long idempotent run a second time, and the commands
of a killed server kept running.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.actions.approvals import APPROVED, DENIED, EXPIRED, PENDING, SUCCEEDED, ApprovalService
from bot.actions.executors.dispatch import ExecutionResult
from bot.actions.models import ActionRequest, ActionSpec, Actor
from bot.actions.policy.engine import PolicyError, load_policy
from bot.actions.policy.gate import PolicyFolder
from bot.actions.runner import LEASE_SECONDS, execute_once
from bot.store.action_requests import ActionRequestStore, action_requests, approvals, iter_audit
from tests.conftest import ROOT
from tests.databases import StateDatabase
from tests.support.clock import SettableClock

BERLIN = dt.timezone(dt.timedelta(hours=1))  # CET: the starter freeze's wall clock in November
FRIDAY_1659 = dt.datetime(2026, 11, 27, 16, 59, tzinfo=BERLIN).timestamp()
FRIDAY_1700 = dt.datetime(2026, 11, 27, 17, 0, 1, tzinfo=BERLIN).timestamp()
TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()
REQUESTER, MLP2, MLP3, SRE1 = "U0000MLP01", "U0000MLP02", "U0000MLP03", "U0000SRE01"
PROD_PROMOTION = ActionRequest(
    action="promote-model", params={"model": "fraud-scorer", "version": 13, "env": "prod"}
)


class Groups:
    """Slack user groups as the resolver sees them; tests change membership between clicks."""

    def __init__(self, members: dict[str, set[str]]) -> None:
        self.members = members

    def __call__(self, group_id: str) -> frozenset[str]:
        return frozenset(self.members.get(group_id, set()))


class Runs:
    """An executor that records each run (and can be held open until released)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def __call__(self, _action: ActionSpec, _params: Mapping[str, Any], request_id: str) -> ExecutionResult:
        self.calls.append(request_id)
        self.started.set()
        assert self.release.wait(60), "the test never released the run"
        return ExecutionResult(ok=True, summary="done", output="", duration_seconds=0.0, attempts=1)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    return Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))


@pytest.fixture
def engine(state_db: StateDatabase) -> Engine:
    return state_db.migrated_engine()


def _service(
    engine: Engine, policies: Path, clock: SettableClock, groups: Groups | None = None
) -> ApprovalService:
    folder = PolicyFolder(policies, resolver=groups) if groups is not None else PolicyFolder(policies)
    return ApprovalService(ActionRequestStore(engine), folder, clock=clock)


def _submit(service: ApprovalService, request: ActionRequest = PROD_PROMOTION) -> str:
    view, _ = service.submit(request, Actor(user_id=REQUESTER, channel="COPS"), thread_ts="1.0")
    return view.request_id


def _submitted(
    engine: Engine, policies: Path, now: float, request: ActionRequest = PROD_PROMOTION
) -> tuple[SettableClock, ApprovalService, str]:
    """A service on a clock set to `now`, and the id of `request` submitted to it."""
    clock = SettableClock(now)
    service = _service(engine, policies, clock)
    return clock, service, _submit(service, request)


def _kinds(engine: Engine, request_id: str) -> list[str]:
    with engine.connect() as connection:
        return [entry["kind"] for entry in iter_audit(connection) if entry["request_id"] == request_id]


def _run(service: ApprovalService, request_id: str, runs: Runs, told: list[str] | None = None) -> Any:
    gate = service.gate()
    return execute_once(
        service, gate, request_id, runs, blocked=lambda _, why: told.append(why) if told is not None else None
    )


# -- item 2: a freeze that begins after the request -------------------------------------------------


def test_an_approval_inside_a_freeze_that_began_after_the_request_is_held(
    engine: Engine, policies: Path
) -> None:
    """Requested Friday 16:59 (before the freeze), approved after 17:00: held, nothing runs."""
    clock, service, request_id = _submitted(engine, policies, FRIDAY_1659)
    assert service.approve(request_id, MLP2).changed
    clock.now = FRIDAY_1700
    result = service.approve(request_id, SRE1)
    assert not result.ready_to_run
    assert "prod-weekend-freeze" in result.message and "Held" in result.message
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and SRE1 not in view.approvers
    runs = Runs()
    assert _run(service, request_id, runs) is None and runs.calls == []
    assert "held" in _kinds(engine, request_id)


def test_a_freeze_that_begins_between_the_quorum_and_the_run_stops_the_run(
    engine: Engine, policies: Path
) -> None:
    """Both approvals at 16:59, the run claimed at 17:00:01: not run; the thread is told why; it waits."""
    clock, service, request_id = _submitted(engine, policies, FRIDAY_1659)
    service.approve(request_id, MLP2)
    assert service.approve(request_id, SRE1).ready_to_run
    clock.now = FRIDAY_1700
    runs, told = Runs(), []
    assert _run(service, request_id, runs, told) is None
    assert runs.calls == [] and len(told) == 1 and "prod-weekend-freeze" in told[0]
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and set(view.approvers) == {MLP2, SRE1}
    # Still held while the freeze lasts; the deadline (4 hours) passes long before Monday 08:00.
    clock.now = FRIDAY_1700 + 3600
    assert service.release_held() == []
    clock.now = dt.datetime(2026, 11, 30, 8, 1, tzinfo=BERLIN).timestamp()
    assert service.release_held() == []
    assert service.expire_due() == [request_id]
    view = service.get(request_id)
    assert view is not None and view.status == EXPIRED and runs.calls == []


SHORT_FREEZE = """
rules:
  - name: deploy-window-freeze
    actions: [promote-model]
    when:
      params: {env: prod}
      freeze: {from: fri 17:00, to: fri 17:30, timezone: Europe/Berlin}
    outcome: deny
    reason: The Friday deploy window is closed until 17:30.
"""


def test_a_held_request_runs_when_the_freeze_ends_before_its_deadline(engine: Engine, policies: Path) -> None:
    """Housekeeping releases a held request whose approvals are in once the rule no longer holds."""
    (policies / "20-freeze.yaml").write_text(SHORT_FREEZE)
    clock, service, request_id = _submitted(engine, policies, FRIDAY_1659)
    service.approve(request_id, MLP2)
    service.approve(request_id, SRE1)
    clock.now = FRIDAY_1700
    runs = Runs()
    assert _run(service, request_id, runs) is None
    clock.now = FRIDAY_1700 + 20 * 60  # 17:20: still frozen
    assert service.release_held() == []
    clock.now = FRIDAY_1700 + 31 * 60  # 17:31: the window has closed
    assert service.release_held() == [request_id]
    told: list[str] = []
    assert _run(service, request_id, runs, told) is not None and runs.calls == [request_id], told
    view = service.get(request_id)
    assert view is not None and view.status == SUCCEEDED
    kinds = _kinds(engine, request_id)
    assert kinds[kinds.index("released") :] == ["released", "execution_started", "execution_finished"]


CONTRACTORS_DENIED = """
groups:
  contractors: [S0CONTRACT]
rules:
  - name: no-contractor-promotions
    actions: [promote-model]
    when: {requester_in: [contractors]}
    outcome: deny
    reason: Contractors cannot promote models.
"""


def test_a_rule_that_denies_later_ends_the_request_at_the_run(engine: Engine, policies: Path) -> None:
    """A rule that is not a freeze (the requester joined a denied group) denies at the run claim."""
    (policies / "15-contractors.yaml").write_text(CONTRACTORS_DENIED)
    groups = Groups({"S0CONTRACT": set()})
    clock = SettableClock(TUESDAY)
    service = _service(engine, policies, clock, groups)
    request_id = _submit(service)
    service.approve(request_id, MLP2)
    assert service.approve(request_id, SRE1).ready_to_run
    groups.members["S0CONTRACT"] = {REQUESTER}
    clock.now += 600  # past the resolver's cache
    runs, told = Runs(), []
    assert _run(service, request_id, runs, told) is None and runs.calls == []
    view = service.get(request_id)
    assert view is not None and view.status == DENIED
    assert "no-contractor-promotions" in told[0] and "Denied" in told[0]


# -- item 3: approvers who have since lost the right ------------------------------------------------

SLACK_GROUP_APPROVERS = """
groups:
  release-approvers: [S0RELEASE]
rules:
  - name: promote-prod-release-approvers
    actions: [promote-model]
    when: {params: {env: prod}}
    outcome: require_approval
    approval: {count: 2, groups: [release-approvers], within_minutes: 240}
    reason: Two release approvers.
"""


def _release_policy(policies: Path) -> None:
    (policies / "25-release.yaml").write_text(SLACK_GROUP_APPROVERS)


def test_an_approver_removed_from_the_group_does_not_complete_the_quorum(
    engine: Engine, policies: Path
) -> None:
    """A approves, leaves the Slack group, B approves: A's approval is withdrawn; one more is needed."""
    _release_policy(policies)
    groups = Groups({"S0RELEASE": {MLP2, MLP3, SRE1}})
    clock = SettableClock(TUESDAY)
    service = _service(engine, policies, clock, groups)
    request_id = _submit(service)
    assert service.approve(request_id, MLP2).changed
    groups.members["S0RELEASE"].discard(MLP2)
    clock.now += 600  # past the 5-minute cache of Slack user groups
    result = service.approve(request_id, MLP3)
    assert not result.ready_to_run
    assert "1 more approval" in result.message and MLP2 in result.message
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and view.approvers == (MLP3,)
    assert "approval_lapsed" in _kinds(engine, request_id)
    assert service.approve(request_id, SRE1).ready_to_run


def test_an_approver_removed_after_the_quorum_stops_the_run(engine: Engine, policies: Path) -> None:
    """Quorum reached, then an approver leaves the group before the run: not run, waiting again."""
    _release_policy(policies)
    groups = Groups({"S0RELEASE": {MLP2, MLP3, SRE1}})
    clock = SettableClock(TUESDAY)
    service = _service(engine, policies, clock, groups)
    request_id = _submit(service)
    service.approve(request_id, MLP2)
    assert service.approve(request_id, MLP3).ready_to_run
    groups.members["S0RELEASE"].discard(MLP3)
    clock.now += 600
    runs, told = Runs(), []
    assert _run(service, request_id, runs, told) is None and runs.calls == []
    assert "1 of the 2 approval(s)" in told[0] and MLP3 in told[0]
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and view.approvers == (MLP2,)
    assert service.approve(request_id, SRE1).ready_to_run
    assert _run(service, request_id, runs) is not None and len(runs.calls) == 1


def test_a_removed_approver_cannot_approve_again(engine: Engine, policies: Path) -> None:
    """The withdrawn approver's new click is refused like any non-member's."""
    _release_policy(policies)
    groups = Groups({"S0RELEASE": {MLP2, MLP3}})
    clock = SettableClock(TUESDAY)
    service = _service(engine, policies, clock, groups)
    request_id = _submit(service)
    service.approve(request_id, MLP2)
    groups.members["S0RELEASE"].discard(MLP2)
    clock.now += 600
    service.approve(request_id, MLP3)
    again = service.approve(request_id, MLP2)
    assert not again.changed and not again.ready_to_run
    view = service.get(request_id)
    assert view is not None and view.status == PENDING


# -- item 6: leases, not a fixed age ----------------------------------------------------------------


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _heartbeat_at(engine: Engine, request_id: str) -> float | None:
    with engine.connect() as connection:
        row = connection.execute(
            action_requests.select().where(action_requests.c.request_id == request_id)
        ).first()
    assert row is not None
    value = row._mapping["heartbeat_at"]
    return None if value is None else float(value)


STAGING_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 3, "env": "staging"}
)


def test_a_long_run_of_a_live_process_is_never_started_twice(engine: Engine, policies: Path) -> None:
    """An idempotent run still going after 15 minutes renews its lease: recovery leaves it alone."""
    clock, service, request_id = _submitted(engine, policies, TUESDAY, STAGING_ROLLBACK)
    runs = Runs()
    runs.release.clear()
    results: list[Any] = []
    worker = threading.Thread(
        target=lambda: results.append(
            execute_once(service, service.gate(), request_id, runs, heartbeat_seconds=0.02)
        )
    )
    worker.start()
    assert runs.started.wait(20)
    clock.now += 16 * 60  # the run has been going for 16 minutes
    _wait_for(lambda: _heartbeat_at(engine, request_id) == clock.now, "the run's heartbeat")
    assert service.recover_interrupted(LEASE_SECONDS) == []
    runs.release.set()
    worker.join(20)
    assert results and results[0] is not None and runs.calls == [request_id]
    view = service.get(request_id)
    assert view is not None and view.status == SUCCEEDED


def test_a_run_whose_process_died_is_recovered_once_its_lease_lapses(engine: Engine, policies: Path) -> None:
    """A claimed run that nobody renews (its process died) is interrupted after the lease, not before."""
    clock, service, request_id = _submitted(engine, policies, TUESDAY, STAGING_ROLLBACK)
    assert service.claim(request_id).claimed  # ... and then the process died
    clock.now += LEASE_SECONDS - 1
    assert service.recover_interrupted(LEASE_SECONDS) == []
    clock.now += 2
    assert service.recover_interrupted(LEASE_SECONDS) == [(request_id, APPROVED)]


GROUP_SCRIPT = """
import sys
from bot.actions.executors.dispatch import _run_program
from tests.support.clock import SettableClock
pids = sys.argv[1]
argv = ["sh", "-c", f"sleep 300 & echo $! > {pids}; sleep 300"]
_run_program("spawner", argv, {"PATH": "/usr/bin:/bin"}, 600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux only")
def test_the_commands_of_a_killed_server_die_with_it(tmp_path: Path) -> None:
    """kill -9 of the process running a command: the command and the process it started are killed."""
    pids = tmp_path / "pids"
    server = subprocess.Popen(
        [sys.executable, "-c", GROUP_SCRIPT, str(pids)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:
        _wait_for(lambda: pids.exists() and pids.read_text().strip() != "", "the command's background child")
        grandchild = int(pids.read_text())
        assert _alive(grandchild)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(20)
    _wait_for(lambda: not _alive(grandchild), "the killed server's command to die")


def test_an_executor_timeout_above_the_cap_is_refused_naming_the_field(policies: Path) -> None:
    """Every run ends: a timeout above 15 minutes is a policy error naming file, line and field."""
    catalog = policies / "10-actions.yaml"
    catalog.write_text(catalog.read_text().replace("timeout_seconds: 10", "timeout_seconds: 100000", 1))
    with pytest.raises(PolicyError) as error:
        load_policy(policies)
    assert "10-actions.yaml, line" in str(error.value)
    assert "executor.timeout_seconds" in str(error.value) and "900" in str(error.value)


NOTE_ACTION = """
actions:
  annotate-model:
    description: Attach a note to a registered model.
    risk: low
    idempotent: true
    executor: {kind: webhook, url: "${NOTE_WEBHOOK_URL}", secret_env: ACTIONS_WEBHOOK_SECRET}
    params:
      model: {pattern: "[a-z][a-z0-9-]{1,62}"}
      note: {description: Free text}
rules:
  - name: notes-self-service
    actions: annotate-model
    outcome: allow
    reason: Notes are self-service.
"""


def test_an_interrupted_run_that_carried_a_secret_is_not_run_again_with_the_mask(
    engine: Engine, policies: Path
) -> None:
    """The secret went with the process that died: an idempotent action waits for a person instead."""
    (policies / "50-notes.yaml").write_text(NOTE_ACTION)
    clock = SettableClock(TUESDAY)
    service = _service(engine, policies, clock)
    leaked = ActionRequest(
        action="annotate-model", params={"model": "fraud-scorer", "note": "AKIAIOSFODNN7EXAMPLE"}
    )
    request_id = _submit(service, leaked)
    view = service.get(request_id)
    assert view is not None and view.status == APPROVED and "AKIA" not in str(view.params)
    assert service.claim(request_id).claimed  # ... and then the process died
    clock.now += LEASE_SECONDS + 1
    assert service.recover_interrupted(LEASE_SECONDS) == [(request_id, "needs_attention")]


# -- item 5: only what the audit log authorises runs ------------------------------------------------


def test_a_request_set_to_approved_in_the_database_is_not_run(engine: Engine, policies: Path) -> None:
    """Someone with write access sets `status='approved'` directly: the run claim counts the approvals
    again (none), runs nothing, and the request waits for approval."""
    _clock, service, request_id = _submitted(engine, policies, TUESDAY)
    with engine.begin() as connection:
        connection.execute(
            action_requests.update()
            .where(action_requests.c.request_id == request_id)
            .values(status=APPROVED, required_count=0)
        )
    runs, told = Runs(), []
    assert _run(service, request_id, runs, told) is None and runs.calls == []
    assert "0 of the 2 approval(s)" in told[0]
    view = service.get(request_id)
    assert view is not None and view.status == PENDING


def test_approvals_forged_in_the_database_are_not_enough_to_run(engine: Engine, policies: Path) -> None:
    """Approval rows and `approved` written straight into the tables: the audit log holds no such
    approvals, so the claim runs nothing and hands the request to a person."""
    clock, service, request_id = _submitted(engine, policies, TUESDAY)
    with engine.begin() as connection:
        row = connection.execute(
            action_requests.select().where(action_requests.c.request_id == request_id)
        ).one()
        for approver in (MLP2, SRE1):
            connection.execute(
                approvals.insert().values(
                    request_id=request_id,
                    approver=approver,
                    fingerprint=row._mapping["fingerprint"],
                    decided_at=clock.now,
                )
            )
        connection.execute(
            action_requests.update().where(action_requests.c.request_id == request_id).values(status=APPROVED)
        )
    runs, told = Runs(), []
    assert _run(service, request_id, runs, told) is None and runs.calls == []
    assert "audit log does not authorise" in told[0]
    view = service.get(request_id)
    assert view is not None and view.status == "needs_attention"
    assert _kinds(engine, request_id)[-1] == "run_refused"
