"""Answers: hybrid retrieval, citations, warnings, abstention, filters."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.answers.retrieval import Filters, IndexMissingError
from bot.answers.service import EmptyQuestionError
from bot.wiring import Services


@pytest.fixture
def services(small_kb: Path, make_services: Callable[..., Services]) -> Services:
    """Services over the small knowledge base, ingested."""
    built = make_services()
    built.ingestor.run([small_kb])
    return built


def test_answer_cites_the_document_that_holds_it(services: Services) -> None:
    """The rollback question is answered from the rollback runbook, with [n] markers that resolve."""
    answer = services.answers.ask("How do I roll back the fraud-scorer model in production?")
    assert not answer.abstained
    assert answer.citations[0].path == "runbooks/model-rollback.md"
    assert answer.citations[0].owner == "@dana"
    assert answer.citations[0].status == "accepted"
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)}
    assert numbers and numbers <= set(range(1, len(answer.citations) + 1))
    assert "alias" in answer.answer or "approvers" in answer.answer


@pytest.mark.real_model  # the successor outranks the superseded decision by meaning
def test_superseded_document_ranks_below_its_successor_with_a_warning(services: Services) -> None:
    """Both drift decisions match; the current one comes first and the old one is flagged."""
    answer = services.answers.ask("What PSI value means a feature has drifted?")
    paths = [c.path for c in answer.citations]
    assert paths.index("decisions/0007-drift-thresholds-v2.md") < paths.index(
        "decisions/0001-drift-thresholds.md"
    )
    old = paths.index("decisions/0001-drift-thresholds.md") + 1
    assert any(
        w.startswith(f"[{old}]") and "superseded by Drift thresholds, second version" in w
        for w in answer.warnings
    )


def test_a_document_past_its_review_date_is_flagged(services: Services) -> None:
    """review_by before today gives a stale warning naming the date."""
    answer = services.answers.ask("How do I drain a GPU node before a driver upgrade?")
    assert answer.citations[0].path == "runbooks/gpu-node-drain.md"
    assert any("due for review on 2025-01-15" in w for w in answer.warnings)


def test_unanswerable_question_abstains_and_names_owners(services: Services) -> None:
    """A question the knowledge base does not cover gets no guess, but who might know."""
    answer = services.answers.ask("What is the Kubernetes version of the Tokyo cluster's Kafka brokers?")
    assert answer.abstained
    assert answer.citations == []
    assert "won't guess" in answer.answer
    assert answer.owners and set(answer.owners) <= {"@dana", "@sam", "@lee"}


def test_lexical_retrieval_finds_exact_identifiers(services: Services) -> None:
    """A rare exact term (SOC 2) finds the plain-text guide."""
    answer = services.answers.ask("Which vendors sent their SOC 2 Type II report?")
    assert answer.retrieved[0].path == "guides/vendor-questions.txt"


@pytest.mark.parametrize(
    ("filters", "allowed"),
    [
        (Filters(kinds=("runbook",)), {"runbooks/model-rollback.md", "runbooks/gpu-node-drain.md"}),
        (Filters(tags=("drift",)), {"decisions/0007-drift-thresholds-v2.md"}),
        (Filters(statuses=("superseded",)), {"decisions/0001-drift-thresholds.md"}),
    ],
)
def test_filters_restrict_both_retrievers(services: Services, filters: Filters, allowed: set[str]) -> None:
    """Kind, tag and status filters apply to dense and lexical results alike."""
    answer = services.answers.ask("drift thresholds and rollback approvals", filters)
    assert answer.retrieved
    assert {p.path for p in answer.retrieved} <= allowed


def test_documents_are_deduplicated(services: Services) -> None:
    """Each document appears once in the passages, however many chunks match."""
    answer = services.answers.ask("rollback production model alias approvers")
    paths = [p.path for p in answer.retrieved]
    assert len(paths) == len(set(paths))


def test_empty_question_is_a_usage_error(services: Services) -> None:
    """Whitespace is not a question."""
    with pytest.raises(EmptyQuestionError):
        services.answers.ask("   \n ")


def test_asking_before_any_ingest_says_what_to_run(make_services: Callable[..., Services]) -> None:
    """An empty knowledge base is an explained error."""
    services = make_services()
    with pytest.raises(IndexMissingError, match="the knowledge base is empty"):
        services.answers.ask("anything")


def test_json_shape_is_the_documented_one(services: Services) -> None:
    """`--json` carries answer, abstained, confidence and citations with their eight fields."""
    data = services.answers.ask("How do I roll back a model?").public_json()
    assert {"answer", "abstained", "confidence", "citations"} <= set(data)
    citations = data["citations"]
    assert isinstance(citations, list) and citations
    assert set(citations[0]) == {"path", "title", "section", "url", "status", "owner", "source", "untrusted"}
    assert citations[0]["source"] is None  # one source: nothing to tell apart


def test_a_vector_index_out_of_step_with_the_catalog_is_reported(
    small_kb: Path, make_services: Callable[..., Services], tmp_path: Path
) -> None:
    """Lost vectors (a deleted Chroma folder) still give an answer, with a warning naming the repair."""
    services = make_services()
    services.ingestor.run([small_kb])
    services.vectors.delete(services.catalog.chunk_ids([d.doc_id for d in services.catalog.documents()]))
    fresh = make_services()
    answer = fresh.answers.ask("How do I roll back the fraud-scorer model in production?")
    assert any("holds 0 vectors" in w and "steward ingest" in w for w in answer.warnings)


def test_a_superseded_document_ranked_above_its_successor_is_moved_just_below_it() -> None:
    """The ordering rule itself: [old, a, new, b] becomes [a, new, old, b]."""
    from bot.answers.retrieval import RetrievedDocument, successors_first
    from bot.store.catalog import DocumentRecord

    def item(path: str, score: float, superseded_by: str | None = None) -> RetrievedDocument:
        record = DocumentRecord(path, "/kb", path, "h", path, superseded_by=superseded_by)
        return RetrievedDocument(record, score)

    def successor(document: DocumentRecord) -> DocumentRecord | None:
        return next((d.document for d in ranked if d.document.path == document.superseded_by), None)

    ranked = [item("old.md", 0.9, "new.md"), item("a.md", 0.8), item("new.md", 0.7), item("b.md", 0.6)]
    assert [d.document.path for d in successors_first(ranked, successor)] == [
        "a.md",
        "new.md",
        "old.md",
        "b.md",
    ]
    ranked = [item("old.md", 0.9, "missing.md"), item("a.md", 0.8)]
    assert [d.document.path for d in successors_first(ranked, successor)] == ["old.md", "a.md"]


def test_reranker_reads_where_the_rare_words_fall(services: Services) -> None:
    """The re-ranker's features: a document whose title and path carry the question's words scores
    higher on them than one that does not, and every share lies in [0, 1]."""
    from bot.answers.retrieval import document_features

    retriever = services.retriever
    retrieval = retriever.search("How do I drain a GPU node before a driver upgrade?", limit=10)
    rows = document_features(
        retrieval.documents, retrieval.question_terms, retrieval.idf, retriever.lexicon()
    )
    by_path = {item.document.path: row for item, row in zip(retrieval.documents, rows, strict=True)}
    drain = by_path["runbooks/gpu-node-drain.md"]
    others = [row for path, row in by_path.items() if path != "runbooks/gpu-node-drain.md"]
    assert drain["path"] > max(row["path"] for row in others)
    assert drain["coverage"] >= max(row["coverage"] for row in others)
    assert max(row["bm25"] for row in rows) == 1.0
    for row in rows:
        assert all(0.0 <= row[name] <= 1.0 for name in ("bm25", "title", "path", "coverage", "retired"))


def test_reranker_reorders_only_the_head_and_keeps_successors_first(services: Services) -> None:
    """With and without the re-ranker the same documents are found; a superseded document still
    follows its successor."""
    retriever = services.retriever
    question = "What PSI value means a feature has drifted?"
    reranked = [item.document.path for item in retriever.search(question, limit=10).documents]
    retriever.rerank = None
    try:
        fused = [item.document.path for item in retriever.search(question, limit=10).documents]
    finally:
        from bot.answers.retrieval import RERANK_WEIGHTS

        retriever.rerank = RERANK_WEIGHTS
    assert set(reranked) == set(fused)
    assert reranked.index("decisions/0007-drift-thresholds-v2.md") < reranked.index(
        "decisions/0001-drift-thresholds.md"
    )
