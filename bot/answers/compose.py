"""Composing an answer from retrieved documents: confidence, the extractive answer, sources, warnings.

No model writes here: sentences are picked from the best passages by how much of the question's
rarer vocabulary they contain, and each is cited.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bot.answers.models import Citation
from bot.answers.retrieval import PASSAGE_CHUNKS, Retrieval, RetrievedDocument
from bot.index.lexical import terms

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(`\[])")
_MAX_SENTENCES = 3
_MAX_SENTENCE_CHARS = 600
_UNKNOWN_IDENTIFIER_FACTOR = 0.6
# Coverage of the question's rare words tells answerable from unanswerable better than closeness
# of topic does (calibrated on ../shared/eval/dev.jsonl; see docs/benchmarks.md).
_COVERAGE_WEIGHT = 0.6
_TABLE_WEIGHT = 0.6
_CODE_WEIGHT = 0.3


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


def _units(text: str) -> list[tuple[str, float]]:
    """Sentences, list items, table rows and code lines of a passage, each with a weight.

    Prose reads best as an answer; a table row is readable once its pipes are gone; a lone line
    of code rarely answers on its own, so it is picked only when nothing else matches.
    """
    units: list[tuple[str, float]] = []
    in_code = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_code = not in_code
            continue
        if not stripped or re.fullmatch(r"\|?[\s:|\-]+\|?", stripped) or stripped.startswith("#"):
            continue
        if in_code:
            units.append((stripped, _CODE_WEIGHT))
        elif stripped.startswith("|"):
            cells = [cell.strip() for cell in stripped.strip("|").split("|") if cell.strip()]
            units.append((" — ".join(cells), _TABLE_WEIGHT))
        else:
            units.extend((part.strip(), 1.0) for part in _SENTENCE.split(stripped) if part.strip())
    return units


def extractive_answer(
    retrieval: Retrieval, cited: Sequence[RetrievedDocument], max_sentences: int = _MAX_SENTENCES
) -> str:
    """Up to three sentences from the best passages that share most of the question's rare words."""
    question = set(retrieval.question_terms)
    candidates: list[tuple[float, int, int, str]] = []
    for number, item in enumerate(cited[:3], start=1):
        for chunk_rank, scored in enumerate(item.chunks[:PASSAGE_CHUNKS]):
            for order, (unit, weight) in enumerate(_units(scored.chunk.text)):
                words = set(terms(unit))
                overlap = sum(retrieval.idf.get(t, 0.0) for t in question & words)
                if overlap <= 0:
                    continue
                # Prefer the best document, its best passage and sentences early in a passage.
                score = (
                    weight * overlap * (1.0 - 0.15 * (number - 1)) * (1.0 - 0.1 * chunk_rank) - 0.01 * order
                )
                candidates.append((score, number, order + 100 * chunk_rank, unit))
    if not candidates and cited and cited[0].chunks:
        units = _units(cited[0].chunks[0].chunk.text)
        candidates = [(0.0, 1, order, unit) for order, (unit, _) in enumerate(units[:2])]
    chosen: list[tuple[float, int, int, str]] = []
    per_document: dict[int, int] = {}
    for candidate in sorted(candidates, key=lambda c: -c[0]):
        if len(chosen) >= max_sentences:
            break
        if per_document.get(candidate[1], 0) >= 2 or any(candidate[3] == c[3] for c in chosen):
            continue
        chosen.append(candidate)
        per_document[candidate[1]] = per_document.get(candidate[1], 0) + 1
    chosen.sort(key=lambda c: (c[1], c[2]))
    sentences = []
    for _, number, _, unit in chosen:
        text = (
            unit if len(unit) <= _MAX_SENTENCE_CHARS else unit[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
        )
        sentences.append(f"{text} [{number}]")
    return "\n".join(sentences)


def abstention_text(owners: Sequence[str]) -> str:
    """What Steward says when it does not know."""
    text = "I don't have a curated answer to that in the knowledge base, so I won't guess."
    if owners:
        text += " People who own the closest documents and may know: " + ", ".join(owners) + "."
    else:
        text += " None of the closest documents names an owner."
    return text
