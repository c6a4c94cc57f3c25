"""Action requests, approvals and the tamper-evident audit log, in the state database.

The tables are created and changed by the migrations in `bot/store/migrations` (see `schema.py`);
the definitions here are what queries use, and a test checks that both agree.

Every state change and its audit entry are written in one transaction. The audit log is a hash
chain: each entry carries the hash of the one before, and `audit_head` holds the newest hash. The
head row is updated first in every append, so concurrent appends queue behind each other's lock
(SQLite and PostgreSQL alike) instead of forking the chain.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.redaction import redact_data

metadata = sa.MetaData()

action_requests = sa.Table(
    "action_requests",
    metadata,
    sa.Column("request_id", sa.String(36), primary_key=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON, secrets redacted
    sa.Column("requester", sa.String(32), nullable=False),
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

GENESIS = "0" * 64


def entry_hash(
    prev_hash: str, seq: int, at: float, kind: str, request_id: str | None, actor: str | None, data: str
) -> str:
    """The hash of one audit entry, chained to the previous one."""
    canonical = json.dumps(
        {
            "prev": prev_hash,
            "seq": seq,
            "at": repr(at),
            "kind": kind,
            "request": request_id,
            "actor": actor,
            "data": data,
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


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
    """Append one entry inside the caller's transaction; returns its sequence number."""
    # Lock the head first: a concurrent append waits here and then sees our entry as its predecessor.
    connection.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(seq=audit_head.c.seq + 1))
    head = connection.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).one()
    seq, prev_hash = int(head.seq), str(head.hash)
    # secrets and personal data in free text (reasons, outputs) are masked before they are chained
    payload = json.dumps(redact_data(data), sort_keys=True, separators=(",", ":"), default=str)
    digest = entry_hash(prev_hash, seq, at, kind, request_id, actor, payload)
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
    connection.execute(sa.update(audit_head).where(audit_head.c.id == 1).values(hash=digest))
    return seq


@dataclass(frozen=True)
class AuditProblem:
    """Where the chain breaks, and how."""

    seq: int
    problem: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.problem}"


def verify_chain(connection: Connection) -> tuple[int, list[AuditProblem]]:
    """Check every entry and the head; returns (entries checked, problems found)."""
    problems: list[AuditProblem] = []
    expected_seq, prev_hash, count = 1, GENESIS, 0
    rows = connection.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
    for row in rows:
        count += 1
        if row.seq != expected_seq:
            kind = "missing (deleted)" if row.seq > expected_seq else "duplicated or reordered"
            problems.append(AuditProblem(expected_seq, f"entry {kind}; found entry {row.seq} next"))
        if row.prev_hash != prev_hash:
            problems.append(
                AuditProblem(row.seq, "does not follow the entry before it (inserted, deleted or reordered)")
            )
        recomputed = entry_hash(row.prev_hash, row.seq, row.at, row.kind, row.request_id, row.actor, row.data)
        if recomputed != row.hash:
            problems.append(
                AuditProblem(row.seq, "was edited after it was written (its hash does not match)")
            )
        expected_seq, prev_hash = row.seq + 1, row.hash
    head = connection.execute(
        sa.select(audit_head.c.seq, audit_head.c.hash).where(audit_head.c.id == 1)
    ).first()
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        problems.append(
            AuditProblem(
                int(head.seq), f"the log ends at entry {expected_seq - 1} but {head.seq} entries were written"
            )
        )
    return count, problems


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


def count_by_state(engine: Engine) -> dict[str, int]:
    """How many action requests are in each state (for /metrics); none before the first request."""
    if not sa.inspect(engine).has_table(action_requests.name):
        return {}
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(action_requests.c.status, sa.func.count()).group_by(action_requests.c.status)
        )
        return {str(status): int(count) for status, count in rows}
