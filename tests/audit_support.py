"""Audit logs for tests: an anchor of their own per database, and the rewrites an attacker with write
access to the database (but not the audit key) can do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.store.action_requests import audit_head, audit_log
from bot.store.audit_anchor import AuditAnchor, AuditKey, register_anchor
from bot.store.audit_chain import entry_hash, entry_mac
from bot.store.audit_checkpoints import CheckpointFile
from tests.support.clock import SettableClock

KEY_TEXT = "test-audit-key-" + "k" * 32
WRONG_KEY = AuditKey.from_text("another-audit-key-" + "w" * 32, "a wrong key")


def keyed(
    engine: Engine, folder: Path, every: int = 100, clock: Callable[[], float] | None = None
) -> AuditAnchor:
    """Register an anchor for `engine`: the test key, checkpoints in `folder`/checkpoints.jsonl."""
    anchor = AuditAnchor(
        AuditKey.from_text(KEY_TEXT, "the test key"),
        CheckpointFile(folder / "checkpoints.jsonl"),
        every=every,
        every_seconds=60.0,
        replica="test-replica",
        clock=clock or SettableClock(),
    )
    register_anchor(engine, anchor)
    return anchor


def shared_key(engine: Engine) -> Engine:
    """Seal `engine`'s audit entries with the test key and no checkpoints, as every replica of one
    deployment shares STEWARD_AUDIT_KEY: engines in other processes then verify each other's entries."""
    register_anchor(engine, AuditAnchor(AuditKey.from_text(KEY_TEXT, "the test key")))
    return engine


Sealer = Callable[[str, int, float, str, str | None, str | None, str], str]


def plain_sha(
    prev: str, seq: int, at: float, kind: str, request: str | None, actor: str | None, data: str
) -> str:
    """How the old code sealed entries (anyone can)."""
    return entry_hash(prev, seq, at, kind, request, actor, data)


def wrong_key(
    prev: str, seq: int, at: float, kind: str, request: str | None, actor: str | None, data: str
) -> str:
    """A MAC with a key that is not the audit key."""
    return entry_mac(WRONG_KEY, prev, seq, at, kind, request, actor, data)


def rechain(engine: Engine, start: int, seal: Sealer) -> None:
    """Recompute every hash from entry `start` on (and the head) with `seal`, as a forger would."""
    with engine.begin() as connection:
        rows = connection.execute(sa.select(audit_log).order_by(audit_log.c.seq)).all()
        prev = rows[start - 2].hash if start > 1 else "0" * 64
        for row in rows[start - 1 :]:
            digest = seal(prev, row.seq, row.at, row.kind, row.request_id, row.actor, row.data)
            connection.execute(
                sa.update(audit_log).where(audit_log.c.seq == row.seq).values(prev_hash=prev, hash=digest)
            )
            prev = digest
        connection.execute(sa.update(audit_head).values(seq=rows[-1].seq, hash=prev))


def forge(
    engine: Engine, entries: list[tuple[str, str | None, str | None, str]], seal: Sealer, at: float = 1.0
) -> None:
    """Append (kind, request id, actor, data) entries after the head, sealed with `seal`, and move the
    head to the last one, as a forger would."""
    with engine.begin() as connection:
        head = connection.execute(sa.select(audit_head.c.seq, audit_head.c.hash)).one()
        seq, prev = int(head.seq), str(head.hash)
        for kind, request_id, actor, data in entries:
            seq += 1
            digest = seal(prev, seq, at, kind, request_id, actor, data)
            connection.execute(
                sa.insert(audit_log).values(
                    seq=seq,
                    at=at,
                    kind=kind,
                    request_id=request_id,
                    actor=actor,
                    data=data,
                    prev_hash=prev,
                    hash=digest,
                )
            )
            prev = digest
        connection.execute(sa.update(audit_head).values(seq=seq, hash=prev))


def truncate(engine: Engine, keep: int) -> None:
    """Delete the entries after `keep` and move the head back to entry `keep`, as a forger would."""
    with engine.begin() as connection:
        connection.execute(sa.delete(audit_log).where(audit_log.c.seq > keep))
        last = connection.execute(sa.select(audit_log.c.hash).where(audit_log.c.seq == keep)).scalar()
        connection.execute(sa.update(audit_head).values(seq=keep, hash=last or "0" * 64))
