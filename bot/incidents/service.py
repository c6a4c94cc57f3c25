"""Incidents declared by people: declare, resolve, acknowledge (the Slack command only parses and posts).

A declared incident's message thread is its timeline; the first reply there by someone other than the
declarer acknowledges it (the incident digest's time to acknowledge).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.incidents.records import IncidentStore
from bot.redaction import mask_secrets

SEVERITIES = ("1", "2", "3", "4", "5")
MAX_SERVICE = 128  # the incidents table's service column


@dataclass(frozen=True)
class Declared:
    """A declared incident, as stored: credentials in its title and service masked."""

    number: int
    title: str
    severity: str
    service: str | None
    masked: tuple[str, ...]  # the kinds of credential masked in the title (to tell the declarer)


@dataclass(frozen=True)
class Resolved:
    """A resolved incident: how long it was open, and its thread (None, None: not declared in Slack)."""

    number: int
    minutes: float
    channel: str | None
    thread: str | None


class IncidentService:
    """Declared incidents in the incident store."""

    def __init__(self, store: IncidentStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def declare(self, title: str, severity: str, service: str | None, user: str, channel: str) -> Declared:
        """Record an incident `user` declared in `channel` (its severity one of SEVERITIES)."""
        masked = mask_secrets(title)  # posted for the channel to see, and stored
        service = mask_secrets(service or "").text or None
        number = self.store.declare(masked.text, severity, service, user, channel, self.clock())
        return Declared(number, masked.text, severity, service, tuple(masked.kinds))

    def posted(self, number: int, thread: str) -> None:
        """The declaration was posted: its thread is the incident's timeline."""
        self.store.set_thread(number, thread)

    def resolve(self, number: int) -> Resolved | None:
        """Resolve an open incident (None: there is no open incident `number`)."""
        incident = self.store.resolve(number, self.clock())
        if incident is None:
            return None
        minutes = ((incident.resolved_at or incident.started_at) - incident.started_at) / 60
        channel, thread = self.store.thread_of(incident.incident_id)
        return Resolved(number, minutes, channel, thread)

    def replied(self, channel: str, thread: str, user: str) -> bool:
        """A reply in a thread; True when it acknowledged an incident (the first by someone else)."""
        return self.store.acknowledge_in_thread(channel, thread, user, self.clock())
