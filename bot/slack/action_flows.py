"""Guarded actions in Slack: `/steward run`, plain requests in a mention, the approval card and its clicks.

Each handler reads the payload, makes one call to the guarded-actions service (`bot/actions/guarded.py`,
over the approval service the CLI uses) and renders what it returns with `action_cards.py`. Handlers
run after the acknowledgement (see `listeners.py`).
Only the words a person wrote are read as a request; retrieved documents never trigger an action.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import DBAPIError

from bot.actions.approvals import FINISHED, ClickResult, RequestView
from bot.actions.guarded import ClickOutcome, GuardedActions, Notice, RequestNotice, RunOutcome, Submission
from bot.actions.models import ActionRequest, Actor
from bot.actions.phrases import read_request, starts_like_request
from bot.actions.policy.engine import (
    ParamError,
    PolicyError,
    build_request,
    parse_key_values,
)
from bot.actions.policy.gate import PolicyGate
from bot.answers.runbooks import RunbookExcerpts
from bot.answers.service import AnswerService
from bot.config import Settings
from bot.errors import Situation, Told
from bot.redaction import mask_secrets, masked_notice
from bot.slack.action_cards import (
    POLICY_BROKEN,
    CardFacts,
    allowed_text,
    approval_card,
    catalog_text,
    conflict_text,
    denied_text,
    expired_text,
    interrupted_text,
    invisible_text,
    misread_text,
    problems_text,
    reject_modal,
    released_text,
    request_line,
    result_message,
    secret_params,
)
from bot.slack.links import LinkPolicy
from bot.slack.mrkdwn import escape
from bot.slack.payloads import (
    BLOCK_APPROVAL,
    BLOCK_REJECT_REASON,
    INPUT_REJECT_REASON,
    RejectMetadata,
    RequestValue,
)
from bot.slack.places import REQUEST_IN_A_CHANNEL, RUN_IN_A_CHANNEL, Places, command_hint, unknown_place_text
from bot.slack.posting import Poster
from bot.slack.proposals import Mention, ProposalFlows, Say, Submit
from bot.slack.request_forms import RequestForms

log = logging.getLogger("steward.slack")

_MAX_THREAD_PAGES = 10  # of 200 messages: a card is looked for in a thread's first 2,000
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})  # Slack clients type smart quotes


# How a failed request or click is told to the person (bot/errors.py renders it).
REQUESTING = Situation(
    unexpected="Something went wrong with this request (reference `{reference}`). It is logged.",
    context="action request failed ref={reference} action={action} channel={channel}",
    told={PolicyError: Told(POLICY_BROKEN, "policy cannot be loaded ref={reference}: {error}")},
)
CLICKING = Situation(
    unexpected="Something went wrong with your click (reference `{reference}`). It is logged.",
    context="click failed ref={reference} request={request} user={user}",
    told={
        PolicyError: Told(
            POLICY_BROKEN, "policy cannot be loaded ref={reference} request={request}: {error}"
        ),
        DBAPIError: Told(
            "I could not reach the state database, so your click may not have counted. Click again "
            "in a moment: a click that counted is never counted twice (reference `{reference}`).",
            "state database unreachable ref={reference} request={request} error={error_type}",
        ),
    },
)


@dataclass(frozen=True)
class _Click:
    """Who clicked which request's button, and the card it sits on."""

    user: str
    request_id: str
    channel: str
    ts: str
    trigger_id: str
    has_buttons: bool


class ActionFlows:
    """Handlers for requesting, approving, rejecting, cancelling and running guarded actions."""

    def __init__(
        self,
        settings: Settings,
        actions: GuardedActions,
        policy: Callable[[], PolicyGate],
        answers: Callable[[], AnswerService],
        poster: Poster,
        proposals: Callable[[Submit, Say], ProposalFlows] | None = None,
    ) -> None:
        """`proposals` builds the LLM's proposal flows (when one is configured) from this object's own
        `submit` and `tell`, so nothing is patched in after construction."""
        self.settings = settings
        self.actions = actions  # built by the composition root (bot/wiring.py)
        self.policy = policy
        self._answers = answers
        self.excerpts = RunbookExcerpts(
            answers, settings.docs_base_url, LinkPolicy.from_settings(settings).allows
        )
        self.proposals = proposals(self.submit, self.tell) if proposals is not None else None
        self.forms = RequestForms(policy, poster, self.submit, self.tell)
        self.poster = poster
        self.places = Places()  # channels, or direct messages where no request is made

    # -- requests ------------------------------------------------------------------------------

    def on_run(self, text: str, command: Mapping[str, Any], client: WebClient, respond: Respond) -> None:
        """`/steward run ACTION key=value …`: problems are answered privately, the request in a thread."""
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        words = " ".join(html.unescape(text).translate(_QUOTES).split())
        try:
            policy = self.policy().policy
        except PolicyError as exc:
            log.error("policy cannot be loaded channel=%s: %s", channel, exc)
            respond(text=POLICY_BROKEN, response_type="ephemeral")
            return
        if not words:
            respond(text=catalog_text(policy), response_type="ephemeral")
            return
        refusal = self.not_a_channel(client, channel, command_hint(command), RUN_IN_A_CHANNEL)
        if refusal is not None:  # approvers cannot see a DM: nothing is requested or recorded
            respond(text=refusal, response_type="ephemeral")
            return
        name, _, args = words.partition(" ")
        spec = policy.actions.get(name)
        if spec is None:
            close = difflib.get_close_matches(name, list(policy.actions), n=1, cutoff=0.7)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            respond(
                text=f"`{escape(name)}` is not an action I can run{escape(hint)}.\n" + catalog_text(policy),
                response_type="ephemeral",
            )
            return
        try:
            request = build_request(policy, name, parse_key_values(args))
        except ParamError as exc:
            respond(
                text=f"I cannot request `{name}` like that:\n" + problems_text(exc.problems, spec),
                response_type="ephemeral",
            )
            return
        line = request_line(request.action, request.params, secret_params(spec))
        try:
            root = self.poster.say(client, channel, f"<@{user}> requests: {line}")
        except SlackApiError as exc:
            log.info("cannot post in channel=%s error=%s", channel, exc.response.get("error"))
            respond(
                text="I cannot post in this channel, so nothing was requested. Invite me "
                "(`/invite @Steward`) or run the command in a channel I am in.",
                response_type="ephemeral",
            )
            return
        self.submit(client, request, user, channel, root)

    def reads_as_request(self, text: str) -> bool:
        """Whether a message would be taken as an action request (by the parser; the LLM is not asked)."""
        try:
            return read_request(text, self.policy().policy) is not None
        except PolicyError:
            return starts_like_request(text)

    def take_mention(self, client: WebClient, mention: Mention) -> bool:
        """Handle a mention that starts with an action request; False when it is a question to answer."""
        text, channel, thread_ts, user = mention.text, mention.channel, mention.thread_ts, mention.user
        reference = mention.reference
        try:
            policy = self.policy().policy
        except PolicyError as exc:
            if not starts_like_request(text):
                return False
            log.error("policy cannot be loaded ref=%s: %s", reference, exc)
            self.tell(client, channel, POLICY_BROKEN, thread_ts)
            return True
        plain = read_request(text, policy)

        def not_here() -> str | None:
            return self.not_a_channel(client, channel, mention.channel_type)

        if plain is None:  # free phrasing: with an LLM configured, it may propose a request
            return self.proposals is not None and self.proposals.take(client, mention, policy, not_here)
        refusal = not_here()
        if refusal is not None:
            self.tell(client, channel, refusal, thread_ts)
            return True
        spec = policy.actions[plain.action]
        if plain.invisible:  # `version 1<U+200B>2` looks like 12: nothing read is what the person saw
            log.info("request refused: invisible characters action=%s ref=%s", plain.action, reference)
            self.tell(client, channel, invisible_text(plain.action, plain.invisible), thread_ts)
            return True
        if plain.conflicts:  # "staging … in prod": either reading could run the wrong thing
            log.info("request refused: parameters read twice action=%s ref=%s", plain.action, reference)
            self.tell(client, channel, conflict_text(plain.action, plain.conflicts, spec), thread_ts)
            return True
        try:
            request = build_request(policy, plain.action, plain.raw)
        except ParamError as exc:
            self.tell(client, channel, misread_text(plain.action, exc.problems, spec, plain.raw), thread_ts)
            return True
        self.submit(client, request, user, channel, thread_ts, reference)
        return True

    def not_a_channel(
        self,
        client: WebClient,
        channel: str,
        channel_type: str | None = None,
        direct_text: str = REQUEST_IN_A_CHANNEL,
    ) -> str | None:
        """Why no request is made in this conversation (a DM or group DM, or one Slack will not name)."""
        place = self.places.place(client, channel, channel_type)
        if place.direct or place.unknown:
            log.info("request refused: not in a channel channel=%s kind=%s", channel, place.kind)
            return direct_text if place.direct else unknown_place_text(place)
        return None

    def submit(
        self,
        client: WebClient,
        request: ActionRequest,
        user: str,
        channel: str,
        thread_ts: str,
        reference: str = "",
    ) -> None:
        """Let the policy decide, then post the denial, run the allowed request or post the approval card.

        Every way of asking ends here, so a request bound for a DM is refused here too, unrecorded.
        """
        refusal = self.not_a_channel(client, channel)
        if refusal is not None:
            self.tell(client, channel, refusal, thread_ts)
            return
        self.sweep(client)
        try:
            submission = self.actions.submit(
                request,
                Actor(user_id=user, channel=channel),
                thread_ts,
                before_run=lambda decided: self._decided(client, decided),
            )
            if submission.run is None:
                self._decided(client, submission)
            else:
                self.post_run(client, submission.run)
            self._masked_notice(client, submission, user, channel, thread_ts)
        except Exception as exc:
            text = REQUESTING.render(exc, log, reference, action=request.action, channel=channel)
            self.tell(client, channel, text, thread_ts)

    def _masked_notice(
        self, client: WebClient, submission: Submission, user: str, channel: str, thread_ts: str
    ) -> None:
        """Tell the requester privately that a credential in an ordinary parameter was masked."""
        detected = submission.masked
        if detected:
            kinds = sorted({kind for found in detected.values() for kind in found})
            where = "the parameter " + ", ".join(f"`{name}`" for name in detected)
            self.poster.whisper(client, channel, user, masked_notice(kinds, where), thread_ts)

    def _decided(self, client: WebClient, submission: Submission) -> None:
        """Post the denial, the note that the allowed request runs now, or the approval card."""
        view, outcome = self.shown(submission.request), submission.decision.outcome
        channel, thread_ts = str(view.channel), str(view.thread_ts)
        if outcome == "deny":
            self.poster.say(client, channel, denied_text(view, self.source(view.rule)), thread_ts)
        elif outcome == "allow":
            self.poster.say(client, channel, allowed_text(view, self.source(view.rule)), thread_ts)
        else:
            self.poster.post(client, channel, [approval_card(view, self.facts(view))], thread_ts)

    def post_run(self, client: WebClient, run: RunOutcome, card: tuple[str, str] | None = None) -> None:
        """Say why a run was stopped (with a new approval card when it waits for approvals again), post
        the result of a run, and redraw the card it was approved on."""
        view = run.request
        if view is None:
            return
        if run.blocked and view.channel and view.thread_ts:
            self.tell(client, view.channel, run.blocked, view.thread_ts)
            if run.reopened:
                self.poster.post(
                    client, view.channel, [approval_card(self.shown(view), self.facts(view))], view.thread_ts
                )
        if run.result is not None and view.channel and view.thread_ts:
            self.poster.post(client, view.channel, [result_message(view, run.result)], view.thread_ts)
        if card is not None:
            self.update_card(client, card[0], card[1], view)

    # -- the card ------------------------------------------------------------------------------

    def shown(self, view: RequestView) -> RequestView:
        """The request with its parameters in the catalog's order (the database keeps them sorted)."""
        spec = self.policy().action(view.action)
        order = [param.name for param in spec.params] if spec else []
        ranked = sorted(view.params, key=lambda key: order.index(key) if key in order else len(order))
        return dataclasses.replace(view, params={key: view.params[key] for key in ranked})

    def facts(self, view: RequestView) -> CardFacts:
        """Risk, the rule's file:line and the runbook excerpt, from the current policy and knowledge base."""
        spec = self.policy().action(view.action)
        runbook = self.excerpts(spec) if spec is not None and spec.runbook else None
        rule = self.policy().policy.rule(view.rule) if view.rule else None
        barred = rule is not None and rule.approval is not None and not rule.approval.owner_may_approve
        return CardFacts(spec.risk if spec else "unknown", self.source(view.rule), runbook, barred)

    def source(self, rule: str | None) -> str | None:
        """The file:line of the rule that decided, from the current policy."""
        found = self.policy().policy.rule(rule) if rule else None
        return str(found.source) if found is not None else None

    def update_card(
        self, client: WebClient, channel: str, ts: str, view: RequestView, decided_by: str | None = None
    ) -> None:
        card = approval_card(self.shown(view), self.facts(view), decided_by)
        try:
            client.chat_update(channel=channel, ts=ts, text=card.text, blocks=card.blocks)
        except SlackApiError as exc:
            log.warning(
                "card not updated request=%s channel=%s error=%s",
                view.request_id,
                channel,
                exc.response.get("error"),
            )

    # -- clicks --------------------------------------------------------------------------------

    def on_approve(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Approve: count the approval, run when enough are in, update the card."""
        click = self._click(body, action, client)
        if click is None:
            return
        with self._reported(client, click):
            outcome = self.actions.approve(
                click.request_id,
                click.user,
                click.channel,
                before_run=lambda counted: self._clicked(client, click, counted, always_tell=True),
            )
            if outcome.run is None:
                self._shown_click(client, click, outcome, always_tell=True)
            else:
                self.post_run(client, outcome.run, card=(click.channel, click.ts))

    def on_reject(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Reject: ask for the reason in a modal (after checking the clicker may reject at all)."""
        click = self._click(body, action, client)
        if click is None:
            return
        with self._reported(client, click):
            check = self.actions.check_reject(click.request_id, click.user, click.channel)
            if check.elsewhere:
                self._elsewhere(client, click)
            elif check.refusal is not None or check.request is None:
                self.poster.whisper(
                    client, click.channel, click.user, check.refusal or "There is no such request."
                )
            else:
                metadata = RejectMetadata(request_id=click.request_id, channel=click.channel, ts=click.ts)
                client.views_open(
                    trigger_id=click.trigger_id, view=reject_modal(metadata, self.shown(check.request))
                )

    @staticmethod
    def ack_reject_reason(ack: Ack, view: dict[str, Any]) -> None:
        """The modal's acknowledgement: a blank reason keeps the modal open with an error (no I/O)."""
        if _reason(view):
            ack()
        else:
            ack(response_action="errors", errors={BLOCK_REJECT_REASON: "Say why you reject the request."})

    def on_reject_reason(self, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """The rejection modal was submitted: reject with the reason and update the card."""
        user = str(body["user"]["id"])
        try:
            metadata = RejectMetadata.model_validate_json(str(view.get("private_metadata") or ""))
        except ValidationError:
            log.warning("reject modal with unreadable metadata dropped user=%s", user)
            return
        click = _Click(user, metadata.request_id, metadata.channel, metadata.ts, "", has_buttons=True)
        with self._reported(client, click):
            outcome = self.actions.reject(metadata.request_id, user, _reason(view))
            reason = mask_secrets(_reason(view)).text
            self._shown_click(client, click, outcome, decided_by=f"<@{user}>: {escape(reason)}")

    def on_cancel(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Cancel: only the requester, before the action runs."""
        click = self._click(body, action, client)
        if click is not None:
            with self._reported(client, click):
                outcome = self.actions.cancel(click.request_id, click.user, click.channel)
                self._shown_click(client, click, outcome, decided_by=f"<@{click.user}>")

    def on_revoke(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Revoke my approval: the approval no longer counts."""
        click = self._click(body, action, client)
        if click is not None:
            with self._reported(client, click):
                self._shown_click(
                    client, click, self.actions.revoke(click.request_id, click.user, click.channel)
                )

    def _elsewhere(self, client: WebClient, click: _Click) -> None:
        """A button's value replayed in another channel than the request's card: nothing changed."""
        self.poster.whisper(
            client,
            click.channel,
            click.user,
            "That button belongs to a request in another channel; nothing changed.",
        )

    @contextmanager
    def _reported(self, client: WebClient, click: _Click) -> Iterator[None]:
        """No silent failure: the clicker hears about it, the log gets the ids."""
        try:
            yield
        except Exception as exc:
            text = CLICKING.render(exc, log, request=click.request_id, user=click.user)
            self.poster.whisper(client, click.channel, click.user, text)

    def _click(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> _Click | None:
        user = str(body["user"]["id"])
        container = body.get("container") or {}
        message = body.get("message") or {}
        channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
        try:
            request_id = RequestValue.model_validate_json(str(action.get("value") or "")).request_id
        except ValidationError:
            log.warning("approval button with an unreadable value dropped user=%s", user)
            self.poster.whisper(client, channel, user, "I cannot read that button; nothing changed.")
            return None
        return _Click(
            user=user,
            request_id=request_id,
            channel=channel,
            ts=str(container.get("message_ts") or message.get("ts") or ""),
            trigger_id=str(body.get("trigger_id") or ""),
            has_buttons=any(block.get("type") == "actions" for block in message.get("blocks") or []),
        )

    def _shown_click(
        self,
        client: WebClient,
        click: _Click,
        outcome: ClickOutcome,
        decided_by: str | None = None,
        always_tell: bool = False,
    ) -> None:
        """A click's outcome that ran nothing: refused as from elsewhere, or what changed."""
        if outcome.elsewhere is not None:
            self._elsewhere(client, click)
        elif outcome.click is not None:
            self._clicked(client, click, outcome.click, decided_by, always_tell)

    def _clicked(
        self,
        client: WebClient,
        click: _Click,
        result: ClickResult,
        decided_by: str | None = None,
        always_tell: bool = False,
    ) -> None:
        """Tell the clicker what happened (when nothing changed), and update the card when it did."""
        log.info("click request=%s changed=%s", click.request_id, result.changed)
        view = result.request
        if not result.changed or always_tell:
            self.poster.whisper(client, click.channel, click.user, result.message)
        # A refusal carries the request as its transaction left it (a click past the deadline expires it).
        stale = view is not None and view.status in FINISHED and click.has_buttons  # e.g. expired just now
        if view is not None and click.ts and (result.changed or stale):
            self.update_card(client, click.channel, click.ts, view, decided_by if result.changed else None)

    # -- expiry --------------------------------------------------------------------------------

    def sweep(self, client: WebClient) -> list[str]:
        """Expire requests past their deadline and say so in their threads; returns their ids."""
        return [notice.request_id for notice in self._post(client, self.actions.sweep())]

    def recover(self, client: WebClient, older_than_seconds: float) -> list[tuple[str, str]]:
        """Runs a dead process left behind: say so in their threads; idempotent ones run again now."""
        notices = self._post(client, self.actions.recover(older_than_seconds))
        return [(notice.request_id, notice.state) for notice in notices]

    def release_held(self, client: WebClient) -> list[str]:
        """Requests a rule held (a freeze) whose approvals are in and that may run now: run them."""
        return [notice.request_id for notice in self._post(client, self.actions.release_held())]

    def run_stranded(self, client: WebClient, older_than_seconds: float) -> list[str]:
        """Approved requests whose replica died before running them: run them now (exactly once)."""
        notices = self._post(client, self.actions.run_stranded(older_than_seconds))
        return [notice.request_id for notice in notices]

    def _post(self, client: WebClient, notices: Iterator[Notice]) -> list[RequestNotice]:
        """Post each notice in its request's thread as it comes (a run comes after its notice is out);
        the request notices."""
        posted: list[RequestNotice] = []
        for notice in notices:
            if isinstance(notice, RunOutcome):
                self.post_run(client, notice)
                continue
            posted.append(notice)
            view = notice.request
            if view is None or not view.channel or not view.thread_ts:
                continue
            if notice.kind == "expired":
                self._expired(client, notice.request_id, view)
            elif notice.kind == "interrupted":
                self.tell(client, view.channel, interrupted_text(self.shown(view)), view.thread_ts)
            elif notice.kind == "released":
                self.tell(client, view.channel, released_text(self.shown(view)), view.thread_ts)
        return posted

    def _expired(self, client: WebClient, request_id: str, view: RequestView) -> None:
        """Say so in the thread and redraw its cards without buttons; a failure is logged (the next
        request's notice still goes out)."""
        channel, thread_ts = str(view.channel), str(view.thread_ts)
        try:
            self.tell(client, channel, expired_text(self.shown(view)), thread_ts)
            for ts in self._live_cards(client, channel, thread_ts, request_id):
                self.update_card(client, channel, ts, view)  # expired, without buttons
        except Exception:
            log.exception("expiry notice failed request=%s", request_id)

    @staticmethod
    def _live_cards(client: WebClient, channel: str, thread_ts: str, request_id: str) -> list[str]:
        """The ts of the request's cards in its thread that still show buttons (read back from Slack)."""
        found: list[str] = []
        cursor: str | None = None
        for _ in range(_MAX_THREAD_PAGES):
            try:
                replies = client.conversations_replies(
                    channel=channel, ts=thread_ts, limit=200, cursor=cursor
                )
            except SlackApiError as exc:
                log.warning(
                    "card not found request=%s channel=%s error=%s",
                    request_id,
                    channel,
                    exc.response.get("error"),
                )
                return found
            found += [
                str(message["ts"])
                for message in replies.get("messages") or []
                if request_id in _card_requests(message)
            ]
            cursor = ((replies.get("response_metadata") or {}).get("next_cursor")) or None
            if not replies.get("has_more") or not cursor:
                break
        return found

    def tell(self, client: WebClient, channel: str, text: str, thread_ts: str) -> None:
        """Post a short message (in a thread when `thread_ts` is given); failures are logged."""
        try:
            self.poster.say(client, channel, text, thread_ts=thread_ts or None)
        except SlackApiError as exc:
            log.error("could not post channel=%s error=%s", channel, exc.response.get("error"))


def _card_requests(message: Mapping[str, Any]) -> set[str]:
    """The request ids an approval card's buttons act on (none when it has no buttons)."""
    ids: set[str] = set()
    for block in message.get("blocks") or []:
        if block.get("type") != "actions" or block.get("block_id") != BLOCK_APPROVAL:
            continue
        for element in block.get("elements") or []:
            try:
                ids.add(RequestValue.model_validate_json(str(element.get("value") or "")).request_id)
            except ValidationError:
                continue
    return ids


def _reason(view: Mapping[str, Any]) -> str:
    values = (view.get("state") or {}).get("values") or {}
    entered = ((values.get(BLOCK_REJECT_REASON) or {}).get(INPUT_REJECT_REASON) or {}).get("value")
    return " ".join(str(entered or "").split())[:1000]
