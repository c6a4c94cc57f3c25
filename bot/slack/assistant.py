"""Slack's assistant pane (the AI app split view): a greeting and prompts drawn from the knowledge base.

Questions asked in the pane are direct messages in a thread. They are answered by the same handler,
and the same answer service, as any other direct message (`QuestionFlows.handle_assistant_message`),
with the pane's status in place of the working reaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient

from bot.answers.knowledge import DocumentRecord, KnowledgeBase
from bot.slack.mrkdwn import to_plain
from bot.slack.posting import Poster
from bot.slack.questions import QuestionFlows

GREETING = (
    "Hi, I'm Steward. Ask me how your company runs AI in production: I answer from your runbooks and "
    "decision records, and every answer cites its sources. When they do not say, I tell you so, and who "
    "might know."
)
EMPTY = " My knowledge base is empty, so I cannot answer yet. An admin fills it with `steward ingest`."
PROMPTS_TITLE = "Recently reviewed"
MAX_PROMPTS = 4  # Slack shows at most four suggested prompts
MAX_LABEL = 60
MAX_TOPIC = 80

# Documents whose advice is not (or no longer) in force are not suggested.
_NOT_CURRENT = frozenset({"superseded", "deprecated", "draft", "proposed", "rejected", "retired", "archived"})
_SUGGESTED_KINDS = ("runbook", "decision")
_QUESTIONS = {
    "runbook": "How do we handle {topic}?",
    "decision": "What did we decide about {topic}?",
}
_OTHER_QUESTION = "What does {topic} say?"
_RECORD_NUMBER = re.compile(r"^(?:ADR|RFC|decision|postmortem)\s*[-#]?\s*\d*\s*[:.\-–—]\s*", re.IGNORECASE)
_SUBTITLE = re.compile(r"\s+[-–—]\s+|:\s+")
_URL = re.compile(r"(?:https?://|mailto:|www\.)\S*", re.IGNORECASE)
_SLACK_ENTITY = re.compile(r"<[^<>|]*(?:\|([^<>]*))?>")  # <@U1|name>, <!channel>, <https://…|text>
# `<…>` makes mentions and links in Slack, `@` names people and groups, `|` splits a link: never in a prompt.
_ACTIVE = re.compile(r"[<>@|\x00-\x1f\x7f]")


@dataclass(frozen=True)
class SuggestedPrompt:
    """One prompt of the pane: the label shown, and the question sent when it is clicked."""

    title: str
    message: str

    def payload(self) -> dict[str, str]:
        """As assistant.threads.setSuggestedPrompts takes it."""
        return {"title": self.title, "message": self.message}


def plain_title(title: str) -> str:
    """A document title as plain words: no Markdown, URLs, mentions, links or control characters.

    Titles are document text, which is untrusted: a prompt is sent as the person's own message when
    clicked, where `<!channel>` or a link would be live.
    """
    text = _SLACK_ENTITY.sub(lambda entity: f" {entity.group(1) or ''} ", title)  # a link's label stays
    text = _ACTIVE.sub(" ", _URL.sub(" ", to_plain(text)))
    return " ".join(text.split()).strip(" -:;,.")


def suggested_prompts(documents: Sequence[DocumentRecord], limit: int = MAX_PROMPTS) -> list[SuggestedPrompt]:
    """Questions about the most recently reviewed current runbooks and decision records (any kind if none)."""
    current = [
        doc for doc in documents if (doc.status or "").lower() not in _NOT_CURRENT and not doc.superseded_by
    ]
    preferred = [doc for doc in current if doc.kind in _SUGGESTED_KINDS]
    newest = sorted(preferred or current, key=lambda doc: doc.path)
    newest.sort(key=lambda doc: doc.last_reviewed or "", reverse=True)
    cap = min(limit, MAX_PROMPTS)
    prompts: list[SuggestedPrompt] = []
    for doc in newest:
        if len(prompts) >= cap:
            break
        prompt = _prompt(doc)
        if prompt is not None and all(prompt.message != seen.message for seen in prompts):
            prompts.append(prompt)
    return prompts


def _prompt(doc: DocumentRecord) -> SuggestedPrompt | None:
    title = plain_title(doc.title)
    if not title:
        return None
    topic = _RECORD_NUMBER.sub("", title).strip() or title
    head = _SUBTITLE.split(topic, maxsplit=1)[0]
    if len(head.split()) >= 2:  # "Drift thresholds v2 - PSI bands, …" asks about "Drift thresholds v2"
        topic = head
    topic = _clip(topic, MAX_TOPIC)
    kind = doc.kind or "document"
    question = _QUESTIONS.get(kind, _OTHER_QUESTION)
    return SuggestedPrompt(
        title=_clip(f"{kind.capitalize()}: {topic}", MAX_LABEL),
        message=question.format(topic=_lower_first(topic) if kind in _QUESTIONS else topic),
    )


def _lower_first(text: str) -> str:
    """`Model rollback` reads as `model rollback` inside a question; `LLM provider …` stays."""
    if len(text) > 1 and text[0].isupper() and text[1].islower():
        return text[0].lower() + text[1:]
    return text


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" -:;,.") + "…"


class AssistantPane:
    """The pane's own events; its messages are answered by `QuestionFlows` like direct messages."""

    def __init__(self, conversations: QuestionFlows, knowledge: KnowledgeBase, poster: Poster) -> None:
        self.conversations = conversations
        self.knowledge = knowledge
        self.poster = poster

    def on_thread_started(self, body: dict[str, Any], event: dict[str, Any], client: WebClient) -> None:
        """The person opened the pane: greet them and suggest questions from the knowledge base."""
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = str(thread.get("channel_id") or ""), str(thread.get("thread_ts") or "")
        if not channel or not thread_ts or not self.conversations.first_delivery(body):
            return
        documents = self.knowledge.documents()
        empty = documents == []  # None: unreadable, which the greeting does not claim to know
        self.poster.say(client, channel, GREETING + (EMPTY if empty else ""), thread_ts=thread_ts)
        prompts = suggested_prompts(documents or [])
        if prompts:
            self.poster.suggest(client, channel, thread_ts, [p.payload() for p in prompts], PROMPTS_TITLE)
