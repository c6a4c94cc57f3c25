"""`steward audit verify` and the run path's check: is the audit log whole, and does it authorise a run?

`verify_log` walks the whole log once: every entry's MAC and link, the head, every valid checkpoint of
the checkpoint file (a log shorter than one, or with another hash at its position, was truncated or
re-chained), and every request the database says is approved or has run against its own entries
(`audit_trail.py`): each run must have had the log's authority when it started.

`authorised_in_log` answers for one request, cheaply enough for every run claim: the request's
entries, then the log from the entry that gave the authority up to the head.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.store.action_requests import (
    APPROVED,
    FAILED,
    NEEDS_ATTENTION,
    RUNNING,
    SUCCEEDED,
    action_requests,
    appended_here,
    audit_head,
    audit_log,
    sign_checkpoint,
)
from bot.store.audit_anchor import AuditAnchor, AuditKey, anchor_for
from bot.store.audit_chain import AuditProblem, ChainWalker, Row, sealed_by
from bot.store.audit_checkpoints import Checkpoint, CheckpointError
from bot.store.audit_trail import Logged, RequestTrail

# Request states that need the log's authority: ready to run, or ran (the store's own status values).
AUTHORISED_STATES = (APPROVED, RUNNING, SUCCEEDED, FAILED, NEEDS_ATTENTION)


@dataclass
class AuditReport:
    """What `verify` found."""

    key: AuditKey
    entries: int = 0
    problems: list[AuditProblem] = field(default_factory=list)
    unkeyed: int = 0  # entries with a plain hash, written before the log was keyed
    anchored_at: int | None = None  # the entry that fixed them
    checkpoints: list[Checkpoint] = field(default_factory=list)  # the valid ones, in file order
    requests: int = 0  # requests checked against their approvals
    refused: list[AuditProblem] = field(default_factory=list)  # runs the claim refused (not log damage)


def verify_log(connection: Connection) -> AuditReport:
    """Check the whole log, its head, its checkpoints and the requests that are approved or ran.

    Run it in one snapshot of the database (a SQLite transaction is one; on PostgreSQL, REPEATABLE READ,
    as `steward audit verify` does): the log, the head and the requests must be read as of one moment.
    The checkpoint file is read first, so it never names more than the snapshot holds.
    """
    anchor = anchor_for(connection)
    report = AuditReport(anchor.key)
    if anchor.checkpoints is not None:
        try:
            report.checkpoints, bad = anchor.checkpoints.read(anchor.key)
        except CheckpointError as exc:
            report.checkpoints, bad = [], [("checkpoints", str(exc))]
        report.problems += [AuditProblem(0, problem, where=where) for where, problem in bad]
    expected = defaultdict(list)
    for checkpoint in report.checkpoints:
        expected[checkpoint.count].append(checkpoint)
    walker = ChainWalker(anchor.key)
    trails: dict[str, RequestTrail] = {}
    query = sa.select(audit_log).order_by(audit_log.c.seq).execution_options(yield_per=2000)
    for row in connection.execute(query):
        report.entries += 1
        report.problems += walker.step(row)
        for checkpoint in expected.pop(row.seq, ()):
            if row.hash != checkpoint.head:
                report.problems.append(
                    AuditProblem(
                        row.seq,
                        f"is not the entry the checkpoint of {checkpoint.describe()} recorded: the log was "
                        "rewritten up to here (re-chained)",
                    )
                )
        if walker.trusted and row.request_id is not None:
            trails.setdefault(row.request_id, RequestTrail()).add(_logged(row))
    report.unkeyed, report.anchored_at = walker.unkeyed, walker.anchored_at
    report.problems += _missing_tail(walker, expected)
    report.problems += _head_problems(connection, walker)
    report.requests, problems = _cross_check(connection, trails)
    report.problems += problems
    report.refused = [
        AuditProblem(seq, f"its run was refused: {why}", request_id)
        for request_id, trail in trails.items()
        for seq, why in trail.refused
    ]
    if report.entries and not walker.sealed:
        report.problems.insert(
            0,
            AuditProblem(
                0,
                f"no entry carries a MAC of the audit key from {anchor.key.source} (id {anchor.key.key_id}): "
                "verify with the key the writers use (STEWARD_AUDIT_KEY)",
                where="key",
            ),
        )
    return report


def _missing_tail(walker: ChainWalker, expected: dict[int, list[Checkpoint]]) -> list[AuditProblem]:
    """A checkpoint past the log's end (the longest, which says the most): entries were deleted."""
    beyond = [checkpoint for count, signed in expected.items() if count for checkpoint in signed]
    if not beyond:
        return []
    longest = max(beyond, key=lambda checkpoint: checkpoint.count)
    where = f"the log ends at entry {walker.seq}" if walker.seq else "the log is empty"
    return [
        AuditProblem(
            longest.count,
            f"{where}, but the checkpoint of {longest.describe()} recorded {longest.count}: "
            "entries were deleted",
        )
    ]


def _head_problems(connection: Connection, walker: ChainWalker) -> list[AuditProblem]:
    head = connection.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).first()
    if head is None:
        return [AuditProblem(walker.seq, "the head record (audit_head) is missing: it was deleted")]
    if not isinstance(head.seq, int):  # edited outside Steward (SQLite keeps any type in any column)
        return [AuditProblem(walker.seq, f"the head record (audit_head) is damaged: seq is {head.seq!r}")]
    if head.seq != walker.seq or head.hash != walker.head:
        return [
            AuditProblem(
                head.seq,
                f"the log ends at entry {walker.seq} but the head says {head.seq} entries were written",
            )
        ]
    return []


def _cross_check(connection: Connection, trails: dict[str, RequestTrail]) -> tuple[int, list[AuditProblem]]:
    """Every request the database says may run, or ran, against what its audit entries say."""
    problems: list[AuditProblem] = []
    rows = connection.execute(
        sa.select(action_requests.c.request_id, action_requests.c.status)
        .where(action_requests.c.status.in_(AUTHORISED_STATES))
        .order_by(action_requests.c.created_at)
    ).all()
    for request_id, status in rows:
        trail = trails.get(request_id)
        if trail is None:
            problems.append(AuditProblem(0, f"is {status} but has no entries in the audit log", request_id))
        elif status == APPROVED:
            allowed, why = trail.may_run()
            if not allowed:
                problems.append(
                    AuditProblem(0, f"is approved but the audit log does not let it run: {why}", request_id)
                )
        elif not trail.runs and not trail.refused:  # a refused run needs a person, and ran nowhere
            problems.append(AuditProblem(0, f"is {status} but the audit log records no run", request_id))
    for request_id, trail in trails.items():
        for run in trail.runs:
            if not run.allowed:
                problems.append(
                    AuditProblem(run.seq, f"ran without the audit log's authority: {run.why}", request_id)
                )
    return len(rows), problems


def _logged(row: Row) -> Logged:
    try:
        data = json.loads(row.data)
    except json.JSONDecodeError:
        data = {}
    return Logged(row.seq, row.kind, row.actor, data if isinstance(data, dict) else {})


def authorised_in_log(connection: Connection, request_id: str) -> tuple[bool, str]:
    """Whether the audit log lets `request_id` run now, and why (or why not), for the run claim.

    True only when: every entry of the request is sealed (its MAC, or the plain hash of an entry
    written before the log was keyed); read in order, they give it the right to run now (an allowing
    decision, or an `approved`/`released` entry backed by live approvals meeting the requirement, none
    revoked below it since, no new decision, not started, not ended: see `audit_trail.py`); and the log
    from the entry that gave the right up to the head is whole (every link and MAC, the head names its
    last entry) and no shorter than the latest checkpoint or the longest log this process has seen.
    Takes no lock and writes nothing; entries committed meanwhile by others are walked too.
    """
    anchor = anchor_for(connection)
    seen = anchor.seen  # before the log is read, as the checkpoint: another thread may see more meanwhile
    try:  # before the log is read: a checkpoint never names more than what is read after it
        latest = anchor.checkpoints.latest(anchor.key) if anchor.checkpoints is not None else None
    except CheckpointError as exc:
        return False, str(exc)
    rows = connection.execute(
        sa.select(audit_log).where(audit_log.c.request_id == request_id).order_by(audit_log.c.seq)
    ).all()
    trail = RequestTrail()
    refused = _read_entries(anchor.key, trail, rows)
    if refused:
        return False, refused
    allowed, why = trail.may_run()
    if not allowed:
        return False, why
    if trail.since is None:  # an authority always names its entry; without one, nothing runs
        return False, "the audit log names no entry that authorised this request"
    walk = _Walk(connection, anchor, trail.since)
    problems = walk.to_head()
    refused = _read_entries(
        anchor.key,
        trail,
        [row for row in walk.rows if row.request_id == request_id and row.seq > rows[-1].seq],
    )
    if refused:
        return False, refused
    marks = [seen] if seen[0] else []
    if latest is not None and latest.count:
        marks.append((latest.count, latest.head))
    for count, mac in marks:
        problems += walk.position_problems(count, mac)
    if problems:
        return False, (
            f"the audit log after entry {trail.since} does not hold together ({problems[0]}); "
            "run `steward audit verify`"
        )
    if not appended_here(connection):
        anchor.saw(walk.walker.seq, walk.walker.head)
    return trail.may_run()


def _read_entries(key: AuditKey, trail: RequestTrail, rows: Sequence[Row]) -> str:
    """Feed the request's rows to its trail; why not, if one of them is not sealed ('' when all are)."""
    for row in rows:
        if sealed_by(key, row) is None:
            return (
                f"its audit entry {row.seq} was edited or forged (its MAC does not match); "
                "run `steward audit verify`"
            )
        trail.add(_logged(row))
    return ""


class _Walk:
    """The log from entry `since` to the head, read without a lock: rows first, then the head, and the
    rows committed meanwhile (a head behind the rows read was moved back)."""

    ROUNDS = 5

    def __init__(self, connection: Connection, anchor: AuditAnchor, since: int) -> None:
        self.connection = connection
        self.rows: list[Row] = list(self._after(since - 1))
        self.walker, self.problems = ChainWalker.resume(anchor.key, self.rows[0])

    def _after(self, seq: int) -> Sequence[Row]:
        query = sa.select(audit_log).where(audit_log.c.seq > seq).order_by(audit_log.c.seq)
        return self.connection.execute(query).all()

    def to_head(self) -> list[AuditProblem]:
        """Walk every row up to the head; the problems found."""
        for row in self.rows[1:]:
            self.problems += self.walker.step(row)
        for _round in range(self.ROUNDS):
            head = self.connection.execute(
                sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
            ).first()
            if head is None or head.seq <= self.walker.seq:
                if head is None or (head.seq, head.hash) != (self.walker.seq, self.walker.head):
                    self.problems.append(
                        AuditProblem(self.walker.seq, "the head does not name the log's last entry")
                    )
                break
            more = self._after(self.walker.seq)
            if not more:
                self.problems.append(
                    AuditProblem(int(head.seq), f"the head names entry {head.seq}, past the log's end")
                )
                break
            for row in more:
                self.problems += self.walker.step(row)
            self.rows += more
        else:
            self.problems.append(
                AuditProblem(self.walker.seq, "the log kept growing while it was read; try again")
            )
        if self.walker.unkeyed and self.walker.anchored_at is None:
            self.problems.append(
                AuditProblem(
                    self.rows[0].seq, "was written before the log was keyed, and no keyed entry fixes it yet"
                )
            )
        return self.problems

    def position_problems(self, count: int, mac: str) -> list[AuditProblem]:
        """Entry `count` must exist and carry `mac` (what a checkpoint or this process saw there)."""
        if count > self.walker.seq:
            return [
                AuditProblem(
                    count, f"the log ends at entry {self.walker.seq}, but {count} entries were written"
                )
            ]
        at = [row.hash for row in self.rows if row.seq == count]
        if not at:
            query = sa.select(audit_log.c.hash).where(audit_log.c.seq == count)
            at = list(self.connection.execute(query).scalars())
        if at != [mac]:
            return [
                AuditProblem(count, "is not the entry that was signed or seen there (re-chained or deleted)")
            ]
        return []


def sign_due_checkpoint(engine: Engine) -> Checkpoint | None:
    """`steward serve`'s periodic checkpoint: the committed head, signed when the last checkpoint this
    process wrote is older than STEWARD_AUDIT_CHECKPOINT_SECONDS and the log grew since."""
    with engine.connect() as connection:
        anchor = anchor_for(connection)
        with anchor.lock:
            last, at = anchor.checkpointed, anchor.checkpointed_at
        if anchor.checkpoints is None or (at is not None and anchor.clock() - at < anchor.every_seconds):
            return None
        head = connection.execute(
            sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
        ).first()
        if head is None or head.seq == 0 or head.seq == last:
            with anchor.lock:
                anchor.checkpointed_at = anchor.clock()  # nothing new: look again next period
            return None
        return sign_checkpoint(connection, anchor, int(head.seq), str(head.hash))
