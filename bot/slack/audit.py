"""`steward serve`'s audit checkpoint round: sign the audit log's head every few minutes and, when
STEWARD_AUDIT_CHANNEL is set, post a copy of the signed line there, out of the database writers' reach."""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from bot.store.audit_checkpoints import Checkpoint
from bot.store.audit_verify import sign_due_checkpoint


def checkpoint_round(records: Engine, client: WebClient, channel: str | None) -> Checkpoint | None:
    """Sign a checkpoint if one is due (STEWARD_AUDIT_CHECKPOINT_SECONDS) and post it to `channel`."""
    checkpoint = sign_due_checkpoint(records)
    if checkpoint is not None and channel:
        client.chat_postMessage(channel=channel, text=checkpoint_text(checkpoint))
    return checkpoint


def checkpoint_text(checkpoint: Checkpoint) -> str:
    """The post: what was signed, and the signed line itself (the same as in the checkpoint file)."""
    return (
        f"Audit checkpoint: the audit log had {checkpoint.describe()}. The signed line, as in the "
        f"checkpoint file, to compare with it if the file is ever in doubt:\n```{checkpoint.line()}```"
    )
