"""The audit checkpoint round of a serving process, as a value to post: `steward serve` signs the audit
log's head every few minutes (STEWARD_AUDIT_CHECKPOINT_SECONDS) and, when STEWARD_AUDIT_CHANNEL is set,
the Slack layer posts a copy of the signed line there, out of the database writers' reach."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from bot.store.audit_verify import sign_due_checkpoint


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint just signed: what it says of the log, for people, and its line in the file."""

    description: str
    line: str


def sign_due(records: Engine) -> SignedCheckpoint | None:
    """Sign a checkpoint of the committed log if one is due; None when none is."""
    checkpoint = sign_due_checkpoint(records)
    return None if checkpoint is None else SignedCheckpoint(checkpoint.describe(), checkpoint.line())
