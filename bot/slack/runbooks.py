"""The runbook passage an approval card cites, and where a cited document can be opened."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.actions.models import ActionSpec
from bot.answers.service import AnswerService
from bot.slack.action_cards import RunbookExcerpt
from bot.slack.kept import Kept

log = logging.getLogger("steward.slack")

# A card is redrawn at every click that changes it; the passage it cites changes only with an ingest.
EXCERPT_SECONDS = 60.0


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
        self._kept: Kept[str, RunbookExcerpt] = Kept(keep_seconds, clock)

    def __call__(self, spec: ActionSpec) -> RunbookExcerpt:
        """The excerpt for the action's runbook; no text when the runbook is not in the knowledge base."""
        key = f"{spec.runbook}\n{spec.name}\n{spec.description}"
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        excerpt = self._look_up(spec)
        if excerpt is None:  # the knowledge base could not be read: not kept, tried again next time
            return RunbookExcerpt(str(spec.runbook))
        return self._kept.put(key, excerpt)

    def _look_up(self, spec: ActionSpec) -> RunbookExcerpt | None:
        """The excerpt, or None when the knowledge base could not be read (then not kept)."""
        path = str(spec.runbook)
        try:
            found = self._answers().retriever.best_passage(
                path, f"{spec.name.replace('-', ' ')} {spec.description}"
            )
        except Exception as exc:  # the card still works without its excerpt
            log.warning("runbook excerpt unavailable path=%s error=%s", path, type(exc).__name__)
            return None
        if found is None:
            return RunbookExcerpt(path)
        document, chunk = found
        url = document_url(document.url, path, self._base, self._allowed)
        return RunbookExcerpt(path, document.title, chunk.section, chunk.text, url)
