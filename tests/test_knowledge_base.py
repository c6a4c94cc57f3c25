"""The starter knowledge base is well-formed, and the demo's questions are answered from it."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.wiring import Services
from ingest.documents import SourceDocument, discover, parse
from tests.conftest import ROOT, TODAY

KNOWLEDGE = ROOT / "knowledge"


def _documents() -> list[SourceDocument]:
    files = discover(KNOWLEDGE)
    known = frozenset(path for path, _ in files)
    parsed = [parse(path, file.read_text(encoding="utf-8"), "markdown", known) for path, file in files]
    assert all(isinstance(d, SourceDocument) for d in parsed), [
        d for d in parsed if not isinstance(d, SourceDocument)
    ]
    return [d for d in parsed if isinstance(d, SourceDocument)]


def test_at_least_thirty_documents_with_complete_front_matter() -> None:
    """Every starter document names its kind, status, owner and review dates, without warnings."""
    documents = _documents()
    assert len(documents) >= 30
    for document in documents:
        assert not document.warnings, document.warnings
        assert document.kind and document.status and document.owner, document.path
        assert document.last_reviewed and document.review_by, document.path
    kinds = {d.kind for d in documents}
    assert {"runbook", "decision", "guide", "policy", "postmortem"} <= kinds


def test_superseded_chains_point_at_existing_successors() -> None:
    """Each superseded document names a successor that exists and is not itself superseded."""
    documents = {d.path: d for d in _documents()}
    superseded = [d for d in documents.values() if d.status == "superseded"]
    assert superseded
    for document in superseded:
        assert document.superseded_by in documents, document.path
        assert documents[document.superseded_by].status == "accepted"


def test_some_documents_are_past_their_review_date() -> None:
    """The demo shows stale warnings, so a few documents are overdue."""
    overdue = [d for d in _documents() if d.review_by and dt.date.fromisoformat(d.review_by) < TODAY]
    assert 2 <= len(overdue) <= 8


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory, embedder: object) -> Services:
    """The starter knowledge base, ingested once for this module."""
    from bot.config import Settings

    services = Services(Settings(data_dir=tmp_path_factory.mktemp("starter")))
    services.override("embedder", embedder)
    services.ingestor.run([KNOWLEDGE])
    services.answers.today = lambda: TODAY
    return services


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I roll back a production model, and who has to approve it?", "runbooks/model-rollback.md"),
        ("What PSI value counts as drift on a feature?", "decisions/0012-drift-thresholds-v2.md"),
        (
            "An API key leaked in a Git commit. What do I do first?",
            "runbooks/leaked-secret-rotation.md",
        ),
        ("When do we fail over to the secondary LLM provider?", "runbooks/llm-provider-outage.md"),
        (
            "Which decisions must always go to a human reviewer?",
            "decisions/0008-human-in-the-loop-thresholds.md",
        ),
    ],
)
def test_demo_questions_are_answered_from_the_right_document(
    starter: Services, question: str, expected: str
) -> None:
    """The questions `make demo` asks (and a few more) cite the document that holds the answer."""
    answer = starter.answers.ask(question)
    assert not answer.abstained
    assert expected in [c.path for c in answer.citations[:2]]


def test_superseded_drift_decision_is_flagged_when_cited(starter: Services) -> None:
    """Asking about the old single threshold cites the old decision with its successor named."""
    answer = starter.answers.ask("Was there ever a single PSI 0.25 drift threshold for all features?")
    old = [i for i, c in enumerate(answer.citations, start=1) if c.status == "superseded"]
    assert old
    assert any(w.startswith(f"[{old[0]}]") and "superseded by" in w for w in answer.warnings)


def test_off_topic_question_abstains(starter: Services) -> None:
    """The starter knowledge base says nothing about office catering."""
    answer = starter.answers.ask("Which caterer delivers lunch to the Lisbon office on Fridays?")
    assert answer.abstained
    assert answer.owners
