"""Composing an answer from retrieved documents: confidence, the extractive answer, sources, warnings.

No model writes here: sentences are picked from the best passages by how much of the question's
rarer vocabulary they contain, and each is cited.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.answers.excerpts import Parsed, Unit, grow, parse
from bot.answers.models import Citation
from bot.answers.retrieval import PASSAGE_CHUNKS, Retrieval, RetrievedDocument
from bot.index.lexical import terms

# The cosine similarity of each text to the question (the packaged model), for choosing excerpts.
Similarity = Callable[[Sequence[str]], Sequence[float]]
_UNKNOWN_IDENTIFIER_FACTOR = 0.6
# Coverage of the question's rare words tells answerable from unanswerable better than closeness
# of topic does (calibrated on ../shared/eval/dev.jsonl; see docs/benchmarks.md).
_COVERAGE_WEIGHT = 0.6


@dataclass(frozen=True)
class Confidence:
    """How sure Steward is that the top documents answer the question, and the parts of that."""

    value: float
    similarity: float
    coverage: float


def confidence(retrieval: Retrieval, chunk_terms: dict[str, frozenset[str]]) -> Confidence:
    """Combine semantic closeness of the best passage with how much of the question it covers.

    Coverage is the share of the question's IDF mass found in the top document's retrieved
    passages: a question about something the knowledge base never mentions (a vendor, an alert
    name it has no runbook for) leaves its rarest words uncovered, however close the topic is.
    """
    if not retrieval.documents:
        return Confidence(0.0, 0.0, 0.0)
    top = retrieval.documents[0]
    similarity = max(top.best_similarity, 0.0)
    question = set(retrieval.question_terms)
    total = sum(retrieval.idf.get(t, 0.0) for t in question)
    found: set[str] = set()
    for scored in top.chunks[:3]:
        found |= chunk_terms.get(scored.chunk.chunk_id, frozenset())
    covered = sum(retrieval.idf.get(t, 0.0) for t in question & found)
    coverage = covered / total if total > 0 else 0.0
    semantic = 1.0 / (1.0 + math.exp(-(similarity - 0.5) / 0.06))
    value = (1 - _COVERAGE_WEIGHT) * semantic + _COVERAGE_WEIGHT * coverage
    if retrieval.unknown_identifiers:
        # The question names something specific (an alert, a metric, `15d`) the knowledge base never
        # mentions: whatever is close in topic cannot be about that thing.
        value *= _UNKNOWN_IDENTIFIER_FACTOR
    return Confidence(max(0.0, min(1.0, value)), similarity, coverage)


def citation_for(item: RetrievedDocument) -> Citation:
    """The source-list entry of a retrieved document (section of its best passage)."""
    document = item.document
    return Citation(
        path=document.path,
        title=document.title,
        section=item.chunks[0].chunk.section if item.chunks else document.title,
        url=document.url,
        status=document.status,
        owner=document.owner,
        kind=document.kind,
        review_by=document.review_by,
        superseded_by=document.superseded_by,
    )


def warnings_for(citations: Sequence[Citation], titles: dict[str, str], today: dt.date) -> list[str]:
    """Stale and superseded warnings for the cited documents, numbered as cited."""
    warnings: list[str] = []
    for number, citation in enumerate(citations, start=1):
        if citation.status in ("superseded", "deprecated"):
            successor = citation.superseded_by
            if successor:
                name = titles.get(successor, successor)
                warnings.append(f"[{number}] {citation.title} is superseded by {name} ({successor}).")
            else:
                warnings.append(f"[{number}] {citation.title} is {citation.status}.")
        if citation.review_by:
            try:
                due = dt.date.fromisoformat(citation.review_by)
            except ValueError:
                continue
            if due < today:
                warnings.append(
                    f"[{number}] {citation.title} was due for review on {due.isoformat()} "
                    "and may be out of date."
                )
    return warnings


@dataclass(frozen=True)
class ExcerptMethod:
    """How the extractive answer picks its excerpts (chosen on folds of the dev set, docs/benchmarks.md)."""

    semantic_weight: float = 0.5  # cosine similarity of a unit to the question, beside rare-term coverage
    budget: int = 650  # characters of the first excerpt
    second_budget: int = 400  # characters of a second excerpt
    second_ratio: float = 0.75  # a second excerpt only when it scores this close to the first
    documents: int = 2  # excerpts may come from this many of the top documents


DEFAULT_METHOD = ExcerptMethod()
_KIND_WEIGHT = {"sentence": 1.0, "item": 1.0, "row": 1.0, "code": 0.6, "heading": 0.4}
_DOCUMENT_PRIOR = (1.0, 0.8, 0.65)
_CHUNK_PRIOR = (1.0, 0.9)


@dataclass(frozen=True)
class _Candidate:
    score: float
    number: int  # the document's citation number
    chunk_rank: int
    section: str
    parsed: Parsed
    unit: Unit


def _candidates(
    retrieval: Retrieval,
    cited: Sequence[RetrievedDocument],
    method: ExcerptMethod,
    similarity: Similarity | None,
) -> list[_Candidate]:
    question = set(retrieval.question_terms)
    total = sum(retrieval.idf.get(t, 0.0) for t in question) or 1.0
    found: list[tuple[int, int, str, Parsed, Unit]] = []
    for number, item in enumerate(cited[: method.documents], start=1):
        for chunk_rank, scored in enumerate(item.chunks[:PASSAGE_CHUNKS]):
            parsed = parse(scored.chunk.text)
            found.extend((number, chunk_rank, scored.chunk.section, parsed, unit) for unit in parsed.units)
    if not found:
        return []
    semantic = (
        similarity([unit.text for *_, unit in found])
        if similarity is not None and method.semantic_weight > 0
        else [0.0] * len(found)
    )
    candidates = []
    for (number, chunk_rank, section, parsed, unit), closeness in zip(found, semantic, strict=True):
        coverage = sum(retrieval.idf.get(t, 0.0) for t in question & set(terms(unit.text))) / total
        score = (
            (coverage + method.semantic_weight * max(closeness, 0.0))
            * _KIND_WEIGHT[unit.kind]
            * _DOCUMENT_PRIOR[min(number - 1, len(_DOCUMENT_PRIOR) - 1)]
            * _CHUNK_PRIOR[min(chunk_rank, len(_CHUNK_PRIOR) - 1)]
        )
        candidates.append(_Candidate(score, number, chunk_rank, section, parsed, unit))
    return candidates


@dataclass(frozen=True)
class ComposedAnswer:
    """The extractive answer and, per cited document, the section its excerpt came from."""

    text: str
    sections: dict[int, str]


def section_label(section: str) -> str:
    """The part of a heading path a reader needs beside the source list: its last heading."""
    return section.split(" > ")[-1].strip()


def extractive_answer(
    retrieval: Retrieval,
    cited: Sequence[RetrievedDocument],
    method: ExcerptMethod = DEFAULT_METHOD,
    similarity: Similarity | None = None,
) -> ComposedAnswer:
    """One or two readable excerpts from the best passages, the one that answers first, each cited
    and labelled with the section it came from."""
    candidates = sorted(_candidates(retrieval, cited, method, similarity), key=lambda c: -c.score)
    if not candidates:
        return ComposedAnswer("", {})
    best = candidates[0]
    chosen = [(best, grow(best.parsed, best.unit, method.budget, _rows_like(best, candidates)))]
    for candidate in candidates[1:]:
        if candidate.score < method.second_ratio * best.score:
            break
        if candidate.parsed is best.parsed and candidate.unit.block == best.unit.block:
            continue  # already shown with the first excerpt
        text = grow(candidate.parsed, candidate.unit, method.second_budget, _rows_like(candidate, candidates))
        if _normalised(text) in _normalised(chosen[0][1]) or _normalised(chosen[0][1]) in _normalised(text):
            continue
        chosen.append((candidate, text))
        break
    parts = []
    sections: dict[int, str] = {}
    for candidate, text in chosen:
        sections.setdefault(candidate.number, candidate.section)
        parts.append(f"_{section_label(candidate.section)}_ [{candidate.number}]\n{text.strip()}")
    return ComposedAnswer("\n\n".join(parts), sections)


def _rows_like(anchor: _Candidate, candidates: Sequence[_Candidate]) -> list[int]:
    """Other rows of the anchor's table that also match the question, best first."""
    if anchor.unit.kind != "row":
        return []
    return [
        c.unit.part
        for c in candidates
        if c.parsed is anchor.parsed and c.unit.block == anchor.unit.block and c.score > 0.5 * anchor.score
    ]


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


def abstention_text(owners: Sequence[str]) -> str:
    """What Steward says when it does not know."""
    text = "I don't have a curated answer to that in the knowledge base, so I won't guess."
    if owners:
        text += " People who own the closest documents and may know: " + ", ".join(owners) + "."
    else:
        text += " None of the closest documents names an owner."
    return text
