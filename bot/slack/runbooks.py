"""Where a cited document can be opened: the choice lives in `bot/answers/runbooks.py` (with the runbook
passage an approval card may quote); Slack modules import it from here."""

from __future__ import annotations

from bot.answers.runbooks import document_url

__all__ = ["document_url"]
