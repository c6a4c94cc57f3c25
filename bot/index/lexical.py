"""BM25 over the same chunks the vectors describe, held in memory as a sparse matrix.

Terms are computed once at ingest (stored in the catalog), so building the matrix at start-up is
a count, not a tokenisation pass.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

_WORD = re.compile(r"[A-Za-z0-9]+(?:[_.\-/][A-Za-z0-9]+)*")
_PART = re.compile(r"[A-Z]{2,}s(?![a-z])|[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Identifiers worth matching whole: camelCase (alert names) and snake_case (metric names).
_IDENTIFIER = re.compile(r"[a-z0-9][A-Z]|_")

_STOPWORD_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just let
me more most my myself no nor not now of off on once only or other our ours ourselves out over
own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom why will with would you your yours yourself yourselves whats hows im ive dont doesnt didnt
isnt cant wont shall may might must also get got us one actually even still really
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def identifiers(text: str) -> list[str]:
    """Whole identifiers of a text, as index terms: camelCase, snake_case and letter-digit words (`15d`)."""
    found: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        if len(_PART.findall(word)) > 1 and (_IDENTIFIER.search(word) or word.isalnum()) and len(word) <= 60:
            found.append(word.lower())
    return found


def terms(text: str) -> list[str]:
    """Index terms of a text: stemmed words, camelCase and snake_case parts, and whole identifiers."""
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        parts = _PART.findall(word)
        if len(parts) > 1 and (_IDENTIFIER.search(word) or word.isalnum()):
            # Keep the whole identifier (exact alert names match strongly) and its parts.
            whole = word.lower()
            if len(whole) <= 60:
                out.append(whole)
        for part in parts:
            lowered = part.lower()
            if lowered in STOPWORDS or (len(lowered) == 1 and not lowered.isdigit()):
                continue
            out.append(_stem(lowered))
    return out


@dataclass(frozen=True)
class LexicalHit:
    """A chunk's position in the index and its BM25 score."""

    row: int
    score: float


class BM25Index:
    """Okapi BM25 (k1=1.2, b=0.75) over pre-tokenised chunks."""

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> None:
        self.size = len(documents)
        vocabulary: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(self.size, dtype=np.float32)
        for row, doc_terms in enumerate(documents):
            lengths[row] = len(doc_terms)
            for term, count in Counter(doc_terms).items():
                col = vocabulary.setdefault(term, len(vocabulary))
                rows.append(row)
                cols.append(col)
                counts.append(count)
        self.vocabulary = vocabulary
        n_terms = len(vocabulary)
        tf = np.asarray(counts, dtype=np.float32)
        row_index = np.asarray(rows, dtype=np.int64)
        col_index = np.asarray(cols, dtype=np.int64)
        df = np.bincount(col_index, minlength=n_terms).astype(np.float32) if n_terms else np.zeros(0)
        self.document_frequency = df
        self.idf = np.log(1.0 + (self.size - df + 0.5) / (df + 0.5)).astype(np.float32)
        average = float(lengths.mean()) if self.size else 1.0
        norm = k1 * (1.0 - b + b * lengths[row_index] / max(average, 1e-6)) if self.size else tf
        weights = self.idf[col_index] * tf * (k1 + 1.0) / (tf + norm) if n_terms else tf
        self.matrix = sparse.csc_matrix(
            (weights, (row_index, col_index)), shape=(self.size, n_terms), dtype=np.float32
        )

    def idf_of(self, term: str) -> float:
        """Inverse document frequency of a term; an unseen term gets the highest possible value."""
        col = self.vocabulary.get(term)
        if col is None:
            return math.log(1.0 + (self.size + 0.5) / 0.5)
        return float(self.idf[col])

    def scores(self, query_terms: Iterable[str]) -> NDArray[np.float32]:
        """BM25 score of every chunk for the query."""
        cols = [self.vocabulary[t] for t in query_terms if t in self.vocabulary]
        if not cols or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self.matrix[:, cols].sum(axis=1)).ravel()

    def search(
        self, query_terms: Sequence[str], k: int, allowed: NDArray[np.bool_] | None = None
    ) -> list[LexicalHit]:
        """The k best chunks, optionally only among `allowed` rows."""
        scores = self.scores(query_terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        if not scores.size:
            return []
        k = min(k, scores.size)
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [LexicalHit(row=int(r), score=float(scores[r])) for r in top if scores[r] > 0]
