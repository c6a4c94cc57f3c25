"""Rank 1: the document re-ranker's weights, fitted on folds and reported held out.

    .venv/bin/python -m bench.ranking --data-dir DIR --questions ../shared/eval/dev.jsonl

DIR holds an index of ../shared/corpora (`STEWARD_DATA_DIR=DIR steward ingest ../shared/corpora`).

The first stage (dense and BM25 fused by reciprocal rank) runs once per question; the re-ranker reads
`document_features` of its ten best documents and is a logistic model of "this document is relevant".
For each of k folds the model is fitted on the other folds; the held-out fold is then searched again
by the real retriever with those weights, so the held-out figures (recall@5, MRR@10, hit@1, hint@1) are
what a user would get. Finally the model is fitted on all questions: those are the weights to ship in
`bot/answers/retrieval.py` (RERANK_WEIGHTS).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.answers import fit_logistic, folds_of
from bench.report import cross_validation_inputs, save
from bot.answers.evaluation import LabelledQuestion
from bot.answers.retrieval import (
    PASSAGE_CHUNKS,
    RERANK_DEPTH,
    RERANK_WEIGHTS,
    Retrieval,
    Retriever,
    document_features,
)

FEATURES = tuple(RERANK_WEIGHTS)


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


def figures(questions: Sequence[LabelledQuestion], retrievals: Sequence[Retrieval]) -> dict[str, float]:
    """recall@5, MRR@10, hit@1 (the top document is relevant) and hint@1 (the answer hint is in the top
    document's passage: its best chunks) over the answerable questions."""
    recall = mrr = hit = hint = 0.0
    answerable = 0
    for labelled, retrieval in zip(questions, retrievals, strict=True):
        if not labelled.answerable:
            continue
        answerable += 1
        paths = [item.document.path for item in retrieval.documents]
        position = next((i for i, p in enumerate(paths[:10], start=1) if p in labelled.relevant), None)
        recall += 1.0 if position and position <= 5 else 0.0
        mrr += 1.0 / position if position else 0.0
        hit += 1.0 if position == 1 else 0.0
        if retrieval.documents and labelled.answer_hint:
            top = retrieval.documents[0]
            passage = " ".join(scored.chunk.text for scored in top.chunks[:PASSAGE_CHUNKS])
            hint += 1.0 if _normalise(labelled.answer_hint) in _normalise(passage) else 0.0
    return {
        "recall@5": round(recall / answerable, 3),
        "mrr@10": round(mrr / answerable, 3),
        "hit@1": round(hit / answerable, 3),
        "hint@1": round(hint / answerable, 3),
    }


def design(
    retriever: Retriever, questions: Sequence[LabelledQuestion], retrievals: Sequence[Retrieval]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per question: the features of its first-stage top documents and whether each is relevant."""
    lexicon = retriever.lexicon()
    out = []
    for labelled, retrieval in zip(questions, retrievals, strict=True):
        head = retrieval.documents[:RERANK_DEPTH]
        rows = document_features(head, retrieval.question_terms, retrieval.idf, lexicon)
        x = np.array([[row[name] for name in FEATURES] for row in rows]).reshape(len(rows), len(FEATURES))
        y = np.array([1.0 if item.document.path in labelled.relevant else 0.0 for item in head])
        out.append((x, y))
    return out


def _fit(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    x = np.vstack([p[0] for p in pairs if len(p[0])])
    y = np.concatenate([p[1] for p in pairs if len(p[1])])
    weights = fit_logistic(x, y)
    return {name: round(float(w), 2) for name, w in zip(FEATURES, weights[:-1], strict=True)}


def main() -> int:
    args, questions, services = cross_validation_inputs(__doc__.splitlines()[0], "ranking")
    retriever = services.retriever
    started = time.perf_counter()

    retriever.rerank = None
    first_stage = [retriever.search(q.question, limit=RERANK_DEPTH) for q in questions]
    pairs = design(retriever, questions, first_stage)
    folds = folds_of(len(questions), args.folds, args.seed)
    held_out: list[Retrieval | None] = [None] * len(questions)
    per_fold: list[dict[str, float]] = []
    for fold in folds:
        members = set(fold)
        weights = _fit(
            [pairs[q] for q in range(len(questions)) if q not in members and questions[q].answerable]
        )
        per_fold.append(weights)
        retriever.rerank = weights
        for q in fold:
            held_out[q] = retriever.search(questions[q].question, limit=10)
    everyone = _fit([pair for pair, q in zip(pairs, questions, strict=True) if q.answerable])
    retriever.rerank = RERANK_WEIGHTS
    shipped = [retriever.search(q.question, limit=10) for q in questions]

    result: dict[str, Any] = {
        "questions": len(questions),
        "folds": args.folds,
        "seed": args.seed,
        "first_stage": figures(questions, first_stage),
        "reranked_held_out": figures(questions, [r for r in held_out if r is not None]),
        "shipped_weights_on_all (not held out)": figures(questions, shipped),
        "weights_per_fold": per_fold,
        "weights_on_all": everyone,
        "weights_shipped": RERANK_WEIGHTS,
        "weight_spread": {
            name: round(statistics.pstdev(fold[name] for fold in per_fold), 2) for name in FEATURES
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    services.close()
    return save(result, args.out)


if __name__ == "__main__":
    sys.exit(main())
