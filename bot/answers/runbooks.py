"""Which runbook passage an approval card may quote, and where a cited document can be opened.

The choice is the knowledge base's: only a document in a source trusted for runbooks is quoted, and only
when it is the one such document the action's reference names. The Slack layer renders the result.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cachetools import TTLCache

from bot.actions.models import ActionSpec
from bot.answers.service import AnswerService
from bot.answers.sources import RUNBOOK_SETTING, RUNBOOKS, SourceLevels
from bot.store.catalog import DocumentRecord
from bot.store.sources import DocumentRef, document_ref

log = logging.getLogger("steward.answers")

# A card is redrawn at every click that changes it; the passage it cites changes only with an ingest.
EXCERPT_SECONDS = 60.0
# More actions than a catalog holds; past it the least recently used is looked up again.
MAX_EXCERPTS = 1024


@dataclass(frozen=True)
class RunbookExcerpt:
    """The passage of an action's runbook shown on its card; no `title`: not quoted (`problem` says why,
    else it is not in the knowledge base)."""

    path: str
    title: str | None = None
    section: str = ""
    text: str = ""
    url: str | None = None
    source: str | None = None  # the quoted document's source, named when the catalog holds several
    problem: str | None = None


def document_url(
    url: str | None, path: str, docs_base_url: str | None, allowed: Callable[[str], bool] | None = None
) -> str | None:
    """The document's own http(s) URL (if `allowed` takes it), else the base URL plus its path, else None."""
    if url and url.startswith(("http://", "https://")) and (allowed is None or allowed(url)):
        return url
    if docs_base_url:
        return docs_base_url.rstrip("/") + "/" + path.lstrip("/")
    return None


class RunbookExcerpts:
    """The passage of an action's runbook closest to what the action does, kept for a minute."""

    def __init__(
        self,
        answers: Callable[[], AnswerService],
        docs_base_url: str | None,
        allowed: Callable[[str], bool] | None = None,
        keep_seconds: float = EXCERPT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._answers = answers
        self._base = docs_base_url
        self._allowed = allowed
        # TTLCache is not thread-safe: every use holds the lock (cards are drawn concurrently).
        self._kept: TTLCache[str, RunbookExcerpt] = TTLCache(MAX_EXCERPTS, keep_seconds, timer=clock)
        self._lock = threading.Lock()

    def __call__(self, spec: ActionSpec) -> RunbookExcerpt:
        """The excerpt for the action's runbook; no text when the runbook is not in the knowledge base."""
        key = f"{spec.runbook}\n{spec.name}\n{spec.description}"
        with self._lock:
            kept = self._kept.get(key)
        if kept is not None:
            return kept
        excerpt = self._look_up(spec)
        if excerpt is None:  # the knowledge base could not be read: not kept, tried again next time
            return RunbookExcerpt(str(spec.runbook))
        with self._lock:
            self._kept[key] = excerpt
        return excerpt

    def _look_up(self, spec: ActionSpec) -> RunbookExcerpt | None:
        """The excerpt, or None when the knowledge base could not be read (then not kept).

        Only a document in a source trusted for runbooks is quoted, and only when it is the one such
        document the reference names: a copy of the runbook in another folder is never quoted.
        """
        ref = document_ref(str(spec.runbook))
        try:
            retriever = self._answers().retriever
            sources = retriever.sources()
            found = retriever.documents_at(ref)
            trusted = [document for document in found if sources.level(document) == RUNBOOKS]
            query = f"{spec.name.replace('-', ' ')} {spec.description}"
            chunk = retriever.best_chunk(trusted[0], query) if len(trusted) == 1 else None
        except Exception as exc:  # the card still works without its excerpt
            log.warning("runbook excerpt unavailable path=%s error=%s", ref, type(exc).__name__)
            return None
        if len(trusted) != 1 or chunk is None:
            return RunbookExcerpt(str(ref), problem=unquoted_because(ref, found, trusted, sources))
        document = trusted[0]
        url = document_url(document.url, document.path, self._base, self._allowed)
        source = document.source if sources.several else None
        return RunbookExcerpt(document.path, document.title, chunk.section, chunk.text, url, source)


def unquoted_because(
    ref: DocumentRef,
    found: Sequence[DocumentRecord],
    trusted: Sequence[DocumentRecord],
    sources: SourceLevels,
) -> str | None:
    """Why the card quotes no runbook; None when no document is at the reference's path at all."""
    if len(trusted) > 1:
        names = " and ".join(f"`{document.source}`" for document in trusted)
        return (
            f"{len(trusted)} documents match, in {names}; name one as `SOURCE:PATH` in the action's "
            "`runbook` field"
        )
    known = ", ".join(f"`{name}`" for name in sorted(sources.names.values()))
    if not found:
        if ref.source is not None and sources.root_of(ref.source) is None:
            return f"no ingested source is named `{ref.source}` (the sources are: {known or 'none'})"
        return None
    holders = " and ".join(f"`{document.source}`" for document in found)
    if not sources.runbooks_set:
        why = f"{RUNBOOK_SETTING} is unset and {len(sources.names)} sources are ingested ({known})"
    else:
        chosen = ", ".join(f"`{name}`" for name in sources.named(RUNBOOKS)) or "none that is ingested"
        why = f"the sources trusted for runbooks are {chosen}"
    problems = "".join(f"; {problem}" for problem in sources.problems)
    return (
        f"it is in {holders}, not in a source trusted for runbooks: {why}. Set {RUNBOOK_SETTING} to "
        f"the source that holds your runbooks{problems}"
    )
