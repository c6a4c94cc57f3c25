"""What Steward remembers about conversations: delivered events, sticky threads, answers, feedback, gaps.

These tables are records: they live in the records database (SQLite or PostgreSQL; never the derived
knowledge catalog's file) so that several replicas share them: an event id claimed by one replica is
skipped by the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, IntegrityError

from bot.redaction import mask_secrets
from bot.store.schema import StateStoreError as StateStoreError  # its old home; importers keep working
from bot.store.schema import damaged_records

metadata = sa.MetaData()

slack_events = sa.Table(
    "slack_events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    # Who answers it, and where (no text): a live replica answers what a dead one left (bot/store/events.py)
    sa.Column("owner", sa.String(96), nullable=True),
    sa.Column("channel", sa.String(32), nullable=True),
    sa.Column("message_ts", sa.String(32), nullable=True),
    sa.Column("thread_ts", sa.String(32), nullable=True),
    sa.Column("done_at", sa.Float, nullable=True),
)

slack_threads = sa.Table(
    "slack_threads",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("thread_ts", sa.String(32), primary_key=True),
    sa.Column("answered_at", sa.Float, nullable=False),
)

slack_channels = sa.Table(
    "slack_channels",
    metadata,
    sa.Column("channel", sa.String(32), primary_key=True),
    sa.Column("sticky", sa.Boolean, nullable=False),
    sa.Column("changed_by", sa.String(32), nullable=False),
    sa.Column("changed_at", sa.Float, nullable=False),
)

answer_log = sa.Table(
    "answer_log",
    metadata,
    sa.Column("answer_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=True),
    sa.Column("asker", sa.String(32), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("cited", sa.Text, nullable=False),  # JSON list of document paths
    sa.Column("confidence", sa.Float, nullable=False),
    sa.Column("abstained", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("answer_id", sa.Integer, nullable=False),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("helpful", sa.Boolean, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.UniqueConstraint("answer_id", "user_id", name="feedback_one_per_person"),
)

knowledge_gaps = sa.Table(
    "knowledge_gaps",
    metadata,
    sa.Column("gap_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("thread_ts", sa.String(32), nullable=False),
    sa.Column("asker", sa.String(32), nullable=False),
    sa.Column("owners", sa.Text, nullable=False),  # JSON list, as the documents name them
    sa.Column("source", sa.String(16), nullable=False),  # 'abstention' or 'not_helpful'
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("routed_by", sa.String(32), nullable=True),
    sa.Column("routed_at", sa.Float, nullable=True),
    sa.Column("expert_channel", sa.String(32), nullable=True),
    sa.Column("expert_ts", sa.String(32), nullable=True),
    sa.Column("expert", sa.String(32), nullable=True),
    sa.Column("draft_path", sa.Text, nullable=True),
    sa.Column("drafted_at", sa.Float, nullable=True),
    sa.Column("closed_by_path", sa.Text, nullable=True),
    sa.Column("closed_at", sa.Float, nullable=True),
)

GAP_OPEN = "open"
GAP_ROUTED = "routed"
GAP_DRAFTED = "drafted"
GAP_CLOSED = "closed"


@dataclass(frozen=True)
class EventWork:
    """Where an event's message is, and which replica handles it (no text is stored)."""

    owner: str
    channel: str
    message_ts: str
    thread_ts: str | None = None


@dataclass(frozen=True)
class Gap:
    """A question the knowledge base could not answer, and how far it is on its way to guidance."""

    gap_id: int
    question: str
    channel: str
    thread_ts: str
    asker: str
    owners: tuple[str, ...]
    source: str
    status: str
    expert_channel: str | None
    expert_ts: str | None
    expert: str | None
    draft_path: str | None
    closed_by_path: str | None


@dataclass(frozen=True)
class LoggedAnswer:
    """An answer Steward posted, as feedback refers to it."""

    answer_id: int
    channel: str
    thread_ts: str | None
    asker: str
    question: str
    cited: tuple[str, ...]
    abstained: bool


def _gap(row: sa.Row[tuple[object, ...]]) -> Gap:
    m = row._mapping
    return Gap(
        gap_id=int(m["gap_id"]),
        question=str(m["question"]),
        channel=str(m["channel"]),
        thread_ts=str(m["thread_ts"]),
        asker=str(m["asker"]),
        owners=tuple(json.loads(str(m["owners"]))),
        source=str(m["source"]),
        status=str(m["status"]),
        expert_channel=m["expert_channel"],
        expert_ts=m["expert_ts"],
        expert=m["expert"],
        draft_path=m["draft_path"],
        closed_by_path=m["closed_by_path"],
    )


class ConversationStore:
    """Repository over the conversation tables; every method is one short transaction.

    The records database is migrated before a store is built on it (once, at start-up: bot/wiring.py).
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except IntegrityError:
            raise
        except DatabaseError as exc:
            where = self.engine.url.render_as_string(hide_password=True)
            raise damaged_records(self.engine, exc) or StateStoreError(
                f"the state database {where} cannot be used ({str(exc.orig).strip()}); "
                "check STEWARD_DATABASE_URL and that the database is running"
            ) from None

    def _insert(self, table: sa.Table, **values: object) -> int:
        """Insert one row; returns its generated id."""
        with self._begin() as connection:
            key = connection.execute(sa.insert(table).values(**values)).inserted_primary_key
        if key is None:
            raise StateStoreError(f"the database gave no id for the new row in {table.name}")
        return int(key[0])

    # -- delivery ----------------------------------------------------------------------------

    def claim_event(self, event_id: str, retention_seconds: float, work: EventWork | None = None) -> bool:
        """True for the first delivery of an event id (across replicas); False for a retry or duplicate.

        With `work`, the event stays open until `finish_event`, so that if this replica dies first a live
        one answers it (bot/store/events.py); without, it is done once claimed.
        """
        now = self.clock()
        where: dict[str, object] = {"done_at": now}
        if work is not None:
            where = {"owner": work.owner, "channel": work.channel, "message_ts": work.message_ts}
            where |= {"thread_ts": work.thread_ts, "done_at": None}
        try:
            with self._begin() as connection:
                connection.execute(
                    sa.insert(slack_events).values(event_id=event_id, received_at=now, **where)
                )
        except IntegrityError:
            return False
        # Forget ids older than the retention; Slack retries within minutes, we keep them longer.
        with self._begin() as connection:
            connection.execute(
                sa.delete(slack_events).where(slack_events.c.received_at < now - retention_seconds)
            )
        return True

    def finish_event(self, event_id: str) -> None:
        """The event was handled (answered, or deliberately not): nobody needs to take it over."""
        with self._begin() as connection:
            connection.execute(
                sa.update(slack_events)
                .where(slack_events.c.event_id == event_id)
                .values(done_at=self.clock())
            )

    # -- threads and channels ----------------------------------------------------------------

    def mark_thread_answered(self, channel: str, thread_ts: str) -> None:
        """Remember that Steward answered in this thread (so later messages there are follow-ups)."""
        try:
            with self._begin() as connection:
                connection.execute(
                    sa.insert(slack_threads).values(
                        channel=channel, thread_ts=thread_ts, answered_at=self.clock()
                    )
                )
        except IntegrityError:
            pass  # already known

    def answered_in(self, channel: str, thread_ts: str) -> bool:
        """Whether Steward has answered in this thread before."""
        with self._begin() as connection:
            found = connection.execute(
                sa.select(slack_threads.c.answered_at).where(
                    slack_threads.c.channel == channel, slack_threads.c.thread_ts == thread_ts
                )
            ).first()
        return found is not None

    def set_channel_sticky(self, channel: str, sticky: bool, user: str) -> None:
        """Turn follow-ups without a mention on or off for one channel."""
        with self._begin() as connection:
            updated = connection.execute(
                sa.update(slack_channels)
                .where(slack_channels.c.channel == channel)
                .values(sticky=sticky, changed_by=user, changed_at=self.clock())
            )
            if updated.rowcount == 0:
                connection.execute(
                    sa.insert(slack_channels).values(
                        channel=channel, sticky=sticky, changed_by=user, changed_at=self.clock()
                    )
                )

    def channel_sticky(self, channel: str) -> bool | None:
        """The channel's own setting, or None when it follows the default."""
        with self._begin() as connection:
            value = connection.execute(
                sa.select(slack_channels.c.sticky).where(slack_channels.c.channel == channel)
            ).scalar()
        return None if value is None else bool(value)

    # -- answers and feedback ----------------------------------------------------------------

    def record_answer(
        self,
        *,
        channel: str,
        thread_ts: str | None,
        asker: str,
        question: str,
        cited: Sequence[str],
        confidence: float,
        abstained: bool,
    ) -> int:
        """Log a posted answer, credentials in the question masked; returns the id its buttons carry."""
        return self._insert(
            answer_log,
            channel=channel,
            thread_ts=thread_ts,
            asker=asker,
            question=mask_secrets(question).text,
            cited=json.dumps(list(cited)),
            confidence=confidence,
            abstained=abstained,
            created_at=self.clock(),
        )

    def answer(self, answer_id: int) -> LoggedAnswer | None:
        """A logged answer by id."""
        with self._begin() as connection:
            row = connection.execute(sa.select(answer_log).where(answer_log.c.answer_id == answer_id)).first()
        if row is None:
            return None
        m = row._mapping
        return LoggedAnswer(
            answer_id=int(m["answer_id"]),
            channel=str(m["channel"]),
            thread_ts=m["thread_ts"],
            asker=str(m["asker"]),
            question=str(m["question"]),
            cited=tuple(json.loads(str(m["cited"]))),
            abstained=bool(m["abstained"]),
        )

    def record_feedback(self, answer_id: int, user: str, helpful: bool) -> int:
        """Store (or change) one person's vote on an answer; returns the feedback id."""
        values = {"helpful": helpful, "created_at": self.clock()}
        for _attempt in range(2):
            with self._begin() as connection:
                existing = connection.execute(
                    sa.select(feedback.c.feedback_id).where(
                        feedback.c.answer_id == answer_id, feedback.c.user_id == user
                    )
                ).scalar()
                if existing is not None:
                    connection.execute(
                        sa.update(feedback).where(feedback.c.feedback_id == existing).values(**values)
                    )
                    return int(existing)
            try:
                return self._insert(feedback, answer_id=answer_id, user_id=user, **values)
            except IntegrityError:
                continue  # a concurrent click by the same person won; update theirs
        raise StateStoreError(f"feedback on answer {answer_id} by {user} could not be stored")

    def set_feedback_reason(self, feedback_id: int, user: str, reason: str) -> bool:
        """Attach the optional reason to a vote (only its author can), credentials masked."""
        with self._begin() as connection:
            updated = connection.execute(
                sa.update(feedback)
                .where(feedback.c.feedback_id == feedback_id, feedback.c.user_id == user)
                .values(reason=mask_secrets(reason).text)
            )
        return bool(updated.rowcount)

    def feedback_rows(self) -> list[dict[str, object]]:
        """Every vote with the question, cited documents and channel of its answer."""
        query = sa.select(
            feedback.c.feedback_id,
            feedback.c.user_id,
            feedback.c.helpful,
            feedback.c.reason,
            answer_log.c.question,
            answer_log.c.cited,
            answer_log.c.channel,
        ).join(answer_log, answer_log.c.answer_id == feedback.c.answer_id)
        with self._begin() as connection:
            rows = connection.execute(query.order_by(feedback.c.feedback_id)).all()
        return [{**row._mapping, "cited": json.loads(row._mapping["cited"])} for row in rows]

    # -- knowledge gaps ------------------------------------------------------------------------

    def open_gap(
        self,
        *,
        question: str,
        channel: str,
        thread_ts: str,
        asker: str,
        owners: Sequence[str],
        source: str = "abstention",
    ) -> int:
        """Record a question Steward could not answer (credentials in it masked)."""
        return self._insert(
            knowledge_gaps,
            question=mask_secrets(question).text,
            channel=channel,
            thread_ts=thread_ts,
            asker=asker,
            owners=json.dumps(list(owners)),
            source=source,
            status=GAP_OPEN,
            created_at=self.clock(),
        )

    def gap(self, gap_id: int) -> Gap | None:
        """A gap by id."""
        with self._begin() as connection:
            row = connection.execute(
                sa.select(knowledge_gaps).where(knowledge_gaps.c.gap_id == gap_id)
            ).first()
        return None if row is None else _gap(row)

    def gaps(self, statuses: Sequence[str] = ()) -> list[Gap]:
        """Gaps, oldest first, optionally only in some states."""
        query = sa.select(knowledge_gaps).order_by(knowledge_gaps.c.gap_id)
        if statuses:
            query = query.where(knowledge_gaps.c.status.in_(list(statuses)))
        with self._begin() as connection:
            return [_gap(row) for row in connection.execute(query).all()]

    def gap_in_thread(self, channel: str, thread_ts: str) -> Gap | None:
        """The newest unfinished gap discussed in a thread: the asker's thread or the experts' one."""
        table = knowledge_gaps
        query = (
            sa.select(table)
            .where(
                table.c.status.in_([GAP_OPEN, GAP_ROUTED]),
                sa.or_(
                    sa.and_(table.c.channel == channel, table.c.thread_ts == thread_ts),
                    sa.and_(table.c.expert_channel == channel, table.c.expert_ts == thread_ts),
                ),
            )
            .order_by(table.c.gap_id.desc())
        )
        with self._begin() as connection:
            row = connection.execute(query).first()
        return None if row is None else _gap(row)

    def claim_routing(self, gap_id: int, user: str) -> bool:
        """Move an open gap to 'routed'; only the first of several clicks (on any replica) wins."""
        with self._begin() as connection:
            updated = connection.execute(
                sa.update(knowledge_gaps)
                .where(knowledge_gaps.c.gap_id == gap_id, knowledge_gaps.c.status == GAP_OPEN)
                .values(status=GAP_ROUTED, routed_by=user, routed_at=self.clock())
            )
        return bool(updated.rowcount)

    def release_routing(self, gap_id: int) -> None:
        """Reopen a gap whose routing failed, so that "Ask an expert" can be tried again."""
        with self._begin() as connection:
            connection.execute(
                sa.update(knowledge_gaps)
                .where(knowledge_gaps.c.gap_id == gap_id, knowledge_gaps.c.status == GAP_ROUTED)
                .values(status=GAP_OPEN, routed_by=None, routed_at=None)
            )

    def set_expert_post(self, gap_id: int, channel: str, ts: str) -> None:
        """Where the question was posted for the experts (replies there count as answers too)."""
        with self._begin() as connection:
            connection.execute(
                sa.update(knowledge_gaps)
                .where(knowledge_gaps.c.gap_id == gap_id)
                .values(expert_channel=channel, expert_ts=ts)
            )

    def claim_draft(self, gap_id: int, expert: str, path: str) -> bool:
        """Mark a gap as answered by a draft; False when it already has one (or is closed)."""
        with self._begin() as connection:
            updated = connection.execute(
                sa.update(knowledge_gaps)
                .where(
                    knowledge_gaps.c.gap_id == gap_id,
                    knowledge_gaps.c.status.in_([GAP_OPEN, GAP_ROUTED]),
                )
                .values(status=GAP_DRAFTED, expert=expert, draft_path=path, drafted_at=self.clock())
            )
        return bool(updated.rowcount)

    def release_draft(self, gap_id: int) -> None:
        """Undo `claim_draft` when writing the file failed."""
        with self._begin() as connection:
            connection.execute(
                sa.update(knowledge_gaps)
                .where(knowledge_gaps.c.gap_id == gap_id, knowledge_gaps.c.status == GAP_DRAFTED)
                .values(status=GAP_ROUTED, expert=None, draft_path=None, drafted_at=None)
            )

    def close_gaps(self, accepted: Sequence[tuple[int, str]]) -> list[int]:
        """Close the gaps answered by accepted guidance documents; returns the ids newly closed."""
        closed: list[int] = []
        with self._begin() as connection:
            for gap_id, path in accepted:
                updated = connection.execute(
                    sa.update(knowledge_gaps)
                    .where(knowledge_gaps.c.gap_id == gap_id, knowledge_gaps.c.status != GAP_CLOSED)
                    .values(status=GAP_CLOSED, closed_by_path=path, closed_at=self.clock())
                )
                if updated.rowcount:
                    closed.append(gap_id)
        return closed

    def cited_between(self, start: float, end: float) -> list[str]:
        """The documents the answers given in [start, end) cite, once per citing answer."""
        query = sa.select(answer_log.c.cited).where(
            answer_log.c.created_at >= start, answer_log.c.created_at < end
        )
        with self._begin() as connection:
            return [str(path) for (raw,) in connection.execute(query) for path in json.loads(raw or "[]")]

    def feedback_between(self, start: float, end: float) -> list[tuple[bool, str | None]]:
        """The votes given in [start, end): helpful or not, and the reason given."""
        query = sa.select(feedback.c.helpful, feedback.c.reason).where(
            feedback.c.created_at >= start, feedback.c.created_at < end
        )
        with self._begin() as connection:
            return [
                (bool(helpful), None if reason is None else str(reason))
                for helpful, reason in connection.execute(query)
            ]
