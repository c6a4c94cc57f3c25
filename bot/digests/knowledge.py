"""Runbook lookups in the knowledge base for the digests, with one rule for a knowledge base that fails.

A digest without an ingested index simply names no runbook. Any other failure (a Chroma server that is
down, a broken index) raises `RunbookLookupError`, which the digest shows next to the finding: the
finding still goes out, and the reader learns why no runbook is named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.answers.retrieval import IndexMissingError, Retriever
from bot.store.catalog import DocumentRecord

log = logging.getLogger("steward.digests")


class RunbookLookupError(Exception):
    """The knowledge base could not be searched for a runbook."""


def _failed(exc: Exception) -> RunbookLookupError:
    reason = (str(exc).splitlines() or [""])[0][:200] or "no details"
    log.warning("runbook lookup failed error=%s", type(exc).__name__)
    return RunbookLookupError(f"the knowledge base could not be searched ({type(exc).__name__}: {reason})")


def best_match(retriever: Callable[[], Retriever], query: str) -> DocumentRecord | None:
    """The knowledge base's best document for `query`; None without an index or without a match."""
    try:
        found = retriever().search(query, limit=1)
    except IndexMissingError:
        return None
    except Exception as exc:
        raise _failed(exc) from None
    return found.documents[0].document if found.documents else None


def by_path(retriever: Callable[[], Retriever], path: str) -> DocumentRecord | None:
    """The document ingested from `path`; None without an index or when it is not there."""
    try:
        return retriever().document_by_path(path)
    except IndexMissingError:
        return None
    except Exception as exc:
        raise _failed(exc) from None
