"""Events a dead replica left unanswered, and the heartbeats that tell a dead replica from a slow one.

A replica claims each question event with its id (`claim_event` with `EventWork`) and finishes it when the
answer is posted. Every replica records a heartbeat at each housekeeping round. An event that is still
open, and whose owner has not been seen for `dead_after` seconds, is taken over by exactly one live
replica (an atomic update of the owner), which reads the message from Slack again and answers it. A slow
replica keeps its heartbeat, so its events are never answered twice.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store.conversations import metadata, slack_events

steward_replicas = sa.Table(
    "steward_replicas",
    metadata,
    sa.Column("replica", sa.String(96), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False, index=True),
)


def replica_name() -> str:
    """This process: host, pid and a random part (pids repeat after a restart)."""
    return f"{socket.gethostname()[:48]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class OpenEvent:
    """An event claimed but not finished."""

    event_id: str
    owner: str
    channel: str
    message_ts: str
    thread_ts: str | None
    received_at: float


class EventLedger:
    """Heartbeats and the take-over of events their replica did not finish (on migrated records)."""

    def __init__(self, engine: Engine, name: str, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.name = name
        self.clock = clock

    def heartbeat(self) -> None:
        """This replica is alive (called at start and at every housekeeping round)."""
        now = self.clock()
        with self.engine.begin() as connection:
            updated = connection.execute(
                sa.update(steward_replicas).where(steward_replicas.c.replica == self.name).values(seen_at=now)
            ).rowcount
            if not updated:
                connection.execute(sa.insert(steward_replicas).values(replica=self.name, seen_at=now))
            # replicas gone for a day are forgotten
            connection.execute(sa.delete(steward_replicas).where(steward_replicas.c.seen_at < now - 86_400))

    def orphans(self, dead_after: float, younger_than: float) -> list[OpenEvent]:
        """Open events (of the last `younger_than` s) whose owner has not been seen for `dead_after` s."""
        now = self.clock()
        alive = sa.select(steward_replicas.c.replica).where(steward_replicas.c.seen_at >= now - dead_after)
        query = sa.select(slack_events).where(
            slack_events.c.done_at.is_(None),
            slack_events.c.channel.is_not(None),
            slack_events.c.received_at >= now - younger_than,
            slack_events.c.received_at < now - dead_after,
            slack_events.c.owner.not_in(alive),
        )
        with self.engine.connect() as connection:
            return [
                OpenEvent(
                    row.event_id, row.owner, row.channel, row.message_ts, row.thread_ts, row.received_at
                )
                for row in connection.execute(query.order_by(slack_events.c.received_at))
            ]

    def take_over(self, event: OpenEvent) -> bool:
        """Make this replica the event's owner; True for exactly one of the replicas that try."""
        with self.engine.begin() as connection:
            changed = connection.execute(
                sa.update(slack_events)
                .where(
                    slack_events.c.event_id == event.event_id,
                    slack_events.c.owner == event.owner,
                    slack_events.c.done_at.is_(None),
                )
                .values(owner=self.name)
            ).rowcount
        return bool(changed)
