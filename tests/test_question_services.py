"""The services behind Slack's question layer and `steward ask`, without Slack: recording a question, and
a knowledge gap's way to the experts and to a draft."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.answers.gaps import ALREADY, FAILED, MISSING, NOWHERE, ROUTED, SAVED, GapService
from bot.answers.models import Answer, Citation
from bot.answers.questions import CLI, Asked, QuestionService
from bot.store.conversations import GAP_DRAFTED, GAP_OPEN, GAP_ROUTED, ConversationStore, Gap
from tests.support.records import records_engine  # noqa: F401  (a fixture)

QUESTION = "How often do we rotate the feature store key?"
TODAY = dt.date(2026, 12, 1)


class _Answers:
    """An answer service that answers, or abstains naming owners, as told."""

    def __init__(self, abstain: bool) -> None:
        self.abstain = abstain
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def ask(
        self, question: str, filters: object = None, earlier: Sequence[str] = (), on_text: object = None
    ) -> Answer:
        self.asked.append((question, tuple(earlier)))
        if self.abstain:
            return Answer(
                question=question, answer="I don't know", abstained=True, confidence=0.2, owners=["@dana"]
            )
        cited = [Citation(path="runbooks/keys.md", title="Keys", section="Rotation")]
        return Answer(
            question=question, answer="Every 90 days [1]", abstained=False, confidence=0.9, citations=cited
        )


@pytest.fixture
def store(records_engine: Engine) -> ConversationStore:  # noqa: F811
    return ConversationStore(records_engine)


def _questions(store: ConversationStore, abstain: bool, sticky: bool = True) -> QuestionService:
    answers = _Answers(abstain)
    return QuestionService(lambda: answers, store, sticky)  # type: ignore[arg-type, return-value]


def test_an_answer_is_logged_with_no_gap_and_its_thread_marked(store: ConversationStore) -> None:
    """The answer log holds the question, asker, place and cited paths; the thread takes follow-ups."""
    recorded = _questions(store, abstain=False).ask(Asked(QUESTION, "C1", "U1", thread="1.0"))
    assert recorded.gap_id is None and not recorded.answer.abstained
    logged = store.answer(recorded.answer_id)
    assert logged is not None
    assert (logged.channel, logged.thread_ts, logged.asker, logged.cited) == (
        "C1",
        "1.0",
        "U1",
        ("runbooks/keys.md",),
    )
    assert store.answered_in("C1", "1.0") and store.gaps() == []


def test_an_abstention_opens_a_gap_naming_the_owners(store: ConversationStore) -> None:
    """Abstaining logs the answer and opens a gap with the owners to ask."""
    recorded = _questions(store, abstain=True).ask(Asked(QUESTION, "C1", "U1", thread="1.0"))
    [gap] = store.gaps()
    assert recorded.gap_id == gap.gap_id
    assert (gap.question, gap.channel, gap.thread_ts, gap.asker, gap.owners, gap.status) == (
        QUESTION,
        "C1",
        "1.0",
        "U1",
        ("@dana",),
        GAP_OPEN,
    )


def test_a_question_without_a_thread_marks_none(store: ConversationStore) -> None:
    """From the command line (or answered privately) there is no thread to take follow-ups in."""
    _questions(store, abstain=True).ask(Asked(QUESTION, CLI, "dana"))
    assert not store.answered_in(CLI, "")
    assert [gap.channel for gap in store.gaps()] == [CLI]


@pytest.mark.parametrize(
    ("default", "own", "follows"),
    [(True, None, True), (False, None, False), (False, True, True), (True, False, False)],
)
def test_a_reply_follows_up_where_steward_answered_and_the_channel_is_sticky(
    store: ConversationStore, default: bool, own: bool | None, follows: bool
) -> None:
    """The channel's own setting, else the default, decides; a thread Steward never answered never does."""
    questions = _questions(store, abstain=False, sticky=default)
    if own is not None:
        questions.set_sticky("C1", own, "U9")
    questions.ask(Asked(QUESTION, "C1", "U1", thread="1.0"))
    assert questions.follows_up("C1", "1.0") is follows
    assert questions.follows_up("C1", "2.0") is False


class _Reach:
    """Experts reached by recording what would be posted; `fail` makes the post raise."""

    def __init__(self, people: dict[str, str] | None = None, fail: bool = False) -> None:
        self.people = people or {}
        self.fail = fail
        self.posted: list[tuple[int, tuple[str, ...]]] = []

    def person(self, owner: str) -> str | None:
        return self.people.get(owner)

    def ask(self, gap: Gap, where: Sequence[str]) -> list[str]:
        if self.fail:
            raise ConnectionError("Slack is down")
        self.posted.append((gap.gap_id, tuple(where)))
        return [f"{index}.5" for index, _ in enumerate(where, start=1)]


@pytest.fixture
def gap_id(store: ConversationStore) -> int:
    return store.open_gap(
        question=QUESTION, channel="C1", thread_ts="1.0", asker="U1", owners=["@dana", "@lee"]
    )


def _gaps(store: ConversationStore, tmp_path: Path, experts: str | None = None) -> GapService:
    return GapService(store, tmp_path / "inbox", experts, today=lambda: TODAY)


def test_a_gap_is_routed_to_the_experts_channel_once(
    store: ConversationStore, gap_id: int, tmp_path: Path
) -> None:
    """The first click posts to the experts channel and records where; the second is told it is done."""
    gaps, reach = _gaps(store, tmp_path, "CEXPERTS"), _Reach()
    first = gaps.route(gap_id, "U2", reach)
    assert (first.outcome, first.channel) == (ROUTED, "CEXPERTS")
    assert gaps.route(gap_id, "U3", reach).outcome == ALREADY
    assert reach.posted == [(gap_id, ("CEXPERTS",))]
    routed = store.gap(gap_id)
    assert routed is not None and (routed.status, routed.expert_channel, routed.expert_ts) == (
        GAP_ROUTED,
        "CEXPERTS",
        "1.5",
    )


def test_without_a_channel_the_owners_found_are_asked(
    store: ConversationStore, gap_id: int, tmp_path: Path
) -> None:
    """Owners the reach knows are asked directly (once each); unknown ones are passed over."""
    reach = _Reach({"@dana": "UDANA"})
    routing = _gaps(store, tmp_path).route(gap_id, "U2", reach)
    assert (routing.outcome, routing.people) == (ROUTED, ("UDANA",))
    assert reach.posted == [(gap_id, ("UDANA",))]


@pytest.mark.parametrize(
    ("reach", "outcome"), [(_Reach(), NOWHERE), (_Reach({"@dana": "UDANA"}, fail=True), FAILED)]
)
def test_a_gap_nobody_could_be_asked_about_stays_open(
    store: ConversationStore, gap_id: int, tmp_path: Path, reach: _Reach, outcome: str
) -> None:
    """Nobody to ask, or the post failing, releases the claim: "Ask an expert" can be tried again."""
    gaps = _gaps(store, tmp_path)
    assert gaps.route(gap_id, "U2", reach).outcome == outcome
    gap = store.gap(gap_id)
    assert gap is not None and gap.status == GAP_OPEN
    assert gaps.route(gap_id, "U2", _Reach({"@lee": "ULEE"})).outcome == ROUTED


def test_routing_a_gap_that_is_not_on_record(store: ConversationStore, tmp_path: Path) -> None:
    assert _gaps(store, tmp_path).route(404, "U2", _Reach()).outcome == MISSING


def test_a_reply_is_saved_as_a_draft_once(store: ConversationStore, gap_id: int, tmp_path: Path) -> None:
    """The draft is written to the inbox and the gap marked drafted; a second save is told whose it is."""
    gaps = _gaps(store, tmp_path)
    gap = store.gap(gap_id)
    assert gap is not None
    saved = gaps.save_draft(gap, "UEXPERT", "Every *90* days.", "https://slack.example/p1")
    assert saved.outcome == SAVED and saved.path is not None and saved.path.parent == tmp_path / "inbox"
    assert "Every **90** days." in saved.path.read_text(encoding="utf-8")
    again = gaps.save_draft(gap, "UOTHER", "Monthly.", None)
    assert (again.outcome, again.gap.status, again.gap.draft_path) == (ALREADY, GAP_DRAFTED, str(saved.path))


def test_a_draft_that_cannot_be_written_releases_the_gap(
    store: ConversationStore, gap_id: int, tmp_path: Path
) -> None:
    """An inbox that is a file: the save fails naming the setting, and the gap can be drafted later."""
    (tmp_path / "inbox").write_text("not a folder")
    gaps = _gaps(store, tmp_path)
    gap = store.gap(gap_id)
    assert gap is not None
    failed = gaps.save_draft(gap, "UEXPERT", "Every 90 days.", None)
    assert failed.outcome == FAILED and "STEWARD_GUIDANCE_INBOX" in failed.error
    released = store.gap(gap_id)
    assert released is not None and released.status == GAP_ROUTED and released.draft_path is None
    (tmp_path / "inbox").unlink()
    assert gaps.save_draft(gap, "UEXPERT", "Every 90 days.", None).outcome == SAVED


def test_feedback_on_an_answer_not_on_record_is_not_stored(store: ConversationStore, tmp_path: Path) -> None:
    gaps = _gaps(store, tmp_path)
    assert gaps.record_feedback(404, "U1", helpful=True) is None
    assert store.feedback_rows() == []
