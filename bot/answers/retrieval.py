"""Hybrid retrieval: dense (Chroma) and lexical (BM25) over the same chunks, fused per document."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from bot.answers.sources import SourceLevels, SourceTrust
from bot.errors import ConfigurationError
from bot.index.embedding import Embedder
from bot.index.lexical import BM25Index, identifiers, terms
from bot.index.vectors import VectorIndex
from bot.store.catalog import Catalog, ChunkRecord, DocumentRecord
from bot.store.sources import DocumentRef

# Reciprocal-rank fusion constant and candidate depth of each retriever. A small k trusts each
# retriever's first hits; with the customary 60, many middling chunks of long documents outvote the
# one chunk that answers (chosen on ../shared/eval/dev.jsonl, see docs/benchmarks.md).
_RRF_K = 10
_DEPTH = 60
_DENSE_WEIGHT = 1.0
_LEXICAL_WEIGHT = 1.0
# Superseded and deprecated documents stay findable but rank below current ones.
_RETIRED_PENALTY = 0.75
_RETIRED = ("superseded", "deprecated")
# Documents from untrusted sources (STEWARD_UNTRUSTED_SOURCES) rank below others of similar relevance:
# their fused score is scaled down, and the re-ranker's score lowered, before each sort. With no
# untrusted source nothing changes (the figures in docs/benchmarks.md stand).
_UNTRUSTED_FACTOR = 0.5
_UNTRUSTED_RERANK_PENALTY = 2.0
# Documents whose chunks are all re-ranked against the question (the source list's length).
_REFINED_DOCUMENTS = 5
# The documents that the second stage orders again by what the fused rank cannot see: where the
# question's rarer words fall (title, path, the best passages) and how strongly BM25 matched.
RERANK_DEPTH = 10
# A logistic model of "this document answers the question", fitted on ../shared/eval/dev.jsonl by
# bench/ranking.py (its "weights_on_all"; the held-out figures are in docs/benchmarks.md).
RERANK_WEIGHTS = {
    "fused": 3.97,
    "bm25": 4.41,
    "title": 0.77,
    "path": 1.4,
    "coverage": 2.46,
    "retired": -0.72,
}
# A document's passage is its two best chunks, in document order: small chunks rank precisely, and
# the answer is often in the section next to the one that matched the topic. The passage list, the
# extractive answer and the LLM all read these same chunks.
PASSAGE_CHUNKS = 2


class IndexMissingError(ConfigurationError):
    """Nothing has been ingested yet, or the index and the catalog disagree."""


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to documents of these kinds, statuses and tags (any of each)."""

    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def allows(self, document: DocumentRecord) -> bool:
        """Whether a document passes every filter."""
        if self.kinds and (document.kind or "") not in self.kinds:
            return False
        if self.statuses and (document.status or "") not in self.statuses:
            return False
        return not (self.tags and not set(self.tags) & {t.lower() for t in document.tags})

    def chroma_where(self) -> dict[str, object] | None:
        """The part of the filter Chroma can apply itself."""
        clauses: list[dict[str, object]] = []
        if self.kinds:
            clauses.append({"kind": {"$in": list(self.kinds)}})
        if self.statuses:
            clauses.append({"status": {"$in": list(self.statuses)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


@dataclass
class ScoredChunk:
    """A chunk with what each retriever thought of it."""

    chunk: ChunkRecord
    fused: float
    similarity: float | None = None
    bm25: float | None = None


@dataclass
class RetrievedDocument:
    """A document and its best chunks, in rank order."""

    document: DocumentRecord
    score: float
    chunks: list[ScoredChunk] = field(default_factory=list)

    @property
    def best_similarity(self) -> float:
        """The highest cosine similarity of its chunks to the question (0 when only lexical)."""
        return max((c.similarity for c in self.chunks if c.similarity is not None), default=0.0)


@dataclass
class Retrieval:
    """The outcome of one search."""

    question_terms: list[str]
    documents: list[RetrievedDocument]
    idf: dict[str, float]
    unknown_identifiers: list[str] = field(default_factory=list)
    index_problem: str | None = None
    vector: NDArray[np.float32] | None = None  # the question's embedding


class _Lexicon:
    """BM25 and lookup tables for one catalog generation."""

    def __init__(self, catalog: Catalog, trust: SourceTrust) -> None:
        snapshot = catalog.snapshot()
        self.generation = snapshot.generation
        self.documents = snapshot.documents
        self.sources: SourceLevels = trust.levels(d.root for d in self.documents.values())
        self._at_path: dict[str, list[DocumentRecord]] = {}
        for document in sorted(self.documents.values(), key=lambda d: d.source):
            self._at_path.setdefault(document.path, []).append(document)
        self.chunks = snapshot.chunks
        self.row_of = {chunk.chunk_id: row for row, chunk in enumerate(self.chunks)}
        self.rows_of_document: dict[str, list[int]] = {}
        for row, chunk in enumerate(self.chunks):
            self.rows_of_document.setdefault(chunk.doc_id, []).append(row)
        self.bm25 = BM25Index([chunk.terms.split() for chunk in self.chunks])
        self.terms_of_row: list[frozenset[str]] = [frozenset(chunk.terms.split()) for chunk in self.chunks]
        # An identifier is known when it is a term, or a part of one: "ChatGPT" in "ChatGPT-style".
        self.identifiers = set(self.bm25.vocabulary)
        for term in self.bm25.vocabulary:
            if any(mark in term for mark in "-_./"):
                self.identifiers.update(part for part in re.split(r"[-_./]", term) if part)
        self.problem: str | None = None
        self._names: dict[str, tuple[frozenset[str], frozenset[str]]] = {}

    def names(self, document: DocumentRecord) -> tuple[frozenset[str], frozenset[str]]:
        """The index terms of a document's title and of its path's words."""
        found = self._names.get(document.doc_id)
        if found is None:
            path = re.sub(r"\.[A-Za-z]+$", "", document.path)
            found = (frozenset(terms(document.title)), frozenset(terms(re.sub(r"[/_.\-]", " ", path))))
            self._names[document.doc_id] = found
        return found

    def documents_at(self, ref: DocumentRef) -> list[DocumentRecord]:
        """The documents at a path (in the reference's source, when it names one), by source name."""
        found = self._at_path.get(ref.path, [])
        return found if ref.source is None else [d for d in found if d.source == ref.source]

    def successor(self, document: DocumentRecord) -> DocumentRecord | None:
        """The document that supersedes this one: at its `superseded_by` path in the same source, else
        the only document at that path; None when there is none, or several and none in its source."""
        found = self._at_path.get(document.superseded_by or "", [])
        same = [d for d in found if d.root == document.root]
        if same:
            return same[0]
        return found[0] if len(found) == 1 else None

    def allowed(self, filters: Filters) -> NDArray[np.bool_] | None:
        if filters == Filters():
            return None
        permitted = {doc_id for doc_id, document in self.documents.items() if filters.allows(document)}
        return np.fromiter((c.doc_id in permitted for c in self.chunks), dtype=bool, count=len(self.chunks))


class Retriever:
    """Finds the documents and passages that best match a question."""

    def __init__(
        self,
        catalog: Catalog,
        vectors: VectorIndex,
        embedder: Embedder,
        rerank: dict[str, float] | None = RERANK_WEIGHTS,
        trust: SourceTrust | None = None,
    ) -> None:
        self.catalog = catalog
        self.vectors = vectors
        self.embedder = embedder
        self.rerank = rerank  # None: the fused rank alone (bench/ranking.py fits the weights on it)
        self.trust = trust or SourceTrust()
        self._lexicon: _Lexicon | None = None
        self._lock = threading.Lock()

    def lexicon(self) -> _Lexicon:
        """The BM25 index, rebuilt when the catalog has changed since it was built."""
        generation = self.catalog.generation()
        with self._lock:
            if self._lexicon is None or self._lexicon.generation != generation:
                lexicon = _Lexicon(self.catalog, self.trust)
                if not lexicon.chunks:
                    raise IndexMissingError(
                        "the knowledge base is empty: run `steward ingest PATH...` first "
                        f"(e.g. `steward ingest knowledge/`) to build the knowledge index in "
                        f"{self.catalog.where()}. After an upgrade from a Steward that kept the index "
                        "in steward.db this is needed once; the records there are kept."
                    )
                vectors = self.vectors.count()
                if vectors != len(lexicon.chunks):
                    lexicon.problem = (
                        f"the vector index ({self.vectors.where()}) holds {vectors} vectors but the catalog "
                        f"{len(lexicon.chunks)} chunks, so answers may miss passages: repair with "
                        "`steward ingest PATH...` (or `--rebuild`)"
                    )
                self._lexicon = lexicon
            return self._lexicon

    def search(self, question: str, filters: Filters | None = None, limit: int = 10) -> Retrieval:
        """Up to `limit` documents, best first, each with its best chunks."""
        filters = filters or Filters()
        lexicon = self.lexicon()
        query_terms = terms(question)
        allowed = lexicon.allowed(filters)

        fused: dict[int, ScoredChunk] = {}
        vector = self.embedder.embed_query(question)
        depth = _DEPTH * (3 if filters.tags else 1)
        dense = self.vectors.query(vector, depth, filters.chroma_where())
        rank = 0
        for hit in dense:
            row = lexicon.row_of.get(hit.chunk_id)
            if row is None or (allowed is not None and not allowed[row]):
                continue  # a vector the catalog does not know (swept by the next ingest) or filtered out
            entry = fused.setdefault(row, ScoredChunk(lexicon.chunks[row], 0.0))
            entry.similarity = hit.similarity
            entry.fused += _DENSE_WEIGHT / (_RRF_K + rank + 1)
            rank += 1
        for rank, lexical in enumerate(lexicon.bm25.search(query_terms, _DEPTH, allowed)):
            entry = fused.setdefault(lexical.row, ScoredChunk(lexicon.chunks[lexical.row], 0.0))
            entry.bm25 = lexical.score
            entry.fused += _LEXICAL_WEIGHT / (_RRF_K + rank + 1)

        by_document: dict[str, RetrievedDocument] = {}
        for entry in sorted(fused.values(), key=lambda e: -e.fused):
            document = lexicon.documents.get(entry.chunk.doc_id)
            if document is None:
                continue
            # A document ranks by its best chunk: adding up its other matches (tried) favours long
            # documents that mention a topic often over the short one that answers it.
            found = by_document.get(document.doc_id)
            if found is None:
                score = entry.fused * (_RETIRED_PENALTY if document.status in _RETIRED else 1.0)
                score *= _UNTRUSTED_FACTOR if lexicon.sources.untrusted(document) else 1.0
                by_document[document.doc_id] = RetrievedDocument(document, score, [entry])
            else:
                found.chunks.append(entry)

        ranked = successors_first(sorted(by_document.values(), key=lambda d: -d.score), lexicon.successor)
        idf = {term: lexicon.bm25.idf_of(term) for term in query_terms}
        refined = ranked[:_REFINED_DOCUMENTS]
        self._rank_within(refined, lexicon, vector, query_terms)
        if self.rerank is not None:
            ranked = self._reranked(ranked, query_terms, idf, lexicon)
            self._rank_within(
                [item for item in ranked[:_REFINED_DOCUMENTS] if all(item is not r for r in refined)],
                lexicon,
                vector,
                query_terms,
            )
            ranked = successors_first(ranked, lexicon.successor)
        ranked = ranked[:limit]
        unknown = [t for t in identifiers(question) if t not in lexicon.identifiers]
        return Retrieval(query_terms, ranked, idf, unknown, lexicon.problem, vector)

    def _reranked(
        self,
        ranked: list[RetrievedDocument],
        query_terms: Sequence[str],
        idf: dict[str, float],
        lexicon: _Lexicon,
    ) -> list[RetrievedDocument]:
        """The first RERANK_DEPTH documents in the re-ranker's order, the rest as they were."""
        weights = self.rerank or {}
        head = ranked[:RERANK_DEPTH]
        features = document_features(head, query_terms, idf, lexicon)
        scores = [
            sum(weight * row[name] for name, weight in weights.items())
            - (_UNTRUSTED_RERANK_PENALTY if lexicon.sources.untrusted(item.document) else 0.0)
            for item, row in zip(head, features, strict=True)
        ]
        order = sorted(range(len(head)), key=lambda i: -scores[i])
        return [head[i] for i in order] + ranked[RERANK_DEPTH:]

    def _rank_within(
        self,
        documents: Sequence[RetrievedDocument],
        lexicon: _Lexicon,
        vector: NDArray[np.float32],
        query_terms: Sequence[str],
    ) -> None:
        """Order every chunk of the top documents by both signals, not only the chunks that made
        the corpus-wide candidate lists: the passage that answers is often not the one that matched
        the topic best (an alert's description versus its "Diagnosis" section)."""
        rows = [row for item in documents for row in lexicon.rows_of_document.get(item.document.doc_id, [])]
        if not rows:
            return
        stored = self.vectors.vectors_of([lexicon.chunks[row].chunk_id for row in rows])
        bm25 = lexicon.bm25.scores(query_terms)
        for item in documents:
            own = lexicon.rows_of_document.get(item.document.doc_id, [])
            similarity = {
                row: float(stored[lexicon.chunks[row].chunk_id] @ vector)
                for row in own
                if lexicon.chunks[row].chunk_id in stored
            }
            by_dense = sorted(similarity, key=lambda row: -similarity[row])
            by_lexical = sorted(own, key=lambda row: -float(bm25[row]))
            fused: dict[int, float] = dict.fromkeys(own, 0.0)
            for rank, row in enumerate(by_dense):
                fused[row] += _DENSE_WEIGHT / (_RRF_K + rank + 1)
            for rank, row in enumerate(by_lexical):
                if bm25[row] > 0:
                    fused[row] += _LEXICAL_WEIGHT / (_RRF_K + rank + 1)
            item.chunks = [
                ScoredChunk(
                    lexicon.chunks[row],
                    fused[row],
                    similarity=similarity.get(row),
                    bm25=float(bm25[row]) if bm25[row] > 0 else None,
                )
                for row in sorted(own, key=lambda row: -fused[row])
            ]

    def unit_vectors(self, chunk_ids: Sequence[str], dimensions: int) -> dict[str, NDArray[np.float32]]:
        """The unit vectors stored at ingest for these chunks, by unit key."""
        return self.catalog.unit_vectors(chunk_ids, dimensions)

    def chunk_terms(self, chunk_id: str) -> frozenset[str]:
        """The index terms of a chunk."""
        lexicon = self.lexicon()
        row = lexicon.row_of.get(chunk_id)
        return lexicon.terms_of_row[row] if row is not None else frozenset()

    def sources(self) -> SourceLevels:
        """The catalog's sources: names, trust levels, and problems with the trust settings."""
        return self.lexicon().sources

    def successor(self, document: DocumentRecord) -> DocumentRecord | None:
        """The document that supersedes `document` (see `_Lexicon.successor`)."""
        return self.lexicon().successor(document)

    def documents_at(self, ref: DocumentRef) -> list[DocumentRecord]:
        """The documents at a path (in the reference's source, when it names one)."""
        return self.lexicon().documents_at(ref)

    def best_chunk(self, document: DocumentRecord, query: str) -> ChunkRecord | None:
        """The document's chunk closest to `query` (BM25 within that document only); None without chunks."""
        lexicon = self.lexicon()
        rows = lexicon.rows_of_document.get(document.doc_id, [])
        if not rows:
            return None
        scores = lexicon.bm25.scores(terms(query))
        return lexicon.chunks[max(rows, key=lambda row: (float(scores[row]), -row))]


def document_features(
    documents: Sequence[RetrievedDocument],
    query_terms: Sequence[str],
    idf: dict[str, float],
    lexicon: _Lexicon,
) -> list[dict[str, float]]:
    """What the re-ranker reads of each document, in the order given:

    - fused: its fused score (x10, so the weights read on a common scale);
    - bm25: its best chunk's BM25 score relative to the best among these documents;
    - title, path: the share of the question's IDF mass in its title, in its path's words;
    - coverage: the share of the question's IDF mass in its three best chunks;
    - retired: superseded or deprecated.
    """
    question = set(query_terms)
    total = sum(idf.get(t, 0.0) for t in question) or 1.0

    def share(found: frozenset[str] | set[str]) -> float:
        return sum(idf.get(t, 0.0) for t in question & found) / total

    best_bm25 = [max((c.bm25 or 0.0 for c in item.chunks), default=0.0) for item in documents]
    top_bm25 = max(best_bm25, default=0.0) or 1.0
    rows = []
    for item, bm25 in zip(documents, best_bm25, strict=True):
        title, path = lexicon.names(item.document)
        passages: set[str] = set()
        for scored in item.chunks[:3]:
            row = lexicon.row_of.get(scored.chunk.chunk_id)
            if row is not None:
                passages |= lexicon.terms_of_row[row]
        rows.append(
            {
                "fused": item.score * 10,
                "bm25": bm25 / top_bm25,
                "title": share(title),
                "path": share(path),
                "coverage": share(passages),
                "retired": 1.0 if item.document.status in _RETIRED else 0.0,
            }
        )
    return rows


def successors_first(
    ranked: Sequence[RetrievedDocument],
    successor: Callable[[DocumentRecord], DocumentRecord | None],
) -> list[RetrievedDocument]:
    """Move each superseded document just below its successor when both were found."""
    order = list(ranked)
    for item in list(order):
        found = successor(item.document)
        if found is None:
            continue
        theirs = next((i for i, other in enumerate(order) if other.document.doc_id == found.doc_id), None)
        mine = order.index(item)
        if theirs is not None and mine < theirs:
            order.pop(mine)
            order.insert(theirs, item)  # the successor moved up by one, so this lands right after it
    return order
