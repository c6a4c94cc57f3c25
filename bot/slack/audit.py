"""`steward serve`'s audit checkpoint round in Slack: the checkpoint signed (`bot/actions/checkpoints.py`)
is posted to STEWARD_AUDIT_CHANNEL, out of the database writers' reach."""

from __future__ import annotations

from collections.abc import Callable

from slack_sdk import WebClient

from bot.actions.checkpoints import SignedCheckpoint


def checkpoint_round(
    sign: Callable[[], SignedCheckpoint | None], client: WebClient, channel: str | None
) -> SignedCheckpoint | None:
    """Sign a checkpoint if one is due (`sign`) and post it to `channel`."""
    checkpoint = sign()
    if checkpoint is not None and channel:
        client.chat_postMessage(channel=channel, text=checkpoint_text(checkpoint))
    return checkpoint


def checkpoint_text(checkpoint: SignedCheckpoint) -> str:
    """The post: what was signed, and the signed line itself (the same as in the checkpoint file)."""
    return (
        f"Audit checkpoint: the audit log had {checkpoint.description}. The signed line, as in the "
        f"checkpoint file, to compare with it if the file is ever in doubt:\n```{checkpoint.line}```"
    )
