"""Help text and the App Home tab: how to use Steward and the state of its knowledge base."""

from __future__ import annotations

from typing import Any

from bot.answers.knowledge import KnowledgeState
from bot.slack.blocks import MAX_SECTION_TEXT, clip, split_mrkdwn
from bot.slack.mrkdwn import escape

__all__ = ["HELP", "KnowledgeState", "home_view"]  # KnowledgeState: what home_view takes

# A title or owner in a list is clipped to this many characters (Slack caps a section at 3,000).
LIST_TITLE_CHARS = 150
LIST_OWNER_CHARS = 80

HELP = (
    "*Ask me about operating AI in production* — I answer from the company's runbooks and decision "
    "records and cite them.\n"
    "• Mention me in a channel: `@Steward how do I roll back a production model?` — I answer in a thread.\n"
    "• Send me a direct message.\n"
    '• Follow up in the thread without mentioning me ("and for staging?").\n'
    "• `/steward ask QUESTION` — ask from anywhere.\n"
    "• `/steward run ACTION key=value …` — request a guarded action (rollback, retrain, pause an agent …); "
    "`/steward run` lists them. Policy decides; approvers approve in the thread.\n"
    '• `/steward incident open "title" sev=2 service=NAME` — declare an incident (its thread is the '
    "timeline); `/steward incident resolve NUMBER` when it is over.\n"
    "• `/steward sticky off` (or `on`) — whether I answer follow-ups without a mention in this channel.\n"
    "• `/steward help` — this message.\n"
    "When I do not know, I say so and offer *Ask an expert*; an expert's reply in the thread can be "
    "saved as draft guidance for the knowledge base."
)


def home_view(state: KnowledgeState) -> dict[str, Any]:
    """The App Home tab."""
    last = state.last_ingest.strftime("%Y-%m-%d %H:%M UTC") if state.last_ingest else "never"
    facts = (
        f"*Documents:* {state.documents}    *Last ingest:* {last}\n"
        f"*Past their review date:* {len(state.stale)}    *Open knowledge gaps:* {state.open_gaps}    "
        f"*Draft guidance waiting for review:* {state.drafts_waiting}"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Steward"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": HELP}},
        {"type": "divider"},
        {"type": "header", "text": {"type": "plain_text", "text": "Knowledge base"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": facts}},
    ]
    if state.documents == 0:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "The knowledge base is empty: run `steward ingest knowledge/`.",
                    }
                ],
            }
        )
    if state.stale:
        lines = [
            f"• {escape(clip(title, LIST_TITLE_CHARS))} — review by {escape(clip(review_by, 40))}"
            + (f" ({escape(clip(owner, LIST_OWNER_CHARS))})" if owner else "")
            for title, review_by, owner in state.stale[:10]
        ]
        if len(state.stale) > 10:
            lines.append(f"…and {len(state.stale) - 10} more")
        text = "*Due for review*\n" + "\n".join(lines)  # escaped titles can still outgrow one section
        blocks += [
            {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
            for piece in split_mrkdwn(text, MAX_SECTION_TEXT)
        ]
    return {"type": "home", "blocks": blocks}
