"""Composing an answer from retrieved documents: confidence, the extractive answer, sources, warnings.

No model writes here: sentences are picked from the best passages by how much of the question's
rarer vocabulary they contain, and each is cited.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.answers.excerpts import Parsed, Unit, grow, leads_in, parse, read_on
from bot.answers.models import Citation
from bot.answers.retrieval import PASSAGE_CHUNKS, Retrieval, RetrievedDocument
from bot.answers.sources import SourceLevels, untrusted_warning
from bot.index.lexical import terms

# The cosine similarity of each text to the question (the packaged model), for choosing excerpts.
Similarity = Callable[[Sequence[str]], Sequence[float]]
_UNKNOWN_IDENTIFIER_FACTOR = 0.6
# The confidence model's weights, fitted on ../shared/eval/dev.jsonl by bench/answers.py (its
# "weights_on_all"); the cross-validated figures are in docs/benchmarks.md.
_CONFIDENCE_WEIGHTS = {
    "similarity": 1.70,
    "coverage": 0.80,
    "unknown_identifier": -1.26,
    "uncovered_rarest": 0.03,
}
_CONFIDENCE_BIAS = 0.13


@dataclass(frozen=True)
class Confidence:
    """How sure Steward is that the top documents answer the question, and the parts of that."""

    value: float
    similarity: float
    coverage: float


def confidence_features(retrieval: Retrieval, chunk_terms: dict[str, frozenset[str]]) -> dict[str, float]:
    """What tells a question the knowledge base answers from one it does not.

    - similarity: the semantic closeness of the best passage;
    - coverage: the share of the question's IDF mass found in the top document's best passages;
    - unknown_identifier: the question names something specific (an alert, a metric, `15d`) the
      knowledge base never mentions;
    - uncovered_rarest: the rarest question word missing from the top document, relative to the
      rarest question word (a vendor or product the document never names).
    """
    if not retrieval.documents:
        return {"similarity": 0.0, "coverage": 0.0, "unknown_identifier": 1.0, "uncovered_rarest": 1.0}
    top = retrieval.documents[0]
    question = set(retrieval.question_terms)
    idf = {t: retrieval.idf.get(t, 0.0) for t in question}
    total = sum(idf.values())
    found: set[str] = set()
    for scored in top.chunks[:3]:
        found |= chunk_terms.get(scored.chunk.chunk_id, frozenset())
    covered = sum(idf[t] for t in question & found)
    rarest = max(idf.values(), default=0.0)
    uncovered = max((idf[t] for t in question - found), default=0.0)
    return {
        "similarity": max(top.best_similarity, 0.0),
        "coverage": covered / total if total > 0 else 0.0,
        "unknown_identifier": 1.0 if retrieval.unknown_identifiers else 0.0,
        "uncovered_rarest": uncovered / rarest if rarest > 0 else 0.0,
    }


def confidence(retrieval: Retrieval, chunk_terms: dict[str, frozenset[str]]) -> Confidence:
    """The probability that the knowledge base answers the question: a logistic model of the
    features above, fitted on the dev set (bench/answers.py; cross-validated figures in
    docs/benchmarks.md)."""
    features = confidence_features(retrieval, chunk_terms)
    if not retrieval.documents:
        return Confidence(0.0, 0.0, 0.0)
    logit = _CONFIDENCE_BIAS + sum(weight * features[name] for name, weight in _CONFIDENCE_WEIGHTS.items())
    value = 1.0 / (1.0 + math.exp(-logit))
    return Confidence(value, features["similarity"], features["coverage"])


def citation_for(item: RetrievedDocument, sources: SourceLevels) -> Citation:
    """The source-list entry of a retrieved document (section of its best passage), naming its source
    when there is more than one or it is untrusted."""
    document = item.document
    untrusted = sources.untrusted(document)
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
        source=document.source if sources.several or untrusted else None,
        untrusted=untrusted,
    )


def warnings_for(
    citations: Sequence[Citation], successors: Sequence[str | None], today: dt.date
) -> list[str]:
    """Untrusted, stale and superseded warnings for the cited documents, numbered as cited;
    `successors` holds the title of each one's successor, when it was found."""
    warnings: list[str] = []
    for number, (citation, successor_title) in enumerate(zip(citations, successors, strict=True), start=1):
        if citation.untrusted and citation.source:
            warnings.append(f"[{number}] {citation.title} is {untrusted_warning(citation.source)}.")
        if citation.status in ("superseded", "deprecated"):
            successor = citation.superseded_by
            if successor:
                name = successor_title or successor
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

    semantic_weight: float = 2.0  # cosine similarity of a unit to the question, beside rare-term coverage
    budget: int = 500  # characters of the first excerpt
    second_budget: int = 400  # characters of a second excerpt
    second_ratio: float = 0.0  # a second excerpt only when it scores this close to the first
    documents: int = 2  # excerpts may come from this many of the top documents
    semantic_candidates: int = 16  # the units, best by their words, whose stored vectors are also read
    semantic_characters: int = 240  # of each unit, embedded at ingest (about 48 word pieces)
    chunks: int = PASSAGE_CHUNKS  # the best chunks of each document that excerpts may come from
    read_on: bool = True  # the first excerpt goes on into the blocks after it while its budget lasts


DEFAULT_METHOD = ExcerptMethod()
_KIND_WEIGHT = {"sentence": 1.0, "item": 1.0, "row": 1.0, "code": 0.6, "heading": 0.4}
_DOCUMENT_PRIOR = (1.0, 0.8, 0.65)
_CHUNK_PRIOR = (1.0, 0.9, 0.8, 0.7)


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
        for chunk_rank, section, text in _passage_texts(item, method.chunks):
            parsed = parse(text)
            found.extend((number, chunk_rank, section, parsed, unit) for unit in parsed.units)
    if not found:
        return []
    lexical = []
    for number, chunk_rank, _section, _parsed, unit in found:
        coverage = sum(retrieval.idf.get(t, 0.0) for t in question & set(terms(unit.text))) / total
        prior = (
            _KIND_WEIGHT[unit.kind]
            * _DOCUMENT_PRIOR[min(number - 1, len(_DOCUMENT_PRIOR) - 1)]
            * _CHUNK_PRIOR[min(chunk_rank, len(_CHUNK_PRIOR) - 1)]
        )
        lexical.append((coverage, prior))
    # The model reads only the units the words already favour: embedding every unit of four passages
    # would cost more than the whole retrieval.
    semantic = [0.0] * len(found)
    if similarity is not None and method.semantic_weight > 0 and method.semantic_candidates > 0:
        ranked = sorted(range(len(found)), key=lambda i: -lexical[i][0] * lexical[i][1])
        shortlist = ranked[: method.semantic_candidates]
        for index, closeness in zip(
            shortlist, similarity([found[i][4].text for i in shortlist]), strict=True
        ):
            semantic[index] = max(closeness, 0.0)
    return [
        _Candidate(
            (coverage + method.semantic_weight * closeness) * prior,
            number,
            rank,
            section,
            parsed,
            unit,
        )
        for (number, rank, section, parsed, unit), (coverage, prior), closeness in zip(
            found, lexical, semantic, strict=True
        )
    ]


def _passage_texts(item: RetrievedDocument, chunks: int) -> list[tuple[int, str, str]]:
    """(rank, section, text) of a document's passage chunks; two that follow each other in the same
    section are read as one text, so a paragraph the chunker split is whole again."""
    chosen = list(enumerate(item.chunks[:chunks]))
    chosen.sort(key=lambda pair: pair[1].chunk.ord)
    out: list[tuple[int, str, str]] = []
    previous = None
    for rank, scored in chosen:
        chunk = scored.chunk
        if previous is not None and chunk.ord == previous.ord + 1 and chunk.section == previous.section:
            first_rank, section, text = out[-1]
            out[-1] = (min(first_rank, rank), section, text + "\n" + chunk.text)
        else:
            out.append((rank, chunk.section, chunk.text))
        previous = chunk
    return out


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
    first = grow(best.parsed, best.unit, method.budget, _rows_like(best, candidates))
    if method.read_on:
        first = read_on(best.parsed, best.unit, first, method.budget)
    chosen = [(best, first)]
    for candidate in candidates[1:]:
        if candidate.score < method.second_ratio * best.score:
            break
        if candidate.parsed is best.parsed and candidate.unit.block == best.unit.block:
            continue  # already shown with the first excerpt
        text = grow(candidate.parsed, candidate.unit, method.second_budget, _rows_like(candidate, candidates))
        if leads_in(text):
            continue  # a lead-in alone: what it introduces did not fit
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
