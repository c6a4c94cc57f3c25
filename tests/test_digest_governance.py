"""The governance digest: pending approvals, outcomes, policy changes, stale and superseded documents,
knowledge gaps by the owners to ask, and feedback, over one period."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionRequest, Actor
from bot.actions.policy.gate import PolicyFolder
from bot.digests.governance import gather, render_text
from bot.store.action_requests import ActionRequestStore
from bot.store.catalog import DocumentRecord
from bot.store.conversations import ConversationStore
from tests.conftest import ROOT
from tests.support.clock import TUESDAY_NOON, RunningClock
from tests.support.records import migrated_engine

NOW = TUESDAY_NOON  # the period's end; the services below read a clock that starts here
SINCE = dt.datetime.fromtimestamp(NOW - 7 * 86400, dt.UTC)
UNTIL = dt.datetime.fromtimestamp(NOW + 3600, dt.UTC)
OLD = DocumentRecord(
    "d1", "kb", "decisions/0006-approvals.md", "h", "ADR 0006", superseded_by="decisions/0013.md"
)
STALE = DocumentRecord(
    "d2", "kb", "runbooks/drift.md", "h", "Drift runbook", owner="@dana", review_by="2020-01-01"
)
FRESH = DocumentRecord("d3", "kb", "runbooks/rollback.md", "h", "Rollback", review_by="2999-01-01")


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A state database with Steward's tables (migrated, as start-up does)."""
    built = migrated_engine(tmp_path / "state.db")
    yield built
    built.dispose()


def test_the_report_gathers_the_period(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each part of the report comes from its table; the text lists them."""
    policies = Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))
    approvals = ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=RunningClock(NOW))
    rollback = ActionRequest(
        action="rollback-model", params={"model": "fraud-scorer", "version": 2, "env": "prod"}
    )
    pending, _ = approvals.submit(rollback, Actor(user_id="U0000SRE01", channel="COPS"))
    cancelled, _ = approvals.submit(rollback, Actor(user_id="U0000SRE01", channel="COPS"))
    approvals.cancel(cancelled.request_id, "U0000SRE01")
    edited = policies / "40-operations.yaml"
    edited.write_text(edited.read_text().replace("within_minutes: 15", "within_minutes: 20"))
    approvals.note_policy()
    store = ConversationStore(engine, clock=RunningClock(NOW))
    answer = store.record_answer(
        channel="C1",
        thread_ts="1.0",
        asker="U1",
        question="who approves?",
        cited=[OLD.path],
        confidence=0.7,
        abstained=False,
    )
    store.record_feedback(answer, "U2", helpful=False)
    store.open_gap(
        question="How do we rotate the vector DB key?",
        channel="C1",
        thread_ts="2.0",
        asker="U1",
        owners=["@sec"],
    )
    store.open_gap(
        question="Who owns the feature store?", channel="C1", thread_ts="3.0", asker="U1", owners=["@sec"]
    )
    report = gather(ActionRequestStore(engine), store, [OLD, STALE, FRESH], SINCE, UNTIL)
    assert [p.request_id for p in report.pending] == [pending.request_id]
    assert report.outcomes == {"cancelled": 1}
    assert len(report.policy_changes) == 1
    assert [d.path for d in report.stale] == [STALE.path]
    assert [(d.path, n) for d, n in report.superseded_cited] == [(OLD.path, 1)]
    assert report.gaps_by_owners == {
        "@sec": ["How do we rotate the vector DB key?", "Who owns the feature store?"]
    }
    assert (report.helpful, report.not_helpful) == (0, 1)
    text = render_text("governance", report)
    for expected in (
        "Waiting for approval: 1",
        "rollback-model requested by <@U0000SRE01> in <#COPS>",
        "Actions in the period: 1 cancelled",
        "Policy changes: 1",
        "Drift runbook (runbooks/drift.md), review by 2020-01-01, owner @dana",
        "ADR 0006 (decisions/0006-approvals.md), cited 1 time(s); superseded by decisions/0013.md",
        "Open knowledge gaps: 2, by the owners to ask",
        "Feedback: 0 helpful, 1 not helpful",
    ):
        assert expected in text, expected


def test_an_empty_period_is_one_line_or_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    """No requests, changes, stale documents, gaps or feedback: "all quiet", or nothing when skipped."""
    report = gather(ActionRequestStore(engine), ConversationStore(engine), [FRESH], SINCE, UNTIL)
    assert render_text("governance", report).endswith("all quiet: nothing pending, done, stale or asked.")
    assert render_text("governance", report, quiet="skip") == ""


def test_steward_digest_run_renders_the_governance_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The starter configuration's governance digest renders from the CLI."""
    monkeypatch.setenv("STEWARD_DIGESTS_FILE", str(ROOT / "digests.yaml"))
    monkeypatch.setenv("STEWARD_DATA_DIR", str(tmp_path / "data"))
    from bot.cli import main

    assert main(["digest", "run", "governance"]) == 0
    assert "governance (" in capsys.readouterr().out


def test_agents_requests_are_shown_by_agent_and_outcome(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An agent's pending request names the agent (never a broken mention); its requests are counted by
    agent and outcome; people's requests are not in that count."""
    policies = Path(shutil.copytree(ROOT / "policies", tmp_path / "policies"))
    approvals = ApprovalService(ActionRequestStore(engine), PolicyFolder(policies), clock=RunningClock(NOW))
    rollback = ActionRequest(
        action="rollback-model", params={"model": "fraud-scorer", "version": 2, "env": "prod"}
    )

    def by_agent(name: str, key: str) -> str:
        view, _ = approvals.submit(
            rollback,
            Actor(user_id=f"agent:{name}", channel="COPS"),
            on_behalf={
                "agent": name,
                "agent_token": "0123456789ab",
                "agent_owner": "U0000OWN01",
                "justification": "drift",
                "idempotency_key": key,
            },
        )
        return view.request_id

    by_agent("release-bot", "a")
    cancelled = by_agent("release-bot", "b")
    approvals.cancel(cancelled, "agent:release-bot")
    by_agent("retrain-bot", "c")
    approvals.submit(rollback, Actor(user_id="U0000SRE01", channel="COPS"))
    report = gather(ActionRequestStore(engine), ConversationStore(engine), [], SINCE, UNTIL)
    assert report.by_agent == {
        "release-bot": {"pending": 1, "cancelled": 1},
        "retrain-bot": {"pending": 1},
    }
    text = render_text("governance", report)
    assert "AI agents' requests in the period: 3, by agent and outcome" in text
    assert "- release-bot: 1 pending, 1 cancelled" in text or "- release-bot: 1 cancelled, 1 pending" in text
    assert "requested by agent release-bot in <#COPS>" in text
    assert "<@agent:" not in text
