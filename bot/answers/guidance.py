"""Draft guidance documents: an expert's answer to a knowledge gap, written for review.

A draft carries `status: draft`, so `steward ingest` skips it until a reviewer sets
`status: accepted`; its `gap:` field then closes the knowledge gap it answers.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot.errors import ConfigurationError

_SLUG = re.compile(r"[^a-z0-9]+")
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)\|([^>]+)>")
_SLACK_BARE_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)>")
_SLACK_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_SLACK_STRIKE = re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])")
_FENCE = "```"


class GuidanceError(ConfigurationError):
    """The draft could not be written; the message names the folder or setting."""


@dataclass(frozen=True)
class GuidanceDraft:
    """What an expert's reply becomes."""

    gap_id: int
    question: str
    answer: str  # Slack mrkdwn, as the expert wrote it
    expert: str  # how the document names its owner, e.g. "<@U123>"
    thread_url: str | None
    asked_on: dt.date


def slack_to_markdown(text: str) -> str:
    """Slack mrkdwn (links, bold, strike, entities) to Markdown; code blocks are kept as they are."""
    pieces = text.split(_FENCE)
    for index in range(0, len(pieces), 2):  # even pieces are outside code blocks
        part = _SLACK_LINK.sub(lambda m: f"[{m.group(2)}]({m.group(1)})", pieces[index])
        part = _SLACK_BARE_LINK.sub(r"\1", part)
        part = _SLACK_BOLD.sub(r"**\1**", part)
        part = _SLACK_STRIKE.sub(r"~~\1~~", part)
        part = re.sub(r"^[•◦▪]\s*", "- ", part, flags=re.MULTILINE)
        pieces[index] = part
    return html.unescape(_FENCE.join(pieces))


def draft_filename(gap_id: int, question: str) -> str:
    """`gap-12-how-do-we-rotate-the-feature-store-key.md`."""
    slug = _SLUG.sub("-", question.lower()).strip("-")[:60].rstrip("-") or "question"
    return f"gap-{gap_id}-{slug}.md"


def render_draft(draft: GuidanceDraft) -> str:
    """The draft document: front matter for review, then the question and the expert's answer."""
    title = " ".join(draft.question.split())
    if len(title) > 120:
        title = title[:117].rstrip() + "…"
    front = {
        "title": title,
        "kind": "guide",
        "status": "draft",
        "owner": draft.expert,
        "gap": draft.gap_id,
        "question": draft.question,
        "thread": draft.thread_url,
        "last_reviewed": draft.asked_on.isoformat(),
        "tags": ["guidance", "from-slack"],
    }
    if not draft.thread_url:
        del front["thread"]
    header = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000).strip()
    source = f"[the Slack thread]({draft.thread_url})" if draft.thread_url else "Slack"
    return (
        f"---\n{header}\n---\n\n# {title}\n\n"
        f"## Question\n\n{draft.question.strip()}\n\n"
        f"## Answer\n\n{slack_to_markdown(draft.answer).strip()}\n\n"
        f"---\n\n_Answered by {draft.expert} in {source}; captured by Steward for knowledge gap "
        f"#{draft.gap_id}. To publish: review the text, set `status: accepted` and run `steward ingest`._\n"
    )


def write_draft(inbox: Path, draft: GuidanceDraft) -> Path:
    """Write the draft into the inbox folder atomically (a reader never sees half a file)."""
    try:
        inbox.mkdir(parents=True, exist_ok=True)
        target = inbox / draft_filename(draft.gap_id, draft.question)
        handle, temporary = tempfile.mkstemp(dir=inbox, prefix=".draft-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(render_draft(draft))
            Path(temporary).replace(target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise GuidanceError(
            f"cannot write draft guidance into {inbox} ({exc.strerror or exc}); "
            "check STEWARD_GUIDANCE_INBOX points at a writable folder of the knowledge base"
        ) from None
    return target
