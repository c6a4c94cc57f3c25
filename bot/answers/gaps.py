"""Knowledge gaps on their way to guidance, and the feedback on answers: how the knowledge base grows.

A gap is opened when Steward abstains (bot/answers/questions.py). "Ask an expert" routes it, once: to
the experts channel (`STEWARD_EXPERTS_CHANNEL`) or else to the owners of the nearest documents. An
expert's reply can then be saved as a draft guidance document, once; `steward ingest` closes the gap
when a reviewer accepts the draft. Routing and drafting are claimed atomically in the records database,
so double clicks and several replicas act once; a claim whose work failed is released for another try.

How experts are reached (a Slack channel, people's direct messages) is the caller's: `ExpertReach`.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.answers.guidance import GuidanceDraft, GuidanceError, draft_filename, write_draft
from bot.redaction import mask_secrets
from bot.store.conversations import GAP_CLOSED, GAP_DRAFTED, ConversationStore, Gap

__all__ = [
    "GAP_CLOSED",
    "GAP_DRAFTED",
    "Drafting",
    "ExpertReach",
    "Gap",
    "GapService",
    "Routing",
]

log = logging.getLogger("steward.answers")

# What became of a click on "Ask an expert" or "Save as guidance".
MISSING = "missing"  # no such gap (any more)
ALREADY = "already"  # someone else's click won: the gap is routed, drafted or closed
FAILED = "failed"  # the work failed; the claim is released, so it can be tried again
NOWHERE = "nowhere"  # no experts channel, and none of the owners could be found
ROUTED = "routed"
SAVED = "saved"

MAX_REASON = 2000  # characters of a "not helpful" reason kept


class ExpertReach(Protocol):
    """How the experts are reached (in Slack: a channel, or the owners' direct messages)."""

    def person(self, owner: str) -> str | None:
        """Where to reach the owner a document names (a Slack user id), or None when unknown."""

    def ask(self, gap: Gap, where: Sequence[str]) -> list[str]:
        """Post the gap's question to each place; the posts' ids (Slack message ts), in order."""


@dataclass(frozen=True)
class Routing:
    """What "Ask an expert" did."""

    outcome: str  # ROUTED, ALREADY, FAILED, NOWHERE or MISSING
    gap: Gap | None = None
    channel: str | None = None  # routed to the experts channel
    people: tuple[str, ...] = ()  # or to these owners


@dataclass(frozen=True)
class Drafting:
    """What "Save as guidance" did."""

    outcome: str  # SAVED, ALREADY or FAILED
    gap: Gap  # as it is now (for ALREADY: drafted or closed by whom)
    path: Path | None = None  # the draft written
    error: str = ""  # why it failed


class GapService:
    """Feedback, gaps, their routing to experts and their drafts (the records database)."""

    def __init__(
        self,
        conversations: ConversationStore,
        guidance_inbox: Path,
        experts_channel: str | None = None,
        today: Callable[[], dt.date] = dt.date.today,
    ) -> None:
        self.conversations = conversations
        self.guidance_inbox = guidance_inbox
        self.experts_channel = experts_channel
        self.today = today

    # -- feedback ------------------------------------------------------------------------------

    def record_feedback(self, answer_id: int, user: str, helpful: bool) -> int | None:
        """One person's vote on an answer (a second vote replaces it); None when the answer is not on
        record."""
        if self.conversations.answer(answer_id) is None:
            return None
        return self.conversations.record_feedback(answer_id, user, helpful)

    def give_reason(self, feedback_id: int, user: str, reason: str) -> None:
        """The optional reason of a vote (only its author's counts), stored with credentials masked."""
        self.conversations.set_feedback_reason(feedback_id, user, reason[:MAX_REASON])

    # -- gaps --------------------------------------------------------------------------------------

    def gap(self, gap_id: int) -> Gap | None:
        """A gap by id."""
        return self.conversations.gap(gap_id)

    def open_in_thread(self, channel: str, thread_ts: str) -> Gap | None:
        """The newest gap still waiting for an answer in a thread: the asker's thread or the experts'."""
        return self.conversations.gap_in_thread(channel, thread_ts)

    def asked_in_thread(self, channel: str, thread_ts: str) -> Gap | None:
        """The first gap asked in a thread, whatever its state."""
        gaps = self.conversations.gaps()
        return next((gap for gap in gaps if gap.thread_ts == thread_ts and gap.channel == channel), None)

    def route(self, gap_id: int, user: str, reach: ExpertReach) -> Routing:
        """Ask the experts channel, or else the owners, about a gap: once, whoever clicks first."""
        store = self.conversations
        gap = store.gap(gap_id)
        if gap is None:
            return Routing(MISSING)
        if not store.claim_routing(gap_id, user):
            return Routing(ALREADY, gap)
        try:
            routing = self._route(gap, reach)
        except Exception:
            store.release_routing(gap_id)
            log.exception("routing gap=%s failed", gap_id)
            return Routing(FAILED, gap)
        if routing.outcome == NOWHERE:
            store.release_routing(gap_id)
        else:
            log.info("gap routed gap=%s", gap_id)
        return routing

    def _route(self, gap: Gap, reach: ExpertReach) -> Routing:
        experts = self.experts_channel
        if experts:
            [ts] = reach.ask(gap, [experts])
            self.conversations.set_expert_post(gap.gap_id, experts, ts)
            return Routing(ROUTED, gap, channel=experts)
        people = tuple(dict.fromkeys(uid for uid in (reach.person(owner) for owner in gap.owners) if uid))
        if not people:
            return Routing(NOWHERE, gap)
        reach.ask(gap, people)
        return Routing(ROUTED, gap, people=people)

    def save_draft(self, gap: Gap, author: str, reply: str, thread_url: str | None) -> Drafting:
        """Write `author`'s reply (credentials already masked) as the gap's draft guidance: once."""
        question = mask_secrets(gap.question).text  # a gap recorded before questions were stored masked
        draft = GuidanceDraft(
            gap_id=gap.gap_id,
            question=question,
            answer=reply,
            expert=f"<@{author}>",
            thread_url=thread_url,
            asked_on=self.today(),
        )
        path = self.guidance_inbox / draft_filename(gap.gap_id, question)
        store = self.conversations
        if not store.claim_draft(gap.gap_id, author, str(path)):
            return Drafting(ALREADY, store.gap(gap.gap_id) or gap)
        try:
            written = write_draft(self.guidance_inbox, draft)
        except GuidanceError as exc:
            store.release_draft(gap.gap_id)
            log.error("draft for gap=%s not written: %s", gap.gap_id, exc)
            return Drafting(FAILED, gap, error=str(exc))
        log.info("guidance drafted gap=%s chars=%d", gap.gap_id, len(reply))
        return Drafting(SAVED, gap, path=written)
