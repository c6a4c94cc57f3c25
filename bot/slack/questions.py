"""Questions asked in Slack: mentions, direct messages, the assistant pane, sticky follow-ups, `/steward`,
App Home.

Each handler parses the Slack payload into a neutral question, calls the question service (the same
one `steward ask` uses: it answers and records, bot/answers/questions.py) and renders the result.
Handlers run after the acknowledgement, on the listener executor's threads (see `listeners.py`). With an
LLM, the answer streams into its thread as it is written and is then replaced by its checked version
(see `streaming.py`).
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.answers.deliveries import Deliveries
from bot.answers.gaps import GapService
from bot.answers.knowledge import KnowledgeBase, KnowledgeState
from bot.answers.models import Answer, Citation
from bot.answers.questions import Asked, QuestionService
from bot.answers.retrieval import IndexMissingError
from bot.answers.runbooks import document_url
from bot.answers.service import EmptyQuestionError
from bot.config import Settings
from bot.errors import Situation, Told, Unavailable, new_reference
from bot.metrics import ANSWERS
from bot.redaction import mask_secrets, masked_notice
from bot.slack.action_flows import ActionFlows
from bot.slack.blocks import RenderedMessage, answer_messages
from bot.slack.experts import offer_to_save
from bot.slack.home import HELP, home_view
from bot.slack.incidents import IncidentFlows
from bot.slack.links import LinkPolicy
from bot.slack.mrkdwn import escape
from bot.slack.places import BOTS_USE_THE_AGENT_API, DIRECT, REQUEST_IN_A_CHANNEL
from bot.slack.posting import FAILED, WORKING, Poster
from bot.slack.proposals import Mention
from bot.slack.streaming import LiveAnswer

log = logging.getLogger("steward.slack")
_CLAIMED = "steward_claimed"  # set in the context at acknowledgement: this delivery is ours to answer

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)\|([^>]+)>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
# Message subtypes that are people talking; edits, deletions, joins and bot posts are not.
_HUMAN_SUBTYPES = (None, "thread_broadcast", "file_share")
_HISTORY_TURNS = 6
ASSISTANT_ROOT = "assistant_app_thread"  # subtype of the root message of an assistant-pane thread
STATUS = "searching the runbooks…"  # under the question in the assistant pane while Steward works
MAX_THREAD_TITLE = 100

# How a failed answer is told in the thread (bot/errors.py renders it).
ANSWERING = Situation(
    unexpected=(
        "Something went wrong while I was answering (reference `{reference}`). "
        "It is logged; please try again."
    ),
    context="answer failed ref={reference} channel={channel}",
    told={
        EmptyQuestionError: Told("I did not catch a question there. " + HELP),
        IndexMissingError: Told(
            "My knowledge base is empty, so I cannot answer yet. An admin fills it with `steward ingest`.",
            "knowledge base empty ref={reference}",
            logging.WARNING,
        ),
        Unavailable: Told(
            "I cannot reach my knowledge base right now, so I cannot answer (reference `{reference}`).",
            "knowledge base unavailable ref={reference} error={error}",
        ),
    },
)


def question_text(text: str, bot_user_id: str | None) -> str:
    """The words of a Slack message: the bot's mention removed, links and entities made plain."""
    if bot_user_id:
        text = re.sub(rf"<@{bot_user_id}(?:\|[^>]*)?>", " ", text)
    text = _LINK.sub(r"\2", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = re.sub(r"<((?:https?|mailto):[^>]+)>", r"\1", text)
    return " ".join(html.unescape(text).split())


@dataclass(frozen=True)
class Question:
    """A question as the answer service sees it, plus where to answer it."""

    text: str
    channel: str
    thread_ts: str  # the thread to answer in (the question's own ts for a new thread)
    message_ts: str | None  # the question's message, for the working reaction
    user: str
    earlier: tuple[str, ...] = ()
    reference: str = ""  # event id or similar, for logs
    team: str = ""  # the asker's workspace: Slack needs it (and `user`) to stream outside a DM
    assistant: bool = False  # asked in the assistant pane: its status stands in for the working reaction


@dataclass(frozen=True)
class _Thread:
    """What a thread's history says about a new message in it."""

    earlier: tuple[str, ...] = ()  # earlier human messages, oldest first
    in_pane: bool = False  # the thread is one of the assistant pane's


class QuestionFlows:
    """Handlers for everything that asks Steward a question."""

    def __init__(
        self,
        settings: Settings,
        questions: QuestionService,
        gaps: GapService,
        knowledge: KnowledgeBase,
        deliveries: Deliveries,
        poster: Poster,
        actions: ActionFlows | None = None,
        incidents: IncidentFlows | None = None,
    ) -> None:
        self.settings = settings
        self.questions = questions  # answers and records them, as `steward ask` does
        self.gaps = gaps  # a reply in a gap's thread may be its answer
        self.knowledge = knowledge  # the App Home's state of the knowledge base
        self.deliveries = deliveries  # each event answered once, by one replica (or its successor)
        self.poster = poster
        self.actions = actions  # guarded actions: `/steward run` and mentions that request an action
        self.incidents = incidents  # `/steward incident open|resolve`, acknowledgements in their threads

    # -- events ------------------------------------------------------------------------------

    def first_delivery(self, body: dict[str, Any], event: dict[str, Any] | None = None) -> bool:
        """False for an event Slack (or another replica) already delivered.

        With the `event`, the claim stays open until `finished`: if this replica dies before that, a live
        one answers the event (bot/slack/recovery.py).
        """
        event_id = body.get("event_id")
        if not event_id:
            return True
        if event is None:
            fresh = self.deliveries.claim(str(event_id))
        else:
            thread = event.get("thread_ts")
            channel, ts = str(event["channel"]), str(event["ts"])
            fresh = self.deliveries.claim(str(event_id), channel, ts, str(thread) if thread else None)
        if not fresh:
            log.info("duplicate delivery dropped event=%s", event_id)
        return fresh

    def finished(self, body: dict[str, Any]) -> None:
        """The event is handled: no other replica needs to take it over."""
        event_id = body.get("event_id")
        if event_id and self.deliveries.replica is not None:
            try:
                self.deliveries.finish(str(event_id))
            except Exception as exc:  # the answer is out; at worst a live replica answers it again later
                log.warning("event not marked finished event=%s error=%s", event_id, type(exc).__name__)

    def ack_event(self, ack: Ack, body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> None:
        """Acknowledge a mention or message, claiming a question first: a replica that dies after this
        has left a record a live replica answers from (bot/slack/recovery.py)."""
        try:
            wanted = (
                self._from_someone_to_answer(event, context)
                if event.get("type") == "app_mention"
                else self._message_wanted(event, context)
            )
            if wanted:
                context[_CLAIMED] = self.first_delivery(body, event)
        except Exception as exc:  # the database may be down: answering claims again and says what is wrong
            log.warning("event not claimed at acknowledgement error=%s", type(exc).__name__)
        finally:
            ack()

    def _claimed(self, body: dict[str, Any], event: dict[str, Any], context: BoltContext) -> bool:
        """Whether this delivery is the one to answer (claimed at acknowledgement, or now)."""
        claimed = context.get(_CLAIMED)
        return bool(claimed) if claimed is not None else self.first_delivery(body, event)

    def on_mention(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """`@Steward question` in a channel: answer in a thread under the question."""
        if self._from_someone_to_answer(event, context):
            self._once(self.handle_mention, body, event, client, context)

    def _once(
        self,
        handle: Callable[[dict[str, Any], dict[str, Any], WebClient, BoltContext], None],
        body: dict[str, Any],
        event: dict[str, Any],
        client: WebClient,
        context: BoltContext,
    ) -> None:
        """Handle a delivery this replica claimed, then mark its event finished (even when it fails)."""
        if not self._claimed(body, event, context):
            return
        try:
            handle(body, event, client, context)
        finally:
            self.finished(body)

    def handle_mention(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """A claimed mention: an action request, or a question answered in its thread."""
        ts = str(event["ts"])
        thread_ts = str(event.get("thread_ts") or ts)
        words = question_text(str(event.get("text") or ""), context.bot_user_id)
        user = str(event.get("user") or event.get("bot_id") or "")
        ref = str(body.get("event_id") or "")
        # Only a person's own words can request an action (never a bot's), and only when they start with one.
        if (
            self.actions is not None
            and not event.get("bot_id")
            and self.actions.take_mention(
                client, Mention(words, str(event["channel"]), thread_ts, user, ref, event.get("channel_type"))
            )
        ):
            return
        if event.get("bot_id") and self.actions is not None and self.actions.reads_as_request(words):
            # a bot asking for an action: no abstention, no knowledge gap; the way for agents is the API
            self.poster.say(client, str(event["channel"]), BOTS_USE_THE_AGENT_API, thread_ts=thread_ts)
            return
        earlier = self._thread(client, event, thread_ts, context).earlier if event.get("thread_ts") else ()
        self.answer(
            client,
            Question(
                text=words,
                channel=str(event["channel"]),
                thread_ts=thread_ts,
                message_ts=ts,
                user=user,
                earlier=earlier,
                reference=ref,
                team=_team(body, context),
            ),
        )

    def on_message(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """Direct messages, follow-ups in threads Steward answered, replies in a knowledge gap's thread."""
        if self._message_wanted(event, context):
            self._once(self.handle_message, body, event, client, context)

    def on_assistant_message(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """A message in a thread of the assistant pane: answered as any direct message is."""
        if self._message_wanted(event, context):
            self._once(self.handle_assistant_message, body, event, client, context)

    def handle_assistant_message(
        self, body: dict[str, Any], event: dict[str, Any], client: WebClient, context: BoltContext
    ) -> None:
        """A claimed message in the assistant pane: the pane's status while answering, its thread titled."""
        self.handle_message(body, event, client, context, assistant=True)

    def handle_message(
        self,
        body: dict[str, Any],
        event: dict[str, Any],
        client: WebClient,
        context: BoltContext,
        assistant: bool = False,
    ) -> None:
        """A claimed direct message or thread reply: a follow-up, a gap's answer, or nothing."""
        channel = str(event.get("channel") or "")
        text = str(event.get("text") or "")
        is_dm = event.get("channel_type") == "im" or channel.startswith("D")
        thread_ts = event.get("thread_ts")
        ts = str(event["ts"])
        user = str(event.get("user") or event.get("bot_id") or "")
        if thread_ts and not is_dm and self.incidents is not None:
            self.incidents.on_reply(channel, str(thread_ts), user)
        if thread_ts and not is_dm:
            gap = self.gaps.open_in_thread(channel, str(thread_ts))
            if gap is not None and user != gap.asker:
                offer_to_save(self.poster, client, gap.gap_id, channel, ts, user, str(thread_ts))
                return
            if not self.questions.follows_up(channel, str(thread_ts)):
                return
        answer_thread = str(thread_ts or ts)
        thread = self._thread(client, event, answer_thread, context) if thread_ts else _Thread()
        words = question_text(text, context.bot_user_id)
        if is_dm and words.lower() in ("help", "?", "hi", "hello"):
            self.poster.say(client, channel, HELP, thread_ts=answer_thread)
            return
        direct = is_dm or event.get("channel_type") in DIRECT  # a group DM: approvers cannot see it either
        if direct and self.actions is not None and self.actions.reads_as_request(words):
            self.poster.say(client, channel, REQUEST_IN_A_CHANNEL, thread_ts=answer_thread)
            return
        if assistant and thread.in_pane and not thread.earlier and words:  # the pane's first question
            title = mask_secrets(words).text
            self.poster.set_title(client, channel, answer_thread, _clip(title, MAX_THREAD_TITLE))
        self.answer(
            client,
            Question(
                text=words,
                channel=channel,
                thread_ts=answer_thread,
                message_ts=ts,
                user=user,
                earlier=thread.earlier,
                reference=str(body.get("event_id") or ""),
                team=_team(body, context),
                assistant=assistant,
            ),
        )

    def _message_wanted(self, event: dict[str, Any], context: BoltContext) -> bool:
        """A direct message or a thread reply from someone to answer (mentions go to `on_mention`)."""
        if not self._from_someone_to_answer(event, context):
            return False
        text = str(event.get("text") or "")
        mentioned = bool(context.bot_user_id) and f"<@{context.bot_user_id}" in text
        # top-level chatter is not for Steward
        return event.get("channel_type") == "im" or bool(event.get("thread_ts") and not mentioned)

    def _from_someone_to_answer(self, event: dict[str, Any], context: BoltContext) -> bool:
        if event.get("subtype") not in _HUMAN_SUBTYPES or event.get("hidden"):
            return False  # edits, deletions, joins, bot_message …
        if context.bot_user_id and event.get("user") == context.bot_user_id:
            return False  # never itself
        bot_id = event.get("bot_id")
        if bot_id and (bot_id == context.bot_id or bot_id not in self.settings.answer_bots):
            return False
        return bool(event.get("ts") and event.get("channel"))

    def _thread(
        self, client: WebClient, event: dict[str, Any], thread_ts: str, context: BoltContext
    ) -> _Thread:
        """The thread's earlier human messages (oldest first), to read a follow-up in context."""
        try:
            replies = client.conversations_replies(channel=str(event["channel"]), ts=thread_ts, limit=50)
        except SlackApiError as exc:
            log.info(
                "thread history unavailable channel=%s error=%s",
                event.get("channel"),
                exc.response.get("error"),
            )
            return _Thread()
        current = float(event["ts"])
        messages = replies.get("messages") or []
        in_pane = any(m.get("ts") == thread_ts and m.get("subtype") == ASSISTANT_ROOT for m in messages)
        turns = []
        for message in messages:
            if float(message.get("ts", 0)) >= current or message.get("bot_id") or message.get("subtype"):
                continue
            if message.get("user") == context.bot_user_id:
                continue
            words = question_text(str(message.get("text") or ""), context.bot_user_id)
            if words:
                turns.append(words)
        return _Thread(tuple(turns[-_HISTORY_TURNS:]), in_pane)

    # -- answering -----------------------------------------------------------------------------

    def answer(self, client: WebClient, question: Question) -> None:
        """Answer in the question's thread, with a working reaction (or status) and no silent failure.

        An LLM's text streams into the thread as it is written; the checked answer then takes its place.
        """
        started = time.perf_counter()
        self._working(client, question)
        live = LiveAnswer(
            client, self.poster, question.channel, question.thread_ts, question.user, question.team
        )
        failed = False
        try:
            if not question.text:
                self.poster.say(client, question.channel, HELP, thread_ts=question.thread_ts)
                return
            masked = mask_secrets(question.text)  # the conversation store keeps it masked
            if masked.kinds:
                notice = masked_notice(masked.kinds)
                self.poster.whisper(client, question.channel, question.user, notice, question.thread_ts)
            messages, answer = self.render(question, on_text=live.write)
            live.finish(messages)
            ANSWERS.labels("abstained" if answer.abstained else "answered").inc()
            log.info(
                "answered ref=%s channel=%s question_chars=%d abstained=%s confidence=%.2f streamed=%d "
                "seconds=%.3f",
                question.reference,
                question.channel,
                len(question.text),
                answer.abstained,
                answer.confidence,
                live.pieces,
                time.perf_counter() - started,
            )
        except Exception as exc:
            failed = True
            live.abandon()
            self._report_failure(client, question.channel, question.thread_ts, exc, question.reference)
        finally:
            self._done(client, question, failed)

    def _working(self, client: WebClient, question: Question) -> None:
        """Show that Steward is on it: the pane's status, or a reaction on the question."""
        if question.assistant:
            self.poster.set_status(client, question.channel, question.thread_ts, STATUS)
        elif question.message_ts:
            self.poster.react(client, question.channel, question.message_ts, WORKING)

    def _done(self, client: WebClient, question: Question, failed: bool) -> None:
        """Take the working sign away (Slack clears the pane's status itself when Steward replies)."""
        if question.assistant:
            if failed:  # the failure notice may not have been posted either
                self.poster.set_status(client, question.channel, question.thread_ts, "")
        elif question.message_ts:
            self.poster.unreact(client, question.channel, question.message_ts, WORKING)
            if failed:
                self.poster.react(client, question.channel, question.message_ts, FAILED)

    def render(
        self, question: Question, on_text: Callable[[str], None] | None = None
    ) -> tuple[list[RenderedMessage], Answer]:
        """Ask the question service (it records the answer, the gap when it abstains, the thread answered),
        build the blocks.

        `on_text` receives an LLM's text as it is written (see `AnswerService.ask`).
        """
        asked = Asked(
            text=question.text,
            place=question.channel,
            asker=question.user,
            thread=question.thread_ts,
            earlier=question.earlier,
        )
        recorded = self.questions.ask(asked, on_text=on_text)
        answer = recorded.answer
        messages = answer_messages(
            answer,
            answer_id=None if answer.abstained else recorded.answer_id,
            gap_id=recorded.gap_id,
            source_url=self.source_url,
            allowed=LinkPolicy.from_settings(self.settings).allows,
        )
        return messages, answer

    def source_url(self, citation: Citation) -> str | None:
        """The document's own URL (on an allowed host), or the configured base URL plus its path."""
        policy = LinkPolicy.from_settings(self.settings)
        return document_url(citation.url, citation.path, self.settings.docs_base_url, policy.allows)

    def _report_failure(
        self, client: WebClient, channel: str, thread_ts: str, exc: Exception, ref: str
    ) -> None:
        reference = ref or new_reference()
        text = ANSWERING.render(exc, log, reference, channel=channel)
        try:
            self.poster.say(client, channel, text, thread_ts=thread_ts)
        except SlackApiError as error:
            log.error("could not report failure ref=%s error=%s", reference, error.response.get("error"))

    # -- /steward ------------------------------------------------------------------------------

    def on_command(self, command: dict[str, Any], client: WebClient, respond: Respond) -> None:
        """`/steward ask …`, `/steward run …`, `/steward sticky on|off` (help is answered on the ack path)."""
        verb, _, rest = str(command.get("text") or "").strip().partition(" ")
        channel, user = str(command.get("channel_id") or ""), str(command.get("user_id") or "")
        if verb.lower() in ("", "help"):
            return  # answered by the acknowledgement
        if verb.lower() == "sticky":
            self._set_sticky(channel, user, rest.strip().lower(), respond)
            return
        if verb.lower() == "run" and self.actions is not None:
            self.actions.on_run(rest, command, client, respond)
            return
        if verb.lower() == "incident" and self.incidents is not None:
            self.incidents.on_command(rest, command, client, respond)
            return
        words = rest.strip() if verb.lower() == "ask" else f"{verb} {rest}".strip()
        words = " ".join(html.unescape(words).split())
        if not words:
            respond(
                text="Ask a question after `/steward ask`, e.g. `/steward ask how do I roll back a model?`"
            )
            return
        try:
            # the command's text was private; a credential in it must not be posted for the channel to see
            # the words are the person's: shown as text, never as live mentions or links (mrkdwn escaped)
            root = self.poster.say(client, channel, f"<@{user}> asked: {escape(mask_secrets(words).text)}")
        except SlackApiError as exc:
            # Not a member of the channel (or a DM with someone else): answer privately instead.
            log.info(
                "cannot post in channel=%s error=%s; answering ephemerally",
                channel,
                exc.response.get("error"),
            )
            self._answer_privately(words, channel, user, respond)
            return
        team = str(command.get("team_id") or "")
        question = Question(
            text=words, channel=channel, thread_ts=root, message_ts=None, user=user, team=team
        )
        self.answer(client, question)

    def _answer_privately(self, words: str, channel: str, user: str, respond: Respond) -> None:
        masked = mask_secrets(words)
        if masked.kinds:
            respond(text=masked_notice(masked.kinds), response_type="ephemeral")
        try:
            messages, _answer = self.render(
                Question(text=words, channel=channel, thread_ts="", message_ts=None, user=user)
            )
            for message in messages:
                respond(text=message.text, blocks=message.blocks, response_type="ephemeral")
        except Exception as exc:
            log.exception("private answer failed channel=%s", channel)
            respond(text=f"Something went wrong while I was answering ({type(exc).__name__}). It is logged.")

    def _set_sticky(self, channel: str, user: str, value: str, respond: Respond) -> None:
        if value not in ("on", "off"):
            state = "on" if self.questions.sticky(channel) else "off"
            respond(
                text=f"Follow-ups without a mention are *{state}* here. Use `/steward sticky on` or `off`."
            )
            return
        self.questions.set_sticky(channel, value == "on", user)
        if value == "on":
            respond(text="In this channel I will answer follow-ups in threads I answered, without a mention.")
        else:
            respond(text="In this channel I will only answer when mentioned.")

    # -- App Home ------------------------------------------------------------------------------

    def on_home_opened(self, event: dict[str, Any], client: WebClient) -> None:
        """Publish the App Home tab: how to use Steward and the state of the knowledge base."""
        if event.get("tab", "home") != "home":
            return
        client.views_publish(user_id=str(event["user"]), view=home_view(self.knowledge_state()))

    def knowledge_state(self) -> KnowledgeState:
        """Documents, last ingest, stale documents, gaps and drafts."""
        return self.knowledge.state()


def _team(body: dict[str, Any], context: BoltContext) -> str:
    """The workspace the event came from."""
    return str(context.team_id or body.get("team_id") or "")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
