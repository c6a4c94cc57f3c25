"""Requests against their audit entries: `verify` names every request the database says is approved or
ran without its approvals in the log, and `authorised_in_log` says whether the log lets one run now."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.actions import approvals as approval_flow
from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.store.action_requests import (
    ActionRequestStore,
    action_requests,
    append_audit,
    approvals,
    audit_head,
    audit_log,
    authorised_in_log,
)
from bot.store.audit_chain import ANCHORED
from bot.store.audit_trail import KNOWN_KINDS, Logged, RequestTrail
from bot.store.audit_verify import AUTHORISED_STATES, verify_log
from bot.store.schema import upgrade
from tests.audit_support import Sealer, forge, keyed, plain_sha, wrong_key
from tests.conftest import ROOT
from tests.databases import StateDatabase
from tests.support.clock import TUESDAY_NOON

REQUESTER, MLP1, SRE1, OUTSIDER = "U0000MLP01", "U0000MLP02", "U0000SRE01", "UOUTSIDER"
PROD_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 12, "env": "prod"}
)
STAGING_ROLLBACK = ActionRequest(
    action="rollback-model", params={"model": "fraud-scorer", "version": 3, "env": "staging"}
)


@pytest.fixture
def engine(state_db: StateDatabase, tmp_path: Path) -> Engine:
    """A fresh database with the action tables, its audit log keyed with the test key."""
    built = state_db.engine()
    upgrade(built)
    keyed(built, tmp_path)
    return built


@pytest.fixture
def service(engine: Engine, tmp_path: Path) -> ApprovalService:
    """The approval service over the starter policies, on a working Tuesday."""
    policies = Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))
    return ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=lambda: TUESDAY_NOON)


def _submit(service: ApprovalService, request: ActionRequest = PROD_ROLLBACK, user: str = REQUESTER) -> str:
    view, _decision = service.submit(request, Actor(user_id=user, channel="COPS"), thread_ts="1.0")
    return view.request_id


def _authorised(engine: Engine, request_id: str) -> tuple[bool, str]:
    with engine.begin() as connection:
        return authorised_in_log(connection, request_id)


def _problems(engine: Engine) -> list[str]:
    with engine.begin() as connection:
        return [str(problem) for problem in verify_log(connection).problems]


def _entry(engine: Engine, request_id: str, kind: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.select(sa.func.max(audit_log.c.seq)).where(
                    audit_log.c.request_id == request_id, audit_log.c.kind == kind
                )
            ).scalar_one()
        )


def _forge_approvals(engine: Engine, request_id: str, *approvers: str) -> None:
    """What an attacker with write access to the database does: approval rows, and the status."""
    with engine.begin() as connection:
        fingerprint = connection.execute(
            sa.select(action_requests.c.fingerprint).where(action_requests.c.request_id == request_id)
        ).scalar_one()
        connection.execute(sa.delete(approvals).where(approvals.c.request_id == request_id))
        for approver in approvers:
            connection.execute(
                sa.insert(approvals).values(
                    request_id=request_id, approver=approver, fingerprint=fingerprint, decided_at=TUESDAY_NOON
                )
            )
        connection.execute(
            sa.update(action_requests)
            .where(action_requests.c.request_id == request_id)
            .values(status="approved")
        )


def test_an_approved_and_run_request_verifies(service: ApprovalService, engine: Engine) -> None:
    """Two approvals, the quorum, the run: the log authorises it until the run starts, and verifies."""
    request_id = _submit(service)
    assert _authorised(engine, request_id) == (
        False,
        f"waiting for approvals since entry {_entry(engine, request_id, 'decided')}",
    )
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    approved = _entry(engine, request_id, "approved")
    assert _authorised(engine, request_id) == (True, f"approved by {MLP1}, {SRE1} (entry {approved})")
    assert service.claim(request_id)
    started = _entry(engine, request_id, "execution_started")
    assert _authorised(engine, request_id) == (False, f"its run started at entry {started}")
    service.finish(request_id, True, "done", "", 0.1)
    with engine.begin() as connection:
        report = verify_log(connection)
    assert report.problems == [] and report.requests == 1


def test_an_allowed_request_is_authorised_by_its_decision(service: ApprovalService, engine: Engine) -> None:
    """A request the policy allows needs no approvals: the decision entry is its authority."""
    request_id = _submit(service, STAGING_ROLLBACK, user=OUTSIDER)
    allowed, why = _authorised(engine, request_id)
    assert (
        allowed
        and why.startswith("allowed by `")
        and f"(entry {_entry(engine, request_id, 'decided')})" in why
    )
    assert service.claim(request_id)
    assert _problems(engine) == []


def test_a_status_set_to_approved_in_the_database_is_named(service: ApprovalService, engine: Engine) -> None:
    """`UPDATE action_requests SET status='approved'` on a waiting request: verify names it, and the log
    does not let it run."""
    request_id = _submit(service)
    decided = _entry(engine, request_id, "decided")
    with engine.begin() as connection:
        connection.execute(sa.update(action_requests).values(status="approved"))
    assert _problems(engine) == [
        f"request {request_id}: is approved but the audit log does not let it run: waiting for approvals "
        f"since entry {decided}"
    ]
    assert _authorised(engine, request_id) == (False, f"waiting for approvals since entry {decided}")


def test_a_run_on_forged_approvals_is_named(service: ApprovalService, engine: Engine) -> None:
    """Approval rows and the status forged in the database let a claim that asks only the database run
    the request; the log refuses it beforehand, and verify names the run afterwards."""
    request_id = _submit(service)
    _forge_approvals(engine, request_id, MLP1, SRE1)
    assert _authorised(engine, request_id)[0] is False
    with engine.begin() as connection:  # what the claim did while it asked only the database
        connection.execute(sa.update(action_requests).values(status="running"))
        started = append_audit(
            connection, at=TUESDAY_NOON, kind="execution_started", request_id=request_id, actor=None, data={}
        )
    decided = _entry(engine, request_id, "decided")
    assert _problems(engine) == [
        f"request {request_id}, entry {started}: ran without the audit log's authority: waiting for "
        f"approvals since entry {decided}"
    ]


def test_a_request_set_to_succeeded_without_a_run_is_named(service: ApprovalService, engine: Engine) -> None:
    """A finished state the log never saw start is named too."""
    request_id = _submit(service)
    with engine.begin() as connection:
        connection.execute(sa.update(action_requests).values(status="succeeded"))
    assert _problems(engine) == [f"request {request_id}: is succeeded but the audit log records no run"]


def test_a_revoked_approval_takes_the_authority_back(service: ApprovalService, engine: Engine) -> None:
    """Below the quorum after a revocation, the request may not run, whatever the database says."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    service.revoke(request_id, SRE1)
    approved = _entry(engine, request_id, "approved")
    why = f"approvals were revoked or lapsed after entry {approved}: 1 of the 2 needed still count"
    assert _authorised(engine, request_id) == (False, why)
    _forge_approvals(engine, request_id, MLP1, SRE1)
    assert _problems(engine) == [
        f"request {request_id}: is approved but the audit log does not let it run: {why}"
    ]


def test_a_deleted_revocation_is_found_before_the_run(service: ApprovalService, engine: Engine) -> None:
    """Deleting the `revoked` entry (others written after it) does not give the authority back."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    service.revoke(request_id, SRE1)
    _submit(service)  # entries after the revocation
    revoked = _entry(engine, request_id, "revoked")
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq == revoked))
    _forge_approvals(engine, request_id, MLP1, SRE1)
    allowed, why = _authorised(engine, request_id)
    assert not allowed and why.startswith(
        f"the audit log after entry {_entry(engine, request_id, 'approved')}"
    )
    assert f"entry {revoked}: entry missing (deleted)" in why


@pytest.mark.parametrize("memory", ["this-process", "another-replica"])
def test_a_deleted_cancellation_at_the_end_is_found(
    service: ApprovalService, engine: Engine, tmp_path: Path, memory: str
) -> None:
    """The newest entries deleted and the head moved back: the log this process saw, or (for another
    replica) the checkpoint signed since, says they were there."""
    keyed(engine, tmp_path, every=1)  # every transaction's first append signs what it found
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    service.cancel(request_id, REQUESTER)
    _submit(service)  # its first append signs (and sees) the log with the cancellation
    cancelled = _entry(engine, request_id, "cancelled")
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq >= cancelled))
        last = connection.execute(
            sa.select(audit_log.c.hash).where(audit_log.c.seq == cancelled - 1)
        ).scalar_one()
        connection.execute(sa.update(audit_head).values(seq=cancelled - 1, hash=last))
    _forge_approvals(engine, request_id, MLP1, SRE1)
    if memory == "another-replica":
        keyed(engine, tmp_path)  # the same key and checkpoint file, nothing seen
    allowed, why = _authorised(engine, request_id)
    assert (
        not allowed and f"the log ends at entry {cancelled - 1}, but {cancelled} entries were written" in why
    )


@pytest.mark.parametrize("seal", [plain_sha, wrong_key], ids=["plain-sha256", "wrong-key"])
def test_approval_entries_forged_without_the_key_are_refused(
    service: ApprovalService, engine: Engine, seal: Sealer
) -> None:
    """`approval` and `approved` entries appended by hand (plain hash, or another key) authorise nothing."""
    request_id = _submit(service)
    approved = f'{{"approvers":["{MLP1}","{SRE1}"]}}'
    forged = [("approval", request_id, MLP1, "{}"), ("approval", request_id, SRE1, "{}")]
    forge(engine, [*forged, ("approved", request_id, None, approved)], seal, at=TUESDAY_NOON)
    _forge_approvals(engine, request_id, MLP1, SRE1)
    allowed, why = _authorised(engine, request_id)
    assert not allowed
    assert "edited or forged" in why or "no keyed entry fixes it yet" in why
    assert any(request_id in problem for problem in _problems(engine))


def test_an_approved_entry_naming_people_who_never_approved_grants_nothing() -> None:
    """The `approved` entry must be backed by live `approval` entries of the people it names."""
    trail = RequestTrail(
        [
            Logged(1, "decided", "policy", {"outcome": "require_approval", "approval": {"count": 2}}),
            Logged(2, "approval", MLP1, {}),
            Logged(3, "approved", None, {"approvers": [MLP1, SRE1]}),
        ]
    )
    assert trail.may_run() == (False, f"entry 3 names {SRE1}, who have no live approval in the log")


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([("decided", {"outcome": "allow", "rule": "r"})], (True, "allowed by `r` (entry 1)")),
        ([("decided", {"outcome": "deny", "rule": "r"})], (False, "denied by `r` at entry 1")),
        (
            [
                ("decided", {"outcome": "require_approval", "approval": {"count": 1}}),
                ("approval", "A"),
                ("approved", ["A"]),
            ],
            (True, "approved by A (entry 3)"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval", "approval": {"count": 2}}),
                ("approval", "A"),
                ("approved", ["A"]),
            ],
            (False, "entry 3 names 1 approver(s) where 2 are needed"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval"}),
                ("approval", "A"),
                ("redecided", {"outcome": "allow"}),
                ("approved", ["A"]),
            ],
            (False, "entry 4 names A, who have no live approval in the log"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval"}),
                ("approval", "A"),
                ("approved", ["A"]),
                ("held", {"rule": "freeze"}),
            ],
            (False, "held by `freeze` at entry 4"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval"}),
                ("approval", "A"),
                ("held", {"rule": "f"}),
                ("released", ["A"]),
            ],
            (True, "released, approved by A (entry 4)"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval", "approval": {"count": 1}}),
                ("approval", "A"),
                ("approved", ["A"]),
                ("requirement_changed", {"approval": {"count": 2}}),
            ],
            (False, "approvals were revoked or lapsed after entry 3: 1 of the 2 needed still count"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval"}),
                ("approval", "A"),
                ("approved", ["A"]),
                ("approval_lapsed", "A"),
            ],
            (False, "approvals were revoked or lapsed after entry 3: 0 of the 1 needed still count"),
        ),
        (
            [
                ("decided", {"outcome": "require_approval"}),
                ("approval", "A"),
                ("approved", ["A"]),
                ("quorum_lost", {}),
            ],
            (False, "quorum lost at entry 4"),
        ),
        (
            [("decided", {"outcome": "require_approval"}), ("amended", {"outcome": "allow", "rule": "s"})],
            (True, "allowed by `s` (entry 2)"),
        ),
        (
            [("decided", {"outcome": "allow", "rule": "r"}), ("cancelled", None)],
            (False, "cancelled at entry 2"),
        ),
        (
            [
                ("decided", {"outcome": "allow", "rule": "r"}),
                ("execution_started", None),
                ("interrupted", {"now": "approved"}),
            ],
            (True, "allowed by `r` (entry 1)"),
        ),
        (
            [
                ("decided", {"outcome": "allow", "rule": "r"}),
                ("execution_started", None),
                ("interrupted", {"now": "needs_attention"}),
            ],
            (False, "interrupted at entry 3; it needs a person"),
        ),
        (
            [
                ("decided", {"outcome": "allow", "rule": "r"}),
                ("execution_started", None),
                ("execution_finished", {}),
            ],
            (False, "finished at entry 3"),
        ),
        (
            [("decided", {"outcome": "allow", "rule": "r"}), ("escalated", {})],
            (False, "entry 2 is of kind 'escalated', which the audit check does not know"),
        ),
    ],
    ids=[
        "allow",
        "deny",
        "quorum",
        "short",
        "redecided-resets",
        "held",
        "released",
        "requirement-raised",
        "lapsed",
        "quorum-lost",
        "amended-allow",
        "cancelled",
        "interrupted-idempotent",
        "interrupted-person",
        "finished",
        "unknown-kind",
    ],
)
def test_what_the_trail_lets_run(entries: list[tuple[str, object]], expected: tuple[bool, str]) -> None:
    """The rules of `audit_trail.py`, one sequence of entries each."""
    logged = []
    for seq, (kind, detail) in enumerate(entries, start=1):
        if isinstance(detail, dict):
            logged.append(Logged(seq, kind, "policy", detail))
        elif isinstance(detail, list):
            logged.append(Logged(seq, kind, None, {"approvers": detail}))
        else:
            logged.append(Logged(seq, kind, detail if isinstance(detail, str) else None, {}))
    allowed, why = RequestTrail(logged).may_run()
    assert allowed is expected[0] and why.startswith(expected[1])


def test_every_audited_kind_is_known_to_the_trail() -> None:
    """A new audit entry kind must be taught to `audit_trail.py` (it blocks runs until then)."""
    kinds: set[str] = set()
    for path in (ROOT / "bot").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "append_audit(" in text or "records.audit(" in text:  # the store's function, or a transaction's
            kinds |= set(re.findall(r'kind="([a-z_]+)"', text))
            for pair in re.findall(r'kind="([a-z_]+)" if \w+ else "([a-z_]+)"', text):
                kinds |= set(pair)
    request_free = {"policy_loaded", "policy_changed", "agent_added", "agent_revoked", ANCHORED}  # no request
    assert {"approval", "approved", "execution_started"} <= kinds
    assert kinds - KNOWN_KINDS - request_free == set()


def test_the_states_checked_are_the_request_states() -> None:
    """The store's list of states that need the log's authority uses the approval flow's names."""
    states = approval_flow
    assert AUTHORISED_STATES == (
        states.APPROVED,
        states.RUNNING,
        states.SUCCEEDED,
        states.FAILED,
        states.NEEDS_ATTENTION,
    )


def test_appending_reads_no_more_as_the_log_grows(engine: Engine) -> None:
    """An append costs the same statements with 5 entries or 300, and never reads the whole log."""
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    def append(number: int) -> None:
        with engine.begin() as connection:
            append_audit(connection, at=float(number), kind="requested", request_id="r", actor="U", data={})

    for number in range(5):
        append(number)
    sa.event.listen(engine, "before_cursor_execute", count)
    append(5)
    small = list(statements)
    sa.event.remove(engine, "before_cursor_execute", count)
    for number in range(6, 302):
        append(number)
    statements.clear()
    sa.event.listen(engine, "before_cursor_execute", count)
    append(302)
    sa.event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == len(small) <= 6
    assert not any("FROM audit_log" in s and "WHERE" not in s for s in statements)


def test_a_head_moved_back_is_refused(service: ApprovalService, engine: Engine) -> None:
    """The head moved back over entries left in place: the log does not hold together, nothing runs."""
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    _submit(service)
    with engine.begin() as connection:
        head = connection.execute(sa.select(audit_head.c.seq)).scalar_one()
        previous = connection.execute(
            sa.select(audit_log.c.hash).where(audit_log.c.seq == head - 1)
        ).scalar_one()
        connection.execute(sa.update(audit_head).values(seq=head - 1, hash=previous))
    allowed, why = _authorised(engine, request_id)
    assert not allowed and "the head does not name the log's last entry" in why


def test_entries_committed_while_the_log_is_read_are_walked(
    service: ApprovalService, engine: Engine, state_db: StateDatabase, tmp_path: Path
) -> None:
    """Another replica's append landing between the check's reads is walked, not taken for tampering."""
    if state_db.schema is None:
        pytest.skip("SQLite's writers queue behind the reader's transaction: nothing lands in between")
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    other = state_db.engine()
    keyed(other, tmp_path)  # another replica: the same key and checkpoint file
    landed: list[int] = []

    def append_meanwhile(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not landed and "FROM audit_log" in statement and "audit_log.seq >" in statement:
            with other.begin() as connection:
                landed.append(
                    append_audit(
                        connection, at=TUESDAY_NOON, kind="requested", request_id="other", actor="U", data={}
                    )
                )

    sa.event.listen(engine, "after_cursor_execute", append_meanwhile)
    try:
        allowed, why = _authorised(engine, request_id)
    finally:
        sa.event.remove(engine, "after_cursor_execute", append_meanwhile)
    assert landed and allowed, why


def test_entries_another_thread_saw_after_the_log_was_read_are_no_truncation(
    service: ApprovalService, engine: Engine, state_db: StateDatabase
) -> None:
    """A longer log this process saw only after the check read the log (another thread's appends,
    committed meanwhile) is not taken for a truncated one: the run is authorised."""
    if state_db.schema is None:
        pytest.skip("SQLite's writers queue behind the reader's transaction: nothing lands in between")
    request_id = _submit(service)
    service.approve(request_id, MLP1)
    service.approve(request_id, SRE1)
    landed: list[int] = []
    started: list[bool] = []

    def appends_meanwhile(conn: object, cursor: object, statement: str, *args: object) -> None:
        if not started and "FROM audit_head" in statement:  # the check has read the log up to its head
            started.append(True)  # the appends read the head too
            for _ in range(2):  # the second append sees the first one committed: the process saw it
                with engine.begin() as connection:
                    landed.append(
                        append_audit(
                            connection,
                            at=TUESDAY_NOON,
                            kind="requested",
                            request_id="other",
                            actor="U",
                            data={},
                        )
                    )

    sa.event.listen(engine, "after_cursor_execute", appends_meanwhile)
    try:
        allowed, why = _authorised(engine, request_id)
    finally:
        sa.event.remove(engine, "after_cursor_execute", appends_meanwhile)
    assert len(landed) == 2 and allowed, why


def test_a_refused_run_is_reported_but_is_no_damage(service: ApprovalService, engine: Engine) -> None:
    """The claim refusing a request the log does not authorise (`run_refused`, then needs_attention):
    verify lists the refusal, and does not count the request as run without a run."""
    request_id = _submit(service)
    with engine.begin() as connection:
        connection.execute(sa.update(action_requests).values(status="needs_attention"))
        seq = append_audit(
            connection,
            at=TUESDAY_NOON,
            kind="run_refused",
            request_id=request_id,
            actor="audit",
            data={"why": "no"},
        )
    with engine.begin() as connection:
        report = verify_log(connection)
    assert report.problems == []
    assert [str(refusal) for refusal in report.refused] == [
        f"request {request_id}, entry {seq}: its run was refused: no"
    ]
    assert _authorised(engine, request_id) == (False, f"run_refused at entry {seq}")
