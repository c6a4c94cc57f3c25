"""The state of the knowledge base, as the App Home tab and the assistant pane show it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.store.catalog import Catalog, CatalogError, DocumentRecord
from bot.store.conversations import GAP_DRAFTED, GAP_OPEN, GAP_ROUTED, ConversationStore

__all__ = ["DocumentRecord", "KnowledgeBase", "KnowledgeState"]

log = logging.getLogger("steward.answers")


@dataclass(frozen=True)
class KnowledgeState:
    """How big and how current the knowledge base is, and what waits for the experts and reviewers."""

    documents: int
    last_ingest: dt.datetime | None
    stale: list[tuple[str, str, str | None]]  # (title, review-by date, owner), the earliest due first
    open_gaps: int  # open or routed to the experts
    drafts_waiting: int  # draft guidance waiting for review


class KnowledgeBase:
    """Reads the catalog (documents, last ingest) and the knowledge gaps."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        conversations: ConversationStore,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self._catalog = catalog
        self.conversations = conversations
        self.today = today

    def state(self) -> KnowledgeState:
        """Documents, last ingest, documents past their review date, gaps and drafts."""
        catalog = self._catalog()
        documents = catalog.documents()
        today = self.today().isoformat()
        stale = sorted(
            ((d.title, d.review_by or "", d.owner) for d in documents if d.review_by and d.review_by < today),
            key=lambda row: (row[1], row[0]),
        )
        raw_last = catalog.get_meta("last_ingest_at")
        last = dt.datetime.fromtimestamp(float(raw_last), tz=dt.UTC) if raw_last else None
        gaps = self.conversations.gaps([GAP_OPEN, GAP_ROUTED, GAP_DRAFTED])
        return KnowledgeState(
            documents=len(documents),
            last_ingest=last,
            stale=stale,
            open_gaps=sum(1 for gap in gaps if gap.status != GAP_DRAFTED),
            drafts_waiting=sum(1 for gap in gaps if gap.status == GAP_DRAFTED),
        )

    def documents(self) -> list[DocumentRecord] | None:
        """Every document, or None when the catalog cannot be read."""
        try:
            return self._catalog().documents()
        except CatalogError as exc:
            log.warning("knowledge base unreadable error=%s", type(exc).__name__)
            return None
