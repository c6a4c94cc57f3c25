"""Draft guidance documents, follow-up questions and channel pacing: the pure parts of the Slack flows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from bot.answers.conversation import standalone_question
from bot.answers.guidance import GuidanceDraft, GuidanceError, render_draft, slack_to_markdown, write_draft
from bot.slack.pacing import ChannelPacer
from bot.slack.questions import question_text
from ingest.documents import SourceDocument, parse

DRAFT = GuidanceDraft(
    gap_id=7,
    question="How often do we rotate the feature store key?",
    answer="Every *90 days*, see <https://wiki.example.com/keys|the key policy> &amp; page on-call.",
    expert="<@UEXPERT>",
    thread_url="https://fake.slack.com/archives/C1/p1",
    asked_on=dt.date(2026, 11, 24),
)


def test_a_draft_parses_as_a_draft_guide_tied_to_its_gap() -> None:
    """The front matter Steward writes is the front matter `steward ingest` reads."""
    document = parse("inbox/gap-7.md", render_draft(DRAFT), "markdown", frozenset())
    assert isinstance(document, SourceDocument)
    assert document.awaiting_review and document.gap_id == 7 and document.status == "draft"
    assert document.owner == "<@UEXPERT>" and document.kind == "guide"
    assert document.warnings == []


def test_the_expert_answer_is_kept_in_markdown() -> None:
    """Slack's bold, links and entities become Markdown."""
    assert slack_to_markdown(DRAFT.answer) == (
        "Every **90 days**, see [the key policy](https://wiki.example.com/keys) & page on-call."
    )


def test_code_blocks_are_not_converted() -> None:
    """Inside ``` nothing changes."""
    assert slack_to_markdown("```\na *b* <x>\n```") == "```\na *b* <x>\n```"


def test_drafts_are_written_whole_into_the_inbox(tmp_path: Path) -> None:
    """The file appears complete under a readable name; no temporary file is left behind."""
    path = write_draft(tmp_path / "inbox", DRAFT)
    assert path.name == "gap-7-how-often-do-we-rotate-the-feature-store-key.md"
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    front = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
    assert front["question"] == DRAFT.question and front["thread"] == DRAFT.thread_url


def test_an_unwritable_inbox_names_the_setting(tmp_path: Path) -> None:
    """A file where the inbox folder should be gives a clear error."""
    blocker = tmp_path / "inbox"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(GuidanceError, match="STEWARD_GUIDANCE_INBOX"):
        write_draft(blocker, DRAFT)


@pytest.mark.parametrize(
    ("question", "earlier", "expected"),
    [
        (
            "and for staging?",
            ["How do I roll back a model?"],
            "How do I roll back a model?\nand for staging?",
        ),
        (
            "who approves it?",
            ["How do I roll back a model?"],
            "How do I roll back a model?\nwho approves it?",
        ),
        ("What PSI value counts as drift on a feature?", ["How do I roll back?"], None),
        ("and for staging?", [], None),
    ],
)
def test_follow_ups_are_read_with_the_previous_question(
    question: str, earlier: list[str], expected: str | None
) -> None:
    """Short or referring follow-ups borrow the previous question; self-contained ones stand alone."""
    assert standalone_question(question, earlier) == (expected or question)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<@UBOT> how do I roll back?", "how do I roll back?"),
        ("see <https://x.example/a|the runbook> &amp; <#C123|ops>", "see the runbook & #ops"),
        ("<@UBOT>", ""),
    ],
)
def test_question_text_is_the_plain_words(text: str, expected: str) -> None:
    """The bot's mention goes, links and entities become plain text."""
    assert question_text(text, "UBOT") == expected


def test_the_pacer_lets_a_burst_through_then_spaces_posts() -> None:
    """Three posts at once pass; the fourth waits a second; another channel is independent."""
    now = [0.0]
    pacer = ChannelPacer(1.0, burst=3, clock=lambda: now[0])
    assert [pacer.reserve("C1") for _ in range(5)] == [0.0, 0.0, 0.0, 1.0, 2.0]
    assert pacer.reserve("C2") == 0.0
    now[0] = 60.0
    assert pacer.reserve("C1") == 0.0
