"""Action requests, approvals and the tamper-evident audit log, in the state database.

The tables are created and changed by the migrations in `bot/store/migrations` (see `schema.py`);
the definitions here are what queries use, and a test checks that both agree.

Every state change and its audit entry are written in one transaction. The audit log is a MAC chain:
each entry carries an HMAC of its content and of the entry before it, keyed with the audit key, which
is never in the database (`audit_anchor.py`), and `audit_head` holds the newest MAC. The head row is
updated first in every append, so concurrent appends queue behind each other's lock (SQLite and
PostgreSQL alike) instead of forking the chain. At least every N entries, the first append of a
transaction signs a checkpoint of the committed log into a file outside the database.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError

from bot.redaction import redact_data
from bot.store.audit_anchor import AuditAnchor, anchor_for
from bot.store.audit_chain import (
    ANCHORED,
    AuditProblem,
    ChainWalker,
    entry_mac,
    sealed_by,
)
from bot.store.audit_checkpoints import Checkpoint, CheckpointError, Signer
from bot.store.schema import StateStoreError, damaged_records

log = logging.getLogger("steward.audit")

metadata = sa.MetaData()

action_requests = sa.Table(
    "action_requests",
    metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON, secrets redacted
    sa.Column("requester", sa.String(64), nullable=False),  # a Slack user id, or agent:NAME
    sa.Column("channel", sa.String(32), nullable=True),
    sa.Column("thread_ts", sa.String(32), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("rule", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("required_count", sa.Integer, nullable=False, default=0),
    sa.Column("required_groups", sa.Text, nullable=False, default="[]"),
    sa.Column("deadline", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),  # renewed by the process running it
    sa.Column("result_summary", sa.Text, nullable=True),
    sa.Column("result_output", sa.Text, nullable=True),
    sa.Column("duration_seconds", sa.Float, nullable=True),
    # an AI agent's request (migration 0009): who asked, on whose behalf and why
    sa.Column("agent", sa.String(40), nullable=True),
    sa.Column("agent_token", sa.String(16), nullable=True),
    sa.Column("agent_owner", sa.String(32), nullable=True),
    sa.Column("justification", sa.Text, nullable=True),
    sa.Column("idempotency_key", sa.String(128), nullable=True),
    sa.Column("callback_url", sa.Text, nullable=True),
    sa.Column("callback_state", sa.String(16), nullable=True),  # due | delivered | failed
    sa.Column("callback_attempts", sa.Integer, nullable=True),
    sa.Column("callback_due_at", sa.Float, nullable=True),
    sa.Column("card_url", sa.Text, nullable=True),
    sa.Column("rejection_reason", sa.Text, nullable=True),
    sa.UniqueConstraint("agent", "idempotency_key", name="one_request_per_idempotency_key"),
    sa.Index("ix_action_requests_agent_created", "agent", "created_at"),
    sa.Index("ix_action_requests_callback_due", "callback_state", "callback_due_at"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("token_id", sa.String(16), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("owner", sa.String(32), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("actions", sa.Text, nullable=True),
    sa.Column("max_pending", sa.Integer, nullable=False),
    sa.Column("per_minute", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("created_by", sa.String(64), nullable=True),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

approvals = sa.Table(
    "action_approvals",
    metadata,
    sa.Column("approval_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(36), nullable=False, index=True),
    sa.Column("approver", sa.String(32), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("decided_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.UniqueConstraint("request_id", "approver", "fingerprint", name="one_approval_per_person"),
)

# The policy versions (hash of the policy files) Steward decided with, in order: each change is audited.
policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("files", sa.Text, nullable=False),  # JSON list of the policy files
    sa.Column("seen_at", sa.Float, nullable=False),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("request_id", sa.String(36), nullable=True, index=True),
    sa.Column("actor", sa.String(64), nullable=True),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


# The states of an action request (`bot/actions/approvals.py` describes them).
PENDING, APPROVED, RUNNING = "pending", "approved", "running"
DENIED, REJECTED, CANCELLED, EXPIRED = "denied", "rejected", "cancelled", "expired"
SUCCEEDED, FAILED, NEEDS_ATTENTION = "succeeded", "failed", "needs_attention"
FINISHED = frozenset({DENIED, REJECTED, CANCELLED, EXPIRED, SUCCEEDED, FAILED, NEEDS_ATTENTION})

_JSON_COLUMNS = ("params", "required_groups")


@dataclass(frozen=True)
class RequestView:
    """A request as the approval card and the CLI show it."""

    request_id: str
    action: str
    params: dict[str, Any]
    requester: str
    channel: str | None
    thread_ts: str | None
    status: str
    rule: str | None
    reason: str
    policy_version: str
    required_count: int
    required_groups: tuple[str, ...]
    deadline: float | None
    approvers: tuple[str, ...] = ()
    result_summary: str | None = None
    result_output: str | None = None
    # an AI agent's request: the agent, its owner (a Slack user id) and the reason it gave (untrusted)
    agent: str | None = None
    agent_owner: str | None = None
    justification: str | None = None
    agent_token: str | None = None
    created_at: float = 0.0
    card_url: str | None = None
    rejection_reason: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class PendingRequest:
    """A request waiting for approvals, as the governance digest lists it."""

    request_id: str
    action: str
    requester: str
    channel: str | None
    created_at: float
    required_count: int


def _encoded(values: Mapping[str, Any]) -> dict[str, Any]:
    """Column values as stored: parameters and approver groups as JSON text."""
    out = dict(values)
    if "params" in out and not isinstance(out["params"], str):
        out["params"] = json.dumps(out["params"], sort_keys=True, default=str)
    if "required_groups" in out and not isinstance(out["required_groups"], str):
        out["required_groups"] = json.dumps(list(out["required_groups"]))
    return out


class RequestTransaction:
    """One transaction on the action tables: every read, conditional change and audit entry of one
    decision, committed together (exactly-once rests on that)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # -- requests ------------------------------------------------------------------------------

    def read(self, request_id: str, lock: bool = False) -> RequestView | None:
        """The request as this transaction sees it; `lock` holds its row until commit.

        Decisions lock the row first, so concurrent clicks on one request are decided one after the
        other (on PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises every writer).
        """
        query = sa.select(action_requests).where(action_requests.c.request_id == request_id)
        row = self.connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            return None
        m = row._mapping
        approvers = self.connection.execute(
            sa.select(approvals.c.approver)
            .where(
                approvals.c.request_id == request_id,
                approvals.c.fingerprint == m["fingerprint"],
                approvals.c.revoked_at.is_(None),
            )
            .order_by(approvals.c.approval_id)
        ).scalars()
        return RequestView(
            request_id=m["request_id"],
            action=m["action"],
            params=json.loads(m["params"]),
            requester=m["requester"],
            channel=m["channel"],
            thread_ts=m["thread_ts"],
            status=m["status"],
            rule=m["rule"],
            reason=m["reason"],
            policy_version=m["policy_version"],
            required_count=int(m["required_count"] or 0),
            required_groups=tuple(json.loads(m["required_groups"] or "[]")),
            deadline=m["deadline"],
            approvers=tuple(str(a) for a in approvers),
            result_summary=m["result_summary"],
            result_output=m["result_output"],
            agent=m["agent"],
            agent_owner=m["agent_owner"],
            justification=m["justification"],
            agent_token=m["agent_token"],
            created_at=float(m["created_at"]),
            card_url=m["card_url"],
            rejection_reason=m["rejection_reason"],
            idempotency_key=m["idempotency_key"],
        )

    def insert(self, **values: Any) -> None:
        """Record a new request (its columns; parameters and groups as Python values)."""
        self.connection.execute(sa.insert(action_requests).values(**_encoded(values)))

    def update(self, request_id: str, current: str, /, **values: Any) -> bool:
        """A conditional change: True only for the caller that found the request in state `current`."""
        return bool(
            self.connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id, action_requests.c.status == current)
                .values(**_encoded(values))
            ).rowcount
        )

    def move(self, request_id: str, source: str, target: str, now: float) -> bool:
        """A conditional state change: True only for the caller that found the request in `source`."""
        return self.update(request_id, source, status=target, updated_at=now)

    def ids(
        self, status: str, *, deadline_before: float | None = None, live_at: float | None = None
    ) -> list[str]:
        """The requests in `status`: past their deadline at `deadline_before`, or within it (or without
        one) at `live_at`."""
        query = sa.select(action_requests.c.request_id).where(action_requests.c.status == status)
        if deadline_before is not None:
            query = query.where(action_requests.c.deadline < deadline_before)
        if live_at is not None:
            query = query.where(
                sa.or_(action_requests.c.deadline.is_(None), action_requests.c.deadline >= live_at)
            )
        return [str(request_id) for request_id in self.connection.execute(query).scalars()]

    def stale_runs(self, last_sign_before: float) -> list[tuple[str, str, dict[str, Any]]]:
        """Running requests whose lease lapsed (no heartbeat since `last_sign_before`): id, action, params."""
        last_sign = sa.func.coalesce(action_requests.c.heartbeat_at, action_requests.c.claimed_at)
        rows = self.connection.execute(
            sa.select(action_requests.c.request_id, action_requests.c.action, action_requests.c.params).where(
                action_requests.c.status == RUNNING, last_sign < last_sign_before
            )
        )
        return [(str(request_id), str(action), json.loads(params)) for request_id, action, params in rows]

    def stranded(self, before: float) -> list[str]:
        """Requests approved before `before` that nobody claimed to run."""
        rows = self.connection.execute(
            sa.select(action_requests.c.request_id).where(
                action_requests.c.status == APPROVED, action_requests.c.updated_at < before
            )
        )
        return [str(request_id) for (request_id,) in rows]

    # -- approvals -----------------------------------------------------------------------------

    def give_approval(self, request_id: str, approver: str, fingerprint: str, now: float) -> None:
        """Count `approver`'s approval of the request's current parameters (an approval given, revoked
        and given again is the same row, live again)."""
        renewed = self.connection.execute(
            sa.update(approvals)
            .where(
                approvals.c.request_id == request_id,
                approvals.c.approver == approver,
                approvals.c.fingerprint == fingerprint,
                approvals.c.revoked_at.is_not(None),
            )
            .values(revoked_at=None, decided_at=now)
        ).rowcount
        if not renewed:
            self.connection.execute(
                sa.insert(approvals).values(
                    request_id=request_id, approver=approver, fingerprint=fingerprint, decided_at=now
                )
            )

    def withdraw_approval(self, request_id: str, approver: str, now: float) -> None:
        """`approver`'s live approval no longer counts (revoked, or lapsed)."""
        self.connection.execute(
            sa.update(approvals)
            .where(
                approvals.c.request_id == request_id,
                approvals.c.approver == approver,
                approvals.c.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )

    # -- the policy versions and the audit log -------------------------------------------------

    def last_policy_version(self) -> str | None:
        """The policy version recorded last."""
        query = sa.select(policy_versions.c.version).order_by(policy_versions.c.seq.desc()).limit(1)
        found = self.connection.execute(query).scalar()
        return None if found is None else str(found)

    def add_policy_version(self, version: str, files: Sequence[str], now: float) -> None:
        """Record a policy version Steward decides with from now on."""
        self.connection.execute(
            sa.insert(policy_versions).values(version=version, files=json.dumps(list(files)), seen_at=now)
        )

    def lock_audit(self) -> None:
        """Take the audit head's lock until the transaction ends."""
        lock_audit(self.connection)

    def audit(
        self, *, at: float, kind: str, request_id: str | None, actor: str | None, data: dict[str, Any]
    ) -> int:
        """Append one audit entry in this transaction; returns its number."""
        return append_audit(self.connection, at=at, kind=kind, request_id=request_id, actor=actor, data=data)

    def policy_audit(self, request_id: str | None, kind: str, data: dict[str, Any], *, at: float) -> int:
        """Append an entry the policy made (a decision taken again, a hold, a lapse) in this transaction."""
        return self.audit(at=at, kind=kind, request_id=request_id, actor="policy", data=data)

    def authorised(self, request_id: str) -> tuple[bool, str]:
        """Whether the verified audit log lets the request run now, and why."""
        return authorised_in_log(self.connection, request_id)


class ActionRequestStore:
    """The action requests, their approvals, the policy versions and the audit log: every query on
    them goes through here (`RequestTransaction` for a decision's changes)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self) -> Iterator[RequestTransaction]:
        """A transaction; committed when the block ends without an error."""
        with self.engine.begin() as connection:
            yield RequestTransaction(connection)

    def read(self, request_id: str) -> RequestView | None:
        """A request with its current approvers."""
        with self.engine.connect() as connection:
            return RequestTransaction(connection).read(request_id)

    def stranded(self, before: float) -> list[str]:
        """Requests approved before `before` that nobody claimed to run: the replica that recorded the
        deciding approval died before it could claim the run. Running them is safe: the claim is atomic."""
        with self.engine.connect() as connection:
            return RequestTransaction(connection).stranded(before)

    def pending(self) -> list[PendingRequest]:
        """Every request waiting for approvals, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(action_requests)
                .where(action_requests.c.status == PENDING)
                .order_by(action_requests.c.created_at)
            )
            return [
                PendingRequest(
                    row.request_id,
                    row.action,
                    row.requester,
                    row.channel,
                    float(row.created_at),
                    int(row.required_count or 0),
                )
                for row in rows
            ]

    # -- AI agents' requests --------------------------------------------------------------------

    def by_idempotency_key(self, agent: str, key: str) -> RequestView | None:
        """The agent's request made with this idempotency key, if any."""
        with self.engine.connect() as connection:
            request_id = connection.execute(
                sa.select(action_requests.c.request_id).where(
                    action_requests.c.agent == agent, action_requests.c.idempotency_key == key
                )
            ).scalar()
            return None if request_id is None else RequestTransaction(connection).read(str(request_id))

    def agent_load(self, agent: str, since: float) -> tuple[int, list[float]]:
        """An agent's requests waiting for approval now, and when its requests since `since` were made."""
        with self.engine.connect() as connection:
            pending = connection.execute(
                sa.select(sa.func.count()).where(
                    action_requests.c.agent == agent, action_requests.c.status == PENDING
                )
            ).scalar()
            recent = connection.execute(
                sa.select(action_requests.c.created_at)
                .where(action_requests.c.agent == agent, action_requests.c.created_at >= since)
                .order_by(action_requests.c.created_at)
            ).scalars()
            return int(pending or 0), [float(at) for at in recent]

    def place_card(self, request_id: str, thread_ts: str, card_url: str | None) -> None:
        """Where an agent's request was posted: its thread (the card's own message) and the card's link."""
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id)
                .values(thread_ts=thread_ts, card_url=card_url)
            )

    def callbacks_due(self, now: float, limit: int = 50) -> list[tuple[str, int]]:
        """Finished requests whose callback is due: (request id, attempts so far), oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(action_requests.c.request_id, action_requests.c.callback_attempts)
                .where(
                    action_requests.c.callback_state == "due",
                    action_requests.c.status.in_(sorted(FINISHED)),
                    sa.or_(
                        action_requests.c.callback_due_at.is_(None), action_requests.c.callback_due_at <= now
                    ),
                )
                .order_by(action_requests.c.updated_at)
                .limit(limit)
            ).all()
            return [(str(row[0]), int(row[1] or 0)) for row in rows]

    def callback_url(self, request_id: str) -> str | None:
        """Where the request's callback goes (None: it has none)."""
        with self.engine.connect() as connection:
            url = connection.execute(
                sa.select(action_requests.c.callback_url).where(action_requests.c.request_id == request_id)
            ).scalar()
            return None if url is None else str(url)

    def claim_callback(self, request_id: str, attempts: int, retry_at: float) -> bool:
        """Take one delivery attempt (conditional on the attempts seen, so one replica sends it); the
        next attempt is due at `retry_at` unless this one is recorded as delivered."""
        with self.engine.begin() as connection:
            return bool(
                connection.execute(
                    sa.update(action_requests)
                    .where(
                        action_requests.c.request_id == request_id,
                        action_requests.c.callback_state == "due",
                        sa.func.coalesce(action_requests.c.callback_attempts, 0) == attempts,
                    )
                    .values(callback_attempts=attempts + 1, callback_due_at=retry_at)
                ).rowcount
            )

    def end_callback(self, request_id: str, state: str, *, at: float, detail: str) -> None:
        """The callback was delivered, or given up (`failed`): recorded with an audit entry."""
        with self.begin() as records:
            records.connection.execute(
                sa.update(action_requests)
                .where(action_requests.c.request_id == request_id)
                .values(callback_state=state)
            )
            records.audit(
                at=at,
                kind="callback_delivered" if state == "delivered" else "callback_failed",
                request_id=request_id,
                actor=None,
                data={"detail": detail},
            )

    def by_agent_between(self, start: float, end: float) -> dict[str, dict[str, int]]:
        """Agents' requests made in [start, end): agent -> state -> count."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(action_requests.c.agent, action_requests.c.status, sa.func.count())
                .where(
                    action_requests.c.agent.is_not(None),
                    action_requests.c.created_at >= start,
                    action_requests.c.created_at < end,
                )
                .group_by(action_requests.c.agent, action_requests.c.status)
            )
            counts: dict[str, dict[str, int]] = {}
            for agent, status, count in rows:
                counts.setdefault(str(agent), {})[str(status)] = int(count)
            return counts

    def finished_between(self, start: float, end: float) -> dict[str, int]:
        """How many requests ended in each final state in [start, end)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(action_requests.c.status, sa.func.count())
                .where(
                    action_requests.c.status.in_(sorted(FINISHED)),
                    action_requests.c.updated_at >= start,
                    action_requests.c.updated_at < end,
                )
                .group_by(action_requests.c.status)
            )
            return {str(status): int(count) for status, count in rows}

    def policy_changes_between(self, start: float, end: float) -> list[tuple[float, str, str | None]]:
        """The audited policy changes in [start, end): when, the new version, the one before."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(audit_log.c.at, audit_log.c.data)
                .where(audit_log.c.kind == "policy_changed", audit_log.c.at >= start, audit_log.c.at < end)
                .order_by(audit_log.c.seq)
            )
            changes = []
            for row in rows:
                data = json.loads(row.data)
                changes.append((float(row.at), str(data["version"]), data["previous"]))
            return changes


def lock_audit(connection: Connection) -> None:
    """Take the audit head's lock until the transaction ends (appends from elsewhere wait for it)."""
    connection.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq))


def append_audit(
    connection: Connection,
    *,
    at: float,
    kind: str,
    request_id: str | None,
    actor: str | None,
    data: dict[str, Any],
) -> int:
    """Append one entry inside the caller's transaction, sealed with the audit key; returns its number."""
    anchor = anchor_for(connection)
    # Lock the head first: a concurrent append waits here and then sees our entry as its predecessor.
    connection.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1))
    head = connection.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).one()
    seq, prev_hash = int(head.seq), str(head.hash)
    if _first_append(connection):
        # What the head says now was committed by others (we hold its lock): a state worth signing.
        anchor.saw(seq - 1, prev_hash)
        _checkpoint_if_due(connection, anchor, seq - 1, prev_hash)
        if not anchor.keyed_head and _unkeyed_head(connection, anchor, seq - 1):
            prev_hash = _write_entry(
                connection,
                anchor,
                seq,
                prev_hash,
                at,
                ANCHORED,
                None,
                "steward",
                {"unkeyed_entries": seq - 1, "key": anchor.key.key_id},
            )
            seq += 1
    # secrets and personal data in free text (reasons, outputs) are masked before they are chained
    digest = _write_entry(connection, anchor, seq, prev_hash, at, kind, request_id, actor, redact_data(data))
    connection.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=seq, hash=digest))
    return seq


def _write_entry(
    connection: Connection,
    anchor: AuditAnchor,
    seq: int,
    prev_hash: str,
    at: float,
    kind: str,
    request_id: str | None,
    actor: str | None,
    data: dict[str, Any],
) -> str:
    payload = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest = entry_mac(anchor.key, prev_hash, seq, at, kind, request_id, actor, payload)
    connection.execute(
        sa.insert(audit_log).values(
            seq=seq,
            at=at,
            kind=kind,
            request_id=request_id,
            actor=actor,
            data=payload,
            prev_hash=prev_hash,
            hash=digest,
        )
    )
    return digest


_TRANSACTION = "steward_audit_transaction"


def _first_append(connection: Connection) -> bool:
    """True at the first append of the caller's transaction (later ones see its own uncommitted entries)."""
    transaction = connection.get_transaction()
    noted = connection.info.get(_TRANSACTION)
    if transaction is not None and noted is not None and noted() is transaction:
        return False
    connection.info[_TRANSACTION] = weakref.ref(transaction) if transaction is not None else None
    return True


def appended_here(connection: Connection) -> bool:
    """Whether the caller's transaction has appended audit entries (the head it reads is not committed)."""
    transaction = connection.get_transaction()
    noted = connection.info.get(_TRANSACTION)
    return transaction is not None and noted is not None and noted() is transaction


def _unkeyed_head(connection: Connection, anchor: AuditAnchor, seq: int) -> bool:
    """Whether the newest entry carries a plain hash (written before the key): the keyed chain starts
    with an `audit_anchored` entry then. Checked once per process, when the head is keyed."""
    row = connection.execute(sa.select(audit_log).where(audit_log.c.seq == seq)).first() if seq else None
    sealed = sealed_by(anchor.key, row) if row is not None else "keyed"
    if sealed == "plain":
        return True
    if sealed is None:
        log.error(
            "the newest audit entry (%s) is not sealed with the audit key %s (id %s): another key, or an "
            "edit. Run `steward audit verify`",
            seq,
            anchor.key.source,
            anchor.key.key_id,
        )
    anchor.keyed_head = True
    return False


def _checkpoint_if_due(connection: Connection, anchor: AuditAnchor, count: int, head: str) -> None:
    with anchor.lock:
        due = anchor.checkpoints is not None and count > 0
        due = due and (anchor.checkpointed is None or count >= anchor.checkpointed + anchor.every)
    if due:
        sign_checkpoint(connection, anchor, count, head)


def sign_checkpoint(connection: Connection, anchor: AuditAnchor, count: int, head: str) -> Checkpoint | None:
    """Append a signed checkpoint of the committed log (`count` entries ending in `head`) to the anchor's
    file, if the log still extends the file's latest checkpoint; else log why and sign nothing (a
    tampered log is never signed). Never raises: the caller's work goes on."""
    checkpoints = anchor.checkpoints
    if checkpoints is None:
        return None
    checkpoint = None
    try:
        latest = checkpoints.latest(anchor.key)
        problems = extension_problems(connection, anchor.key, latest, count, head)
        if latest is not None and latest.count > count and _holds(connection, latest):
            problems = []  # another replica signed a later state meanwhile: nothing to add
        elif problems:
            log.error("no audit checkpoint signed: %s. Run `steward audit verify`", problems[0])
        else:
            checkpoint = anchor.checkpoint(count, head)
            checkpoints.append(checkpoint)
    except CheckpointError as exc:
        log.error("no audit checkpoint signed: %s", exc)
    with anchor.lock:  # signed or not, the next try comes `every` entries or seconds later
        anchor.checkpointed, anchor.checkpointed_at = count, anchor.clock()
    return checkpoint


def _holds(connection: Connection, checkpoint: Checkpoint) -> bool:
    """Whether the log's entry at the checkpoint's count is the one it signed."""
    query = sa.select(audit_log.c.hash).where(audit_log.c.seq == checkpoint.count)
    return connection.execute(query).scalar() == checkpoint.head


def extension_problems(
    connection: Connection, key: Signer, since: Checkpoint | None, count: int, head: str
) -> list[AuditProblem]:
    """Whether the log's first `count` entries, ending in `head`, extend the checkpoint `since`."""
    if since is None:
        return []
    if count < since.count:
        return [
            AuditProblem(
                count, f"the log has {count} entries, fewer than the checkpoint of {since.describe()}"
            )
        ]
    rows = iter(
        connection.execute(
            sa.select(audit_log)
            .where(audit_log.c.seq >= since.count, audit_log.c.seq <= count)
            .order_by(audit_log.c.seq)
        )
    )
    walker, problems = ChainWalker(key), list[AuditProblem]()
    if since.count:
        first = next(rows, None)
        if first is None or first.seq != since.count or first.hash != since.head:
            return [
                AuditProblem(since.count, f"is not the entry the checkpoint of {since.describe()} recorded")
            ]
        walker, problems = ChainWalker.resume(key, first)
    for row in rows:
        problems += walker.step(row)
    if (walker.seq, walker.head) != (count, head):
        problems.append(AuditProblem(count, "the head does not name the log's last entry"))
    return problems


def verify_chain(connection: Connection) -> tuple[int, list[AuditProblem]]:
    """Check every entry, the head, the checkpoints and the requests that ran; (entries, problems).

    `bot/store/audit_verify.py` holds the checks; it reads this module's tables, hence the late import.
    """
    from bot.store.audit_verify import verify_log

    report = verify_log(connection)
    return report.entries, report.problems


def authorised_in_log(connection: Connection, request_id: str) -> tuple[bool, str]:
    """Whether the audit log lets the request run now, and why (see `audit_verify.authorised_in_log`)."""
    from bot.store.audit_verify import authorised_in_log as authorised

    return authorised(connection, request_id)


def iter_audit(connection: Connection, since: float | None = None) -> Iterator[dict[str, Any]]:
    """Audit entries, oldest first, as JSON-ready dicts."""
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    for row in connection.execute(query):
        yield {
            "seq": row.seq,
            "at": row.at,
            "kind": row.kind,
            "request_id": row.request_id,
            "actor": row.actor,
            "data": json.loads(row.data),
            "prev_hash": row.prev_hash,
            "hash": row.hash,
        }


@contextmanager
def actions_transaction(records: Engine, snapshot: bool = False) -> Iterator[Connection]:
    """A transaction on the action tables of the records database `records` (migrated at start-up);
    `snapshot`: everything it reads is as of one moment (PostgreSQL's REPEATABLE READ)."""
    try:
        with records.connect() as connection:
            if snapshot and connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection
    except DatabaseError as exc:  # a file damaged where the start-up migration does not read is found here
        damaged = damaged_records(records, exc)
        if damaged is not None:
            raise damaged from None
        if not isinstance(exc, OperationalError):
            raise
        where = records.url.render_as_string(hide_password=True)
        raise StateStoreError(
            f"cannot use the state database {where} ({str(exc.orig).strip()}); check STEWARD_DATABASE_URL"
        ) from None


def count_by_state(engine: Engine) -> dict[str, int]:
    """How many action requests are in each state (for /metrics); none before the first request."""
    if not sa.inspect(engine).has_table(action_requests.name):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(action_requests.c.status, sa.func.count()).group_by(action_requests.c.status)
        )
        return {str(status): int(count) for status, count in rows}
