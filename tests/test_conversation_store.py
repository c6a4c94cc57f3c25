"""The conversation tables: delivered events, sticky threads, feedback and gaps, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from bot.store.conversations import GAP_CLOSED, GAP_DRAFTED, GAP_ROUTED, ConversationStore, StateStoreError
from tests.databases import StateDatabase
from tests.support.clock import SettableClock


@pytest.fixture
def store(state_db: StateDatabase) -> tuple[ConversationStore, SettableClock]:
    """A conversation store on a fresh SQLite file or PostgreSQL schema (migrated), with a settable clock."""
    clock = SettableClock(1_000.0)
    return ConversationStore(state_db.migrated_engine(), clock=clock), clock


def test_an_event_id_is_claimed_once(store: tuple[ConversationStore, SettableClock]) -> None:
    """The first claim wins; retries and duplicates lose."""
    conversations, _clock = store
    assert conversations.claim_event("Ev1", retention_seconds=600) is True
    assert conversations.claim_event("Ev1", retention_seconds=600) is False
    assert conversations.claim_event("Ev2", retention_seconds=600) is True


def test_event_ids_are_kept_for_the_retention_then_forgotten(
    store: tuple[ConversationStore, SettableClock],
) -> None:
    """Within the retention a retry is still dropped; long after, the table no longer holds it."""
    conversations, clock = store
    conversations.claim_event("Ev1", retention_seconds=600)
    clock.now += 599
    assert conversations.claim_event("Ev1", retention_seconds=600) is False
    clock.now += 700
    conversations.claim_event("Ev2", retention_seconds=600)  # purges what is older than the retention
    assert conversations.claim_event("Ev1", retention_seconds=600) is True


def test_a_channel_setting_overrides_the_default(store: tuple[ConversationStore, SettableClock]) -> None:
    """None until set; then the last value set."""
    conversations, _clock = store
    assert conversations.channel_sticky("C1") is None
    conversations.set_channel_sticky("C1", False, "U1")
    conversations.set_channel_sticky("C1", True, "U2")
    assert conversations.channel_sticky("C1") is True


def test_one_vote_per_person_and_answer(store: tuple[ConversationStore, SettableClock]) -> None:
    """A second vote by the same person changes the first instead of adding one."""
    conversations, _clock = store
    answer = conversations.record_answer(
        channel="C1",
        thread_ts="1.0",
        asker="U1",
        question="q?",
        cited=["a.md"],
        confidence=0.8,
        abstained=False,
    )
    first = conversations.record_feedback(answer, "U2", helpful=True)
    second = conversations.record_feedback(answer, "U2", helpful=False)
    assert first == second
    assert [row["helpful"] for row in conversations.feedback_rows()] == [False]


def test_routing_and_drafting_a_gap_are_claimed_once(store: tuple[ConversationStore, SettableClock]) -> None:
    """Only the first click routes a gap, only the first save drafts it; acceptance closes it."""
    conversations, _clock = store
    gap = conversations.open_gap(question="q?", channel="C1", thread_ts="1.0", asker="U1", owners=["@dana"])
    assert conversations.claim_routing(gap, "U2") is True
    assert conversations.claim_routing(gap, "U3") is False
    assert conversations.gap(gap).status == GAP_ROUTED  # type: ignore[union-attr]
    assert conversations.claim_draft(gap, "U4", "inbox/gap-1.md") is True
    assert conversations.claim_draft(gap, "U4", "inbox/gap-1.md") is False
    assert conversations.gap(gap).status == GAP_DRAFTED  # type: ignore[union-attr]
    assert conversations.close_gaps([(gap, "inbox/gap-1.md"), (999, "x.md")]) == [gap]
    assert conversations.close_gaps([(gap, "inbox/gap-1.md")]) == []
    assert conversations.gap(gap).status == GAP_CLOSED  # type: ignore[union-attr]


def test_a_gap_is_found_from_either_of_its_threads(store: tuple[ConversationStore, SettableClock]) -> None:
    """Replies count in the asker's thread and under the experts-channel post."""
    conversations, _clock = store
    gap = conversations.open_gap(question="q?", channel="C1", thread_ts="1.0", asker="U1", owners=[])
    conversations.claim_routing(gap, "U2")
    conversations.set_expert_post(gap, "CEXP", "2.0")
    assert conversations.gap_in_thread("C1", "1.0").gap_id == gap  # type: ignore[union-attr]
    assert conversations.gap_in_thread("CEXP", "2.0").gap_id == gap  # type: ignore[union-attr]
    assert conversations.gap_in_thread("C1", "3.0") is None


def test_an_unreachable_database_is_a_clear_error(tmp_path: object) -> None:
    """A database that cannot be opened names the setting to check."""
    engine = sa.create_engine(f"sqlite:///{tmp_path}/missing/folder/state.db")
    store = ConversationStore(engine)
    with pytest.raises(StateStoreError, match="STEWARD_DATABASE_URL"):
        store.channel_sticky("C1")
