"""The answer service: one entry point for `steward ask`, evaluation and (later) Slack."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from bot.answers.compose import (
    DEFAULT_METHOD,
    ExcerptMethod,
    Similarity,
    abstention_text,
    citation_for,
    confidence,
    extractive_answer,
    warnings_for,
)
from bot.answers.conversation import standalone_question
from bot.answers.excerpts import unit_key
from bot.answers.llm import LLMResult, LLMWriter
from bot.answers.models import Answer, Passage
from bot.answers.retrieval import PASSAGE_CHUNKS, Filters, Retrieval, RetrievedDocument, Retriever
from bot.errors import UsageError
from bot.redaction import without_secrets


def _passage(item: RetrievedDocument) -> Passage:
    best = item.chunks[0]
    chosen = sorted(item.chunks[:PASSAGE_CHUNKS], key=lambda scored: scored.chunk.ord)
    return Passage(
        path=item.document.path,
        section=best.chunk.section,
        text="\n\n[…]\n\n".join(scored.chunk.text for scored in chosen),
        score=best.fused,
    )


class EmptyQuestionError(UsageError, ValueError):
    """The question has no words."""


class AnswerService:
    """Retrieve, decide whether to answer, compose (or have an LLM write) and cite."""

    def __init__(
        self,
        retriever: Retriever,
        abstain_below: float,
        sources: int = 5,
        writer: LLMWriter | None = None,
        today: Callable[[], dt.date] = dt.date.today,
        method: ExcerptMethod = DEFAULT_METHOD,
    ) -> None:
        self.retriever = retriever
        self.abstain_below = abstain_below
        self.sources = sources
        self.writer = writer
        self.today = today
        self.method = method

    def _similarity(self, retrieval: Retrieval, cited: Sequence[RetrievedDocument]) -> Similarity | None:
        """Cosine similarity of units to the question: from the unit vectors stored at ingest for the
        chunks excerpts come from, the model embedding only what is not stored (a unit that spans
        two chunks, an index built before unit vectors were stored)."""
        vector = retrieval.vector
        if vector is None:
            return None
        chunk_ids = [
            scored.chunk.chunk_id
            for item in cited[: self.method.documents]
            for scored in item.chunks[: self.method.chunks]
        ]
        known = self.retriever.unit_vectors(chunk_ids, len(vector))
        embed = self.retriever.embedder.embed
        limit = self.method.semantic_characters

        def similarity(texts: Sequence[str]) -> list[float]:
            keys = [unit_key(text[:limit]) for text in texts]
            missing = {key: text[:limit] for key, text in zip(keys, texts, strict=True) if key not in known}
            if missing:
                known.update(zip(missing, embed(list(missing.values())), strict=True))
            return [float(known[key] @ vector) for key in keys]

        return similarity

    def ask(
        self,
        question: str,
        filters: Filters | None = None,
        earlier: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question from the knowledge base, or abstain and say who might know.

        `earlier` holds the previous questions of a conversation (oldest first); a follow-up such as
        "and for staging?" is searched together with the question before it. `on_text`, when given,
        receives an LLM's text as it is written (Slack shows it live): unchecked, so whatever shows it
        must replace it with the answer returned, which may be the extractive one after all.
        """
        question = question.strip()
        if not question:
            raise EmptyQuestionError(
                'the question is empty: ask something, e.g. steward ask "how do I roll back a model?"'
            )
        # secrets and personal data are never embedded or searched for (nor sent to an LLM: see llm.py)
        query = standalone_question(without_secrets(question), [without_secrets(text) for text in earlier])
        retrieval = self.retriever.search(query, filters, limit=10)
        passages = [_passage(item) for item in retrieval.documents]
        chunk_terms = {
            scored.chunk.chunk_id: self.retriever.chunk_terms(scored.chunk.chunk_id)
            for item in retrieval.documents[:1]
            for scored in item.chunks[:3]
        }
        sure = confidence(retrieval, chunk_terms)
        cited = retrieval.documents[: self.sources]

        index_warnings = [retrieval.index_problem] if retrieval.index_problem else []
        if not cited or sure.value < self.abstain_below:
            owners = list(dict.fromkeys(item.document.owner for item in cited if item.document.owner))
            return Answer(
                question=question,
                answer=abstention_text(owners),
                abstained=True,
                confidence=sure.value,
                owners=owners,
                warnings=index_warnings,
                retrieved=passages,
            )

        sources = self.retriever.sources()
        citations = [citation_for(item, sources) for item in cited]
        successors = [self.retriever.successor(item.document) for item in cited]
        composed = extractive_answer(retrieval, cited, self.method, self._similarity(retrieval, cited))
        for number, section in composed.sections.items():
            # the section the excerpt really came from, not only the document's best-matching one
            citations[number - 1] = citations[number - 1].model_copy(update={"section": section})
        text = composed.text
        written_by = "extractive"
        fallback_reason = None
        if self.writer is not None:
            result = self._written(self.writer, query, cited, on_text, composed.text)
            if result.text is not None:
                text, written_by = result.text, self.writer.spec
            else:
                fallback_reason = result.rejected_because
        return Answer(
            question=question,
            answer=text,
            abstained=False,
            confidence=sure.value,
            citations=citations,
            warnings=index_warnings
            + warnings_for(citations, [s.title if s else None for s in successors], self.today()),
            written_by=written_by,
            fallback_reason=fallback_reason,
            retrieved=passages,
        )

    @staticmethod
    def _written(
        writer: LLMWriter,
        query: str,
        cited: Sequence[RetrievedDocument],
        on_text: Callable[[str], None] | None,
        excerpts: str,
    ) -> LLMResult:
        """The LLM's checked answer, its text handed to `on_text` piece by piece as it streams in."""
        if on_text is None:
            return writer.write(query, cited, excerpts)
        stream = writer.stream(query, cited, excerpts)
        for delta in stream:
            on_text(delta)
        return stream.result or LLMResult(None, "the LLM stream ended without a result")
