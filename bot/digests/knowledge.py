"""Runbook lookups in the knowledge base for the digests, with one rule for a knowledge base that fails.

A digest without an ingested index simply names no runbook. Any other failure (a Chroma server that is
down, a broken index) raises `RunbookLookupError`, which the digest shows next to the finding: the
finding still goes out, and the reader learns why no runbook is named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.answers.retrieval import IndexMissingError, Retriever
from bot.answers.sources import RUNBOOKS, STANDARD, UNTRUSTED
from bot.errors import Unavailable
from bot.store.catalog import DocumentRecord
from bot.store.sources import document_ref

log = logging.getLogger("steward.digests")

# The best match is the first of this many search results in the most trusted source among them.
_CANDIDATES = 5
_PREFERENCE = {RUNBOOKS: 0, STANDARD: 1, UNTRUSTED: 2}


class RunbookLookupError(Unavailable):
    """The knowledge base could not be searched for a runbook."""


def _failed(exc: Exception) -> RunbookLookupError:
    reason = (str(exc).splitlines() or [""])[0][:200] or "no details"
    log.warning("runbook lookup failed error=%s", type(exc).__name__)
    return RunbookLookupError(f"the knowledge base could not be searched ({type(exc).__name__}: {reason})")


def best_match(
    retriever: Callable[[], Retriever], query: str, min_similarity: float = 0.0
) -> DocumentRecord | None:
    """The knowledge base's best document for `query`, preferring sources trusted for runbooks and never
    an untrusted source's, among those whose best passage is at least `min_similarity` similar to it;
    None without an index or without a match."""
    try:
        found = retriever().search(query, limit=_CANDIDATES)
        sources = retriever().sources()
    except IndexMissingError:
        return None
    except Exception as exc:
        raise _failed(exc) from None
    close = [item for item in found.documents if item.best_similarity >= min_similarity]
    ranked = sorted(close, key=lambda item: _PREFERENCE[sources.level(item.document)])
    usable = [item.document for item in ranked if not sources.untrusted(item.document)]
    return usable[0] if usable else None


def by_path(retriever: Callable[[], Retriever], reference: str) -> DocumentRecord | None:
    """The document a reference (`PATH` or `SOURCE:PATH`) names: the one in a source trusted for
    runbooks, else the one in another source that is not untrusted; None without an index, or when no
    document or several fit."""
    try:
        found = retriever().documents_at(document_ref(reference))
        sources = retriever().sources()
    except IndexMissingError:
        return None
    except Exception as exc:
        raise _failed(exc) from None
    for level in (RUNBOOKS, STANDARD):
        fitting = [document for document in found if sources.level(document) == level]
        if fitting:
            return fitting[0] if len(fitting) == 1 else None
    return None
