"""The approval rules as a state machine (hypothesis): random clicks never break the invariants.

Invariants checked after every step, against a small model of the rules:
- the service's state of every request is the model's state;
- nothing runs twice, and only an approved request runs;
- approvals count only from eligible people other than the requester, each once, for the current
  parameters and before the deadline.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from bot.actions.approvals import (
    APPROVED,
    CANCELLED,
    EXPIRED,
    PENDING,
    REJECTED,
    SUCCEEDED,
    ApprovalService,
)
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.store.action_requests import ActionRequestStore
from tests.conftest import ROOT
from tests.support.clock import SettableClock
from tests.support.records import migrated_engine
from tests.test_approvals import TUESDAY

ML_PLATFORM = ("U0000MLP01", "U0000MLP02", "U0000MLP03")
SRE = ("U0000SRE01", "U0000SRE02", "U0000SRE03")
PEOPLE = (*ML_PLATFORM, *SRE, "UOUTSIDER1", "UOUTSIDER2")

# (action, env) -> (needed, eligible, minutes); None needed means allowed at once
KINDS = {
    ("rollback-model", "prod"): (2, frozenset(ML_PLATFORM + SRE), 30),
    ("rollback-model", "staging"): (None, frozenset(), 0),
    ("retrain-model", "prod"): (1, frozenset(ML_PLATFORM), 240),
}


@dataclass
class Expected:
    """What the rules say about one request."""

    requester: str
    needed: int | None
    eligible: frozenset[str]
    deadline: float
    status: str
    approvers: set[str] = field(default_factory=set)
    runs: int = 0


class ApprovalRules(RuleBasedStateMachine):
    """Random requests, clicks and time against the real service, SQLite and the starter policies."""

    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="steward-rules-"))
        shutil.copytree(ROOT / "policies", self.folder / "policies")
        self.engine = migrated_engine(self.folder / "state.db")
        self.clock = SettableClock(TUESDAY)
        self.service = ApprovalService(
            ActionRequestStore(self.engine), PolicyFolder(self.folder / "policies"), clock=self.clock
        )
        self.expected: dict[str, Expected] = {}

    def teardown(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _params(self, action: str, env: str, version: int) -> dict[str, object]:
        params: dict[str, object] = {"model": "fraud-scorer", "env": env}
        if action == "rollback-model":
            params["version"] = version
        return params

    @rule(target=requests, kind=st.sampled_from(sorted(KINDS)), requester=st.sampled_from(PEOPLE))
    def request(self, kind: tuple[str, str], requester: str) -> str:
        action, env = kind
        view, _ = self.service.submit(
            ActionRequest(action=action, params=self._params(action, env, 7)), Actor(user_id=requester)
        )
        needed, eligible, minutes = KINDS[kind]
        self.expected[view.request_id] = Expected(
            requester=requester,
            needed=needed,
            eligible=eligible,
            deadline=self.clock.now + minutes * 60,
            status=APPROVED if needed is None else PENDING,
        )
        return view.request_id

    def _expire_if_due(self, model: Expected) -> bool:
        if model.status == PENDING and self.clock.now > model.deadline:
            model.status = EXPIRED
            return True
        return False

    @rule(request_id=requests, user=st.sampled_from(PEOPLE))
    def approve(self, request_id: str, user: str) -> None:
        result = self.service.approve(request_id, user)
        model = self.expected[request_id]
        counts = (
            model.status == PENDING
            and self.clock.now <= model.deadline
            and user != model.requester
            and user in model.eligible
            and user not in model.approvers
        )
        self._expire_if_due(model)
        if counts:
            model.approvers.add(user)
            if model.needed is not None and len(model.approvers) >= model.needed:
                model.status = APPROVED
        assert result.changed == counts, (result.message, model)

    @rule(request_id=requests, user=st.sampled_from(PEOPLE))
    def reject(self, request_id: str, user: str) -> None:
        result = self.service.reject(request_id, user, "no")
        model = self.expected[request_id]
        allowed = model.status == PENDING and self.clock.now <= model.deadline
        allowed = allowed and user != model.requester and user in model.eligible
        self._expire_if_due(model)
        if allowed:
            model.status = REJECTED
        assert result.changed == allowed, (result.message, model)

    @rule(request_id=requests, user=st.sampled_from(PEOPLE))
    def revoke(self, request_id: str, user: str) -> None:
        result = self.service.revoke(request_id, user)
        model = self.expected[request_id]
        allowed = user in model.approvers and model.status in (PENDING, APPROVED)
        if allowed:
            model.approvers.discard(user)
            if model.status == APPROVED and model.needed is not None and len(model.approvers) < model.needed:
                model.status = PENDING
        assert result.changed == allowed, (result.message, model)

    @rule(request_id=requests, by_requester=st.booleans(), other=st.sampled_from(PEOPLE))
    def cancel(self, request_id: str, by_requester: bool, other: str) -> None:
        model = self.expected[request_id]
        user = model.requester if by_requester else other
        result = self.service.cancel(request_id, user)
        allowed = user == model.requester and model.status in (PENDING, APPROVED)
        if allowed:
            model.status = CANCELLED
        assert result.changed == allowed, (result.message, model)

    @rule(request_id=requests, version=st.integers(min_value=1, max_value=40))
    def change_parameters(self, request_id: str, version: int) -> None:
        view = self.service.get(request_id)
        assert view is not None
        params = (
            {**view.params, "version": version}
            if view.action == "rollback-model"
            else {**view.params, "reason": f"v{version}"}
        )
        model = self.expected[request_id]
        result = self.service.amend(request_id, model.requester, params)
        allowed = model.status == PENDING and self.clock.now <= model.deadline and params != view.params
        self._expire_if_due(model)
        if allowed:
            model.approvers.clear()  # approvals were for the old parameters (the same ones keep them)
            kind = (view.action, str(view.params["env"]))
            model.deadline = self.clock.now + KINDS[kind][2] * 60
        assert result.changed == allowed, (result.message, model)

    @rule(minutes=st.integers(min_value=1, max_value=300))
    def time_passes(self, minutes: int) -> None:
        self.clock.now += minutes * 60

    @rule()
    def sweep(self) -> None:
        expired = set(self.service.expire_due())
        for request_id, model in self.expected.items():
            assert (request_id in expired) == self._expire_if_due(model)

    @rule(request_id=requests)
    def run(self, request_id: str) -> None:
        model = self.expected[request_id]
        claimed = self.service.claim(request_id).claimed
        assert claimed == (model.status == APPROVED)
        if claimed:
            model.runs += 1
            model.status = SUCCEEDED
            self.service.finish(request_id, True, "done", "", 0.0)

    @invariant()
    def service_agrees_with_the_rules(self) -> None:
        for request_id, model in self.expected.items():
            view = self.service.get(request_id)
            assert view is not None
            assert view.status == model.status, (request_id, view, model)
            assert set(view.approvers) == model.approvers
            assert model.runs <= 1
            assert model.requester not in view.approvers


ApprovalRules.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestApprovalRules = ApprovalRules.TestCase
