"""How one audit entry is checked: its MAC (or, before the log was keyed, its plain hash) and its link to
the entry before it. Pure functions over rows; the queries live in `actions.py` and `audit_verify.py`.

A log written before the key existed carries plain SHA-256 hashes. The first keyed append writes an
`audit_anchored` entry that chains from the old head, so the unkeyed prefix is fixed from then on (any
change to it breaks the anchoring entry's MAC), but not before: `verify` reports it as not anchored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bot.store.audit_checkpoints import Signer

GENESIS = "0" * 64
ANCHORED = "audit_anchored"  # the entry that starts the keyed chain from an unkeyed log's head


class Row(Protocol):
    """An `audit_log` row."""

    seq: int
    at: float
    kind: str
    request_id: str | None
    actor: str | None
    data: str
    prev_hash: str
    hash: str


def entry_fields(
    prev_hash: str, seq: int, at: float, kind: str, request_id: str | None, actor: str | None, data: str
) -> dict[str, Any]:
    """What an entry's hash or MAC covers, chained to the previous entry."""
    return {
        "prev": prev_hash,
        "seq": seq,
        "at": repr(at),
        "kind": kind,
        "request": request_id,
        "actor": actor,
        "data": data,
    }


def entry_hash(
    prev_hash: str, seq: int, at: float, kind: str, request_id: str | None, actor: str | None, data: str
) -> str:
    """The plain SHA-256 of an entry, as written before the log was keyed (anyone can compute it)."""
    canonical = json.dumps(
        entry_fields(prev_hash, seq, at, kind, request_id, actor, data), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def entry_mac(
    key: Signer,
    prev_hash: str,
    seq: int,
    at: float,
    kind: str,
    request_id: str | None,
    actor: str | None,
    data: str,
) -> str:
    """The MAC of an entry: only the holder of the audit key can compute it."""
    return key.sign("entry", entry_fields(prev_hash, seq, at, kind, request_id, actor, data))


def sealed_by(key: Signer, row: Row) -> Literal["keyed", "plain"] | None:
    """How the row's hash was made: with the key, as a plain hash, or neither (edited or forged)."""
    fields = entry_fields(row.prev_hash, row.seq, row.at, row.kind, row.request_id, row.actor, row.data)
    try:
        if key.verifies("entry", fields, row.hash):
            return "keyed"
        plain = entry_hash(row.prev_hash, row.seq, row.at, row.kind, row.request_id, row.actor, row.data)
        if plain == row.hash:
            return "plain"
    except (TypeError, ValueError):  # a value of a type Steward never writes (bytes, say): edited outside
        return None
    return None


@dataclass(frozen=True)
class AuditProblem:
    """Where the log breaks, and how: an entry (`seq`), a request, or a checkpoint line (`where`)."""

    seq: int
    problem: str
    request_id: str | None = None
    where: str | None = None

    def __str__(self) -> str:
        if self.where:
            return f"{self.where}: {self.problem}"
        if self.request_id:
            entry = f", entry {self.seq}" if self.seq else ""
            return f"request {self.request_id}{entry}: {self.problem}"
        return f"entry {self.seq}: {self.problem}"


@dataclass
class ChainWalker:
    """Walks entries in order: each must follow the last one walked and carry a valid seal.

    Plain hashes are accepted only before the first keyed entry (the unkeyed prefix of an old log);
    after it, a plain hash means an entry rewritten without the key.
    """

    key: Signer
    seq: int = 0
    head: str = GENESIS
    scheme: Literal["keyed", "plain"] | None = None  # None: nothing walked yet
    unkeyed: int = 0  # plain-hash entries walked
    anchored_at: int | None = None  # the `audit_anchored` entry that fixed the unkeyed prefix
    sealed: int = 0  # entries whose seal holds (keyed, or plain in the unkeyed prefix)
    trusted: bool = field(default=False, init=False)  # the last entry's seal holds: its content is as written

    @classmethod
    def resume(cls, key: Signer, row: Row) -> tuple[ChainWalker, list[AuditProblem]]:
        """A walker that starts at `row` (taking its link on trust) and the problems of `row` itself."""
        walker = cls(key, row.seq - 1, row.prev_hash)
        return walker, walker.step(row)

    def step(self, row: Row) -> list[AuditProblem]:
        """Check the next row; the problems found at it."""
        problems = []
        expected = self.seq + 1
        if row.seq != expected:
            kind = "missing (deleted)" if row.seq > expected else "duplicated or reordered"
            problems.append(AuditProblem(expected, f"entry {kind}; found entry {row.seq} next"))
        if row.prev_hash != self.head:
            problems.append(
                AuditProblem(row.seq, "does not follow the entry before it (inserted, deleted or reordered)")
            )
        sealed = self._seal(row)
        self.trusted = not sealed
        self.sealed += self.trusted
        problems += sealed
        self.seq, self.head = row.seq, row.hash
        return problems

    def _seal(self, row: Row) -> list[AuditProblem]:
        sealed = sealed_by(self.key, row)
        if sealed == "keyed":
            follows_plain, self.scheme = self.scheme == "plain", "keyed"
            if follows_plain and row.kind == ANCHORED:
                self.anchored_at = row.seq
            elif follows_plain:
                return [
                    AuditProblem(
                        row.seq, f"is keyed but follows unkeyed entries without an `{ANCHORED}` entry"
                    )
                ]
            return []
        if sealed == "plain" and self.scheme != "keyed":
            self.scheme = "plain"
            self.unkeyed += 1
            return []
        if sealed == "plain":
            return [
                AuditProblem(
                    row.seq,
                    "carries a plain SHA-256 hash, not its MAC: it was rewritten without the audit key",
                )
            ]
        seal = "hash" if self.scheme == "plain" else "MAC"
        return [AuditProblem(row.seq, f"was edited after it was written (its {seal} does not match)")]
