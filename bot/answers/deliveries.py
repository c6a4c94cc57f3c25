"""Which replica answers which question: each delivered event claimed once, and the events a dead replica
left unanswered taken over by one live replica (bot/store/events.py says how)."""

from __future__ import annotations

from bot.store.conversations import ConversationStore, EventWork
from bot.store.events import EventLedger, OpenEvent

__all__ = ["Deliveries", "OpenEvent"]


class Deliveries:
    """Claims delivered events (across replicas); with a ledger, question events stay open until finished."""

    def __init__(
        self, conversations: ConversationStore, retention_seconds: float, ledger: EventLedger | None = None
    ) -> None:
        self.conversations = conversations
        self.retention_seconds = retention_seconds  # how long an event id is remembered
        self.ledger = ledger

    @property
    def replica(self) -> str | None:
        """This replica's name in the ledger (None without one: claimed events are done at once)."""
        return None if self.ledger is None else self.ledger.name

    def claim(
        self,
        event_id: str,
        channel: str | None = None,
        message_ts: str = "",
        thread_ts: str | None = None,
        retention_seconds: float | None = None,
    ) -> bool:
        """True for the first delivery of an event id (or any key claimed once), False for a retry or
        another replica's.

        With the question's `channel` and `message_ts` and a ledger, the event stays open until `finish`:
        if this replica dies first, a live one answers it (`orphans`, `take_over`). `retention_seconds`
        keeps this key longer than events are kept.
        """
        work = None
        if channel is not None and self.ledger is not None:
            work = EventWork(self.ledger.name, channel, message_ts, thread_ts)
        retention = self.retention_seconds if retention_seconds is None else retention_seconds
        return self.conversations.claim_event(event_id, retention, work)

    def finish(self, event_id: str) -> None:
        """The event is handled: no other replica needs to take it over."""
        self.conversations.finish_event(event_id)

    def heartbeat(self) -> None:
        """This replica is alive."""
        if self.ledger is not None:
            self.ledger.heartbeat()

    def orphans(self, dead_after: float) -> list[OpenEvent]:
        """Open events (still remembered) of replicas not seen for `dead_after` seconds."""
        if self.ledger is None:
            return []
        return self.ledger.orphans(dead_after, self.retention_seconds)

    def take_over(self, event: OpenEvent) -> bool:
        """Make this replica the event's owner; True for exactly one of the replicas that try."""
        return self.ledger is not None and self.ledger.take_over(event)
