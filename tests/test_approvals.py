"""Guarded actions from request to result: policy decides, approvers approve, the action runs exactly once."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.actions.approvals import (
    APPROVED,
    CANCELLED,
    DENIED,
    EXPIRED,
    FAILED,
    NEEDS_ATTENTION,
    PENDING,
    REJECTED,
    RUNNING,
    SUCCEEDED,
    ApprovalService,
)
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.actions.runner import execute_once
from bot.store.action_requests import ActionRequestStore, approvals, iter_audit, verify_chain
from bot.store.schema import upgrade
from tests.actions_worker import click_storm
from tests.audit_support import shared_key
from tests.conftest import ROOT
from tests.databases import StateDatabase
from tests.fakes.webhook import WebhookReceiver
from tests.support.clock import SettableClock
from tests.support.records import migrated_engine

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()
FRIDAY_EVENING = dt.datetime(2026, 11, 27, 18, 0, tzinfo=dt.UTC).timestamp()  # 19:00 in Berlin
REQUESTER, MLP1, MLP2, SRE1, OUTSIDER = "U0000MLP01", "U0000MLP02", "U0000MLP03", "U0000SRE01", "UOUTSIDER"
PROD_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 12, "env": "prod"}
)


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private copy of the starter policies (tests may edit it)."""
    return Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))


@pytest.fixture
def database(state_db: StateDatabase) -> tuple[Engine, str, str | None]:
    """(engine, url, schema) of a fresh SQLite file or PostgreSQL schema."""
    return state_db.migrated_engine(), state_db.url, state_db.schema


@pytest.fixture
def clock() -> SettableClock:
    """Tuesday 2026-11-24, 10:00 UTC, unless a test moves it."""
    return SettableClock(TUESDAY)


@pytest.fixture
def service(
    database: tuple[Engine, str, str | None], policies: Path, clock: SettableClock
) -> ApprovalService:
    """The approval service over the starter policies."""
    return ApprovalService(ActionRequestStore(database[0]), PolicyFolder(policies), clock=clock)


def _submit(service: ApprovalService, request: ActionRequest = PROD_ROLLBACK, user: str = REQUESTER) -> str:
    view, _decision = service.submit(request, Actor(user_id=user, channel="COPS"), thread_ts="1.0")
    return view.request_id


def test_staging_is_self_service_and_runs_once(service: ApprovalService) -> None:
    """An allowed request is approved at once; only the first claim may run it."""
    staging = ActionRequest(
        action="rollback-model", params={"model": "fraud-scorer", "version": 3, "env": "staging"}
    )
    view, decision = service.submit(staging, Actor(user_id=OUTSIDER))
    assert decision.outcome == "allow" and view.status == APPROVED
    assert service.claim(view.request_id).claimed is True
    assert service.claim(view.request_id).claimed is False


SECRET_ACTION = """
actions:
  set-gateway-key:
    description: Put a new API key into the LLM gateway.
    risk: high
    executor: {kind: webhook, url: "${KEY_WEBHOOK_URL}", secret_env: ACTIONS_WEBHOOK_SECRET}
    params:
      env: {enum: [staging, prod]}
      key: {secret: true, description: The new key}
rules:
  - name: gateway-key-staging
    actions: set-gateway-key
    when: {params: {env: staging}}
    outcome: allow
    reason: Staging keys are self-service.
  - name: gateway-key-prod
    actions: set-gateway-key
    outcome: require_approval
    approval: {count: 1, groups: [security], within_minutes: 30}
    reason: Production keys need security.
"""


def test_a_secret_parameter_reaches_the_executor_but_is_never_stored(
    service: ApprovalService, policies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Allowed: the run right after submitting gets the key; the database and audit only say [redacted]."""
    (policies / "50-gateway.yaml").write_text(SECRET_ACTION)
    key = "sk-live-4f9a1c2e8b7d"
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("KEY_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("ACTIONS_WEBHOOK_SECRET", "k")
        request = ActionRequest(action="set-gateway-key", params={"env": "staging", "key": key})
        view, decision = service.submit(request, Actor(user_id=OUTSIDER))
        assert decision.outcome == "allow" and view.params["key"] == "[redacted]"
        gate = service.gate()
        result = execute_once(service, gate, view.request_id, secrets={"key": key})
        assert result is not None and result.ok
        (call,) = receiver.requests
    assert json.loads(call.body)["params"]["key"] == key
    with service.engine.connect() as connection:
        stored = [str(row) for row in connection.execute(sa.text("SELECT * FROM action_requests"))]
        audited = [str(entry) for entry in iter_audit(connection)]
    assert key not in " ".join(stored + audited)


def test_a_request_that_must_wait_for_approval_cannot_carry_a_secret(
    service: ApprovalService, policies: Path
) -> None:
    """The key would be gone by the time it is approved: the request is denied, and the reason says why."""
    (policies / "50-gateway.yaml").write_text(SECRET_ACTION)
    request = ActionRequest(action="set-gateway-key", params={"env": "prod", "key": "sk-live-1"})
    view, decision = service.submit(request, Actor(user_id=OUTSIDER))
    assert decision.outcome == "deny" and view.status == DENIED
    assert decision.rule == "gateway-key-prod" and "secret parameter `key`" in decision.reason


def _policy_entries(service: ApprovalService) -> list[dict[str, object]]:
    with service.engine.connect() as connection:
        return [entry for entry in iter_audit(connection) if str(entry["kind"]).startswith("policy_")]


def test_policy_versions_are_audited_once_per_change_across_replicas(
    database: tuple[Engine, str, str | None], policies: Path, clock: SettableClock
) -> None:
    """The first decision audits the loaded policy; an edit is audited once, whichever replica sees it."""
    engine = database[0]
    first = ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=clock)
    second = ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=clock)
    _submit(first)
    _submit(second)
    (loaded,) = _policy_entries(first)
    assert loaded["kind"] == "policy_loaded" and loaded["data"]["previous"] is None  # type: ignore[index]
    edited = policies / "40-operations.yaml"
    edited.write_text(edited.read_text().replace("within_minutes: 15", "within_minutes: 20"))
    assert [first.note_policy(), second.note_policy()].count(True) == 1
    _submit(second)
    entries = _policy_entries(first)
    assert [entry["kind"] for entry in entries] == ["policy_loaded", "policy_changed"]
    changed = entries[1]["data"]
    assert changed["previous"] == loaded["data"]["version"] != changed["version"]  # type: ignore[index]
    assert "policies/40-operations.yaml" in changed["files"]  # type: ignore[index,operator]
    with engine.connect() as connection:
        assert verify_chain(connection)[1] == []


def test_a_production_rollback_needs_two_approvers_and_never_the_requester(service: ApprovalService) -> None:
    """The requester, outsiders and repeat clicks do not count; two eligible approvers do."""
    request_id = _submit(service)
    assert service.get(request_id).status == PENDING  # type: ignore[union-attr]
    refused = service.approve(request_id, REQUESTER)
    assert not refused.changed and "you are the requester" in refused.message
    outsider = service.approve(request_id, OUTSIDER)
    assert not outsider.changed and "ml-platform or sre" in outsider.message
    first = service.approve(request_id, MLP1)
    assert first.changed and "1 more" in first.message and not first.ready_to_run
    again = service.approve(request_id, MLP1)
    assert not again.changed and "already approved" in again.message
    second = service.approve(request_id, SRE1)
    assert second.ready_to_run and second.request is not None and second.request.status == APPROVED
    late = service.approve(request_id, MLP2)
    assert not late.changed and "already approved" in late.message


def test_a_rejection_stops_the_request(service: ApprovalService) -> None:
    """An eligible approver rejects with a reason; nothing can run or be approved afterwards."""
    request_id = _submit(service)
    assert service.reject(request_id, OUTSIDER, "no").changed is False
    assert service.reject(request_id, MLP1, "wrong version").changed
    assert service.get(request_id).status == REJECTED  # type: ignore[union-attr]
    assert not service.approve(request_id, SRE1).changed
    assert service.claim(request_id).claimed is False


def test_a_rejection_refusal_is_told_for_the_reject_button(service: ApprovalService) -> None:
    """Refusals of a reject click say "reject" where an approval's say "approve", and a request's
    status is never reworded (the old word swap said "rejectrs" and "already rejectd")."""
    request_id = _submit(service)
    assert service.reject(request_id, REQUESTER, "no").message == (
        "you are the requester; someone else in ml-platform or sre must reject"
    )
    assert service.reject(request_id, OUTSIDER, "no").message == "rejecters must be in ml-platform or sre"
    service.approve(request_id, MLP1)
    assert service.approve(request_id, SRE1).ready_to_run
    late = service.reject(request_id, MLP2, "too late")
    assert not late.changed
    assert late.message == f"This request is already {APPROVED}; your click changed nothing."


def test_only_the_requester_can_cancel(service: ApprovalService) -> None:
    """Cancelling is the requester's; a cancelled request never runs."""
    request_id = _submit(service)
    assert not service.cancel(request_id, MLP1).changed
    assert service.cancel(request_id, REQUESTER).changed
    assert service.get(request_id).status == CANCELLED  # type: ignore[union-attr]


def test_an_approval_can_be_revoked_before_the_run(service: ApprovalService) -> None:
    """Revoking drops the request below its quorum again."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    assert service.get(request_id).status == APPROVED  # type: ignore[union-attr]
    assert service.revoke(request_id, SRE1).changed
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and view.approvers == (MLP1,)
    assert service.claim(request_id).claimed is False


def test_a_request_past_its_deadline_expires_and_nothing_runs(
    service: ApprovalService, clock: SettableClock
) -> None:
    """30 minutes after a production rollback request, approvals are refused (fail closed)."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    clock.now += 31 * 60
    late = service.approve(request_id, SRE1)
    assert not late.changed and "expired" in late.message
    assert service.get(request_id).status == EXPIRED  # type: ignore[union-attr]
    other = _submit(service)
    clock.now += 31 * 60
    assert service.expire_due() == [other]


def test_a_policy_change_voids_earlier_approvals(service: ApprovalService, policies: Path) -> None:
    """Approvals bind to the policy version: after an edit the request is decided again."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    with (policies / "30-models.yaml").open("a", encoding="utf-8") as out:
        out.write("\n# reviewed again\n")
    changed = service.approve(request_id, SRE1)
    assert "policy changed" in changed.message
    view = service.get(request_id)
    assert view is not None and view.status == PENDING and view.approvers == ()


def test_production_changes_are_denied_in_the_weekend_freeze(
    service: ApprovalService, clock: SettableClock
) -> None:
    """Friday 19:00 in Berlin: a production promotion is denied, saying why."""
    clock.now = FRIDAY_EVENING
    promote = ActionRequest(
        action="promote-model", params={"model": "fraud-scorer", "version": 13, "env": "prod"}
    )
    view, decision = service.submit(promote, Actor(user_id=MLP1))
    assert view.status == DENIED and decision.rule == "prod-weekend-freeze" and "freeze" in decision.reason


def test_every_step_is_in_the_audit_chain(
    service: ApprovalService, database: tuple[Engine, str, str | None]
) -> None:
    """Request, decision, approvals, quorum, start and end are audited in order, and the chain verifies."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    assert service.claim(request_id)
    service.finish(request_id, True, "fraud-scorer alias production -> 12", "", 0.1)
    with database[0].begin() as connection:
        entries = [e for e in iter_audit(connection) if e["request_id"] == request_id]
        _count, problems = verify_chain(connection)
    assert [e["kind"] for e in entries] == [
        "requested",
        "decided",
        "approval",
        "approval",
        "approved",
        "execution_started",
        "execution_finished",
    ]
    assert (
        entries[1]["data"]["rule"] == "rollback-prod-two-approvers" and entries[1]["data"]["policy_version"]
    )
    assert problems == []


@pytest.mark.parametrize(
    ("request_", "after"),
    [
        pytest.param(PROD_ROLLBACK, APPROVED, id="idempotent-runs-again"),
        pytest.param(
            ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"}),
            NEEDS_ATTENTION,
            id="not-idempotent-waits-for-a-person",
        ),
    ],
)
def test_an_interrupted_run_is_never_repeated_unless_idempotent(
    service: ApprovalService, clock: SettableClock, request_: ActionRequest, after: str
) -> None:
    """A claim with no result (the process died) becomes runnable again only for idempotent actions."""
    request_id = _submit(service, request_)
    for approver in (MLP2, SRE1):
        service.approve(request_id, approver)
    assert service.claim(request_id)
    clock.now += 3600
    assert service.recover_interrupted(lease_seconds=600) == [(request_id, after)]
    assert service.get(request_id).status == after  # type: ignore[union-attr]


def test_a_failed_executor_is_recorded_as_failed(service: ApprovalService, policies: Path) -> None:
    """A webhook that cannot be reached ends the request as failed, with the reason."""
    staging = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "staging"})
    view, _ = service.submit(staging, Actor(user_id=MLP1))
    os.environ.pop("RETRAIN_WEBHOOK_URL", None)
    result = execute_once(service, PolicyFolder(policies)(), view.request_id)
    assert result is not None and not result.ok and "RETRAIN_WEBHOOK_URL" in result.summary
    assert service.get(view.request_id).status == FAILED  # type: ignore[union-attr]


@pytest.mark.slow
def test_click_storms_from_threads_and_two_processes_execute_each_request_once(
    database: tuple[Engine, str, str | None],
    policies: Path,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Many threads here and a second process click approve and execute: one webhook call per request."""
    engine, url, schema = database
    upgrade(engine)
    with WebhookReceiver() as receiver:
        env = {"RETRAIN_WEBHOOK_URL": receiver.url, "ACTIONS_WEBHOOK_SECRET": "k"}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        folder = PolicyFolder(policies)
        service = ApprovalService(ActionRequestStore(engine), folder, clock=clock)
        retrain = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"})
        ids = [_submit(service, retrain, user=SRE1) for _ in range(20)]
        approvers = [MLP1, MLP2, REQUESTER, OUTSIDER, SRE1]
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as other:
            remote = other.submit(click_storm, url, schema, str(policies), ids, approvers, env, 7, clock.now)
            threads = [
                threading.Thread(
                    target=click_storm,
                    args=(url, schema, str(policies), ids, approvers, env, seed, clock.now),
                )
                for seed in range(6)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            remote.result(timeout=120)
        calls = list(receiver.requests)
    keys = [call.headers.get("Idempotency-Key", "") for call in calls]
    assert sorted(keys) == sorted(ids)  # every request ran, none twice
    statuses = {service.get(request_id).status for request_id in ids}  # type: ignore[union-attr]
    assert statuses == {SUCCEEDED}
    with engine.connect() as connection:
        recorded = Counter(connection.execute(sa.select(approvals.c.request_id)).scalars())
    # One approval is needed: simultaneous clicks are decided one after the other, so none counts after it.
    assert recorded == Counter(ids)


@pytest.mark.slow
def test_a_run_killed_after_its_claim_is_not_repeated(tmp_path: Path, policies: Path) -> None:
    """Kill the process while the webhook is in flight: the request needs attention and never runs again."""
    url = f"sqlite:///{tmp_path}/state.db"
    engine = shared_key(migrated_engine(url))  # the child process seals with the same key
    clock = SettableClock(TUESDAY)
    service = ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=clock)
    retrain = ActionRequest(action="retrain-model", params={"model": "fraud-scorer", "env": "prod"})
    request_id = _submit(service, retrain, user=SRE1)
    service.approve(request_id, MLP1)
    with WebhookReceiver(statuses=[200], delays=[30.0]) as receiver:
        env = {"RETRAIN_WEBHOOK_URL": receiver.url, "ACTIONS_WEBHOOK_SECRET": "k"}
        script = (
            "import sys, json; from tests.actions_worker import claim_and_run; "
            "claim_and_run(*sys.argv[1:4], json.loads(sys.argv[4]), float(sys.argv[5]))"
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script, url, str(policies), request_id, json.dumps(env), str(clock.now)],
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 60
            while not receiver.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert receiver.requests, "the child never reached the webhook"
        finally:
            child.kill()
            child.wait(timeout=30)
        assert service.get(request_id).status == RUNNING  # type: ignore[union-attr]
        clock.now += 3600  # the child claimed on a clock that started at this one's time
        assert service.recover_interrupted(lease_seconds=600) == [(request_id, NEEDS_ATTENTION)]
        assert execute_once(service, PolicyFolder(policies)(), request_id) is None
        assert len(receiver.requests) == 1
    engine.dispose()
