"""Guarded actions in Slack: `/steward run`, plain requests in a mention, the approval card and its clicks.

Each handler reads the payload, calls the approval service (`bot/actions/approvals.py`, the same one the
CLI uses) and renders with `action_cards.py`. Handlers run after the acknowledgement (see `listeners.py`).
Only the words a person wrote are read as a request; retrieved documents never trigger an action.
"""

from __future__ import annotations

import dataclasses
import difflib
import html
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.approvals import FINISHED, ApprovalService, ClickResult, RequestView
from bot.actions.gate import PolicyGate
from bot.actions.models import ActionRequest, ActionSpec, Actor, ApprovalRequirement, Decision
from bot.actions.phrases import read_request, starts_like_request
from bot.actions.policy import (
    ParamError,
    PolicyError,
    build_request,
    parse_key_values,
    parse_params,
)
from bot.actions.runner import Execute, execute_once
from bot.answers.retrieval import Retriever
from bot.answers.service import AnswerService
from bot.config import Settings
from bot.index.lexical import terms
from bot.slack.action_cards import (
    CardFacts,
    RunbookExcerpt,
    allowed_text,
    approval_card,
    catalog_text,
    denied_text,
    expired_text,
    form_values,
    problems_text,
    reject_modal,
    request_form,
    request_line,
    result_message,
    secret_params,
)
from bot.slack.mrkdwn import escape
from bot.slack.payloads import (
    BLOCK_CHANNEL,
    BLOCK_PARAM_PREFIX,
    BLOCK_PICK_ACTION,
    BLOCK_REJECT_REASON,
    INPUT_REJECT_REASON,
    RejectMetadata,
    RequestValue,
)
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

POLICY_BROKEN = (
    "The policy files cannot be loaded, so I cannot run or request any action right now. "
    "An admin can see what is wrong with `steward policy check`."
)
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})  # Slack clients type smart quotes


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
        service: ApprovalService,
        policy: Callable[[], PolicyGate],
        answers: Callable[[], AnswerService],
        poster: Poster,
        execute: Execute | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.policy = policy
        self._answers = answers
        self.poster = poster
        self.execute = execute

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

    def take_mention(
        self, client: WebClient, text: str, channel: str, thread_ts: str, user: str, reference: str = ""
    ) -> bool:
        """Handle a mention that starts with an action request; False when it is a question to answer."""
        try:
            policy = self.policy().policy
        except PolicyError as exc:
            if not starts_like_request(text):
                return False
            log.error("policy cannot be loaded ref=%s: %s", reference, exc)
            self._say(client, channel, POLICY_BROKEN, thread_ts)
            return True
        plain = read_request(text, policy)
        if plain is None:
            return False
        spec = policy.actions[plain.action]
        try:
            request = build_request(policy, plain.action, plain.raw)
        except ParamError as exc:
            understood = " ".join(f"`{escape(k)}={escape(v)}`" for k, v in plain.raw.items())
            self._say(
                client,
                channel,
                f"I read this as a request to run `{plain.action}`, but:\n"
                + problems_text(exc.problems, spec, understood)
                + "\nSay it again with what is missing, or use the command.",
                thread_ts,
            )
            return True
        self.submit(client, request, user, channel, thread_ts, reference)
        return True

    def submit(
        self,
        client: WebClient,
        request: ActionRequest,
        user: str,
        channel: str,
        thread_ts: str,
        reference: str = "",
    ) -> None:
        """Let the policy decide, then post the denial, run the allowed request or post the approval card."""
        self.sweep(client)
        try:
            view, decision = self.service.submit(request, Actor(user_id=user, channel=channel), thread_ts)
            self._decided(client, view, decision)
        except Exception as exc:
            ref = reference or uuid.uuid4().hex[:12]
            if isinstance(exc, PolicyError):
                log.error("policy cannot be loaded ref=%s: %s", ref, exc)
                text = POLICY_BROKEN
            else:
                log.exception(
                    "action request failed ref=%s action=%s channel=%s", ref, request.action, channel
                )
                text = f"Something went wrong with this request (reference `{ref}`). It is logged."
            self._say(client, channel, text, thread_ts)

    def _decided(self, client: WebClient, view: RequestView, decision: Decision) -> None:
        view = self.shown(view)
        channel, thread_ts = str(view.channel), str(view.thread_ts)
        log.info(
            "action requested request=%s action=%s outcome=%s rule=%s",
            view.request_id,
            view.action,
            decision.outcome,
            decision.rule,
        )
        if decision.outcome == "deny":
            self.poster.say(client, channel, denied_text(view, self._source(view.rule)), thread_ts)
        elif decision.outcome == "allow":
            self.poster.say(client, channel, allowed_text(view, self._source(view.rule)), thread_ts)
            self._run(client, view.request_id, card=None)
        else:
            self.poster.post(client, channel, [approval_card(view, self.facts(view))], thread_ts)

    def _run(self, client: WebClient, request_id: str, card: tuple[str, str] | None) -> None:
        """Run an approved request (exactly once, wherever the click landed) and post its result."""
        result = execute_once(self.service, self.policy(), request_id, self.execute)
        view = self.service.get(request_id)
        if view is None:
            return
        if result is not None and view.channel and view.thread_ts:
            self.poster.post(client, view.channel, [result_message(view, result)], view.thread_ts)
        if card is not None:
            self._update_card(client, card[0], card[1], view)

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
        runbook = self.excerpt(spec) if spec is not None and spec.runbook else None
        return CardFacts(spec.risk if spec else "unknown", self._source(view.rule), runbook)

    def excerpt(self, spec: ActionSpec) -> RunbookExcerpt:
        """The passage of the action's runbook closest to what the action does (BM25 within the document)."""
        path = str(spec.runbook)
        try:
            retriever: Retriever = self._answers().retriever
            document = retriever.document_by_path(path)
            if document is None:
                return RunbookExcerpt(path)
            lexicon = retriever.lexicon()
            rows = lexicon.rows_of_document.get(document.doc_id, [])
            if not rows:
                return RunbookExcerpt(path)
            scores = lexicon.bm25.scores(terms(f"{spec.name.replace('-', ' ')} {spec.description}"))
            best = max(rows, key=lambda row: (float(scores[row]), -row))
        except Exception as exc:  # the card still works without its excerpt
            log.warning("runbook excerpt unavailable path=%s error=%s", path, type(exc).__name__)
            return RunbookExcerpt(path)
        chunk = lexicon.chunks[best]
        return RunbookExcerpt(path, document.title, chunk.section, chunk.text, self._url(document.url, path))

    def _url(self, url: str | None, path: str) -> str | None:
        if url and url.startswith(("http://", "https://")):
            return url
        base = self.settings.docs_base_url
        return base.rstrip("/") + "/" + path.lstrip("/") if base else None

    def _source(self, rule: str | None) -> str | None:
        found = self.policy().policy.rule(rule) if rule else None
        return str(found.source) if found is not None else None

    def _update_card(
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
            result = self.service.approve(click.request_id, click.user)
            self._clicked(client, click, result, always_tell=True)
            if result.ready_to_run:
                self._run(client, click.request_id, card=(click.channel, click.ts))

    def on_reject(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Reject: ask for the reason in a modal (after checking the clicker may reject at all)."""
        click = self._click(body, action, client)
        if click is None:
            return
        with self._reported(client, click):
            view = self.service.get(click.request_id)
            refusal = self._reject_refusal(view, click.user)
            if refusal is not None or view is None:
                self.poster.whisper(client, click.channel, click.user, refusal or "There is no such request.")
                return
            metadata = RejectMetadata(request_id=click.request_id, channel=click.channel, ts=click.ts)
            client.views_open(trigger_id=click.trigger_id, view=reject_modal(metadata, self.shown(view)))

    def _reject_refusal(self, view: RequestView | None, user: str) -> str | None:
        if view is None:
            return "There is no such request."
        if view.status in FINISHED:
            return f"This request is already {view.status}; there is nothing to reject."
        requirement = ApprovalRequirement(count=1, groups=view.required_groups or ("nobody",))
        allowed, why = self.policy().may_approve(user, view.requester, requirement)
        return None if allowed else why.replace("approve", "reject")

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
            result = self.service.reject(metadata.request_id, user, _reason(view))
            self._clicked(client, click, result, decided_by=f"<@{user}>: {escape(_reason(view))}")

    def on_cancel(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Cancel: only the requester, before the action runs."""
        click = self._click(body, action, client)
        if click is not None:
            with self._reported(client, click):
                result = self.service.cancel(click.request_id, click.user)
                self._clicked(client, click, result, decided_by=f"<@{click.user}>")

    def on_revoke(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Revoke my approval: the approval no longer counts."""
        click = self._click(body, action, client)
        if click is not None:
            with self._reported(client, click):
                self._clicked(client, click, self.service.revoke(click.request_id, click.user))

    @contextmanager
    def _reported(self, client: WebClient, click: _Click) -> Iterator[None]:
        """No silent failure: the clicker hears about it, the log gets the ids."""
        try:
            yield
        except Exception as exc:
            reference = uuid.uuid4().hex[:12]
            if isinstance(exc, PolicyError):
                log.error("policy cannot be loaded ref=%s request=%s: %s", reference, click.request_id, exc)
                text = POLICY_BROKEN
            else:
                log.exception(
                    "click failed ref=%s request=%s user=%s", reference, click.request_id, click.user
                )
                text = f"Something went wrong with your click (reference `{reference}`). It is logged."
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
        if not result.changed and view is not None:
            view = self.service.get(view.request_id)  # a refused click may have expired the request
        stale = view is not None and view.status in FINISHED and click.has_buttons  # e.g. expired just now
        if view is not None and click.ts and (result.changed or stale):
            self._update_card(client, click.channel, click.ts, view, decided_by if result.changed else None)

    # -- the "Request an action" shortcut --------------------------------------------------------

    def on_request_shortcut(self, body: dict[str, Any], client: WebClient) -> None:
        """Open the request form; its parameters appear once an action is picked."""
        try:
            form = request_form(self.policy().policy, None)
        except PolicyError as exc:
            log.error("policy cannot be loaded: %s", exc)
            form = {"type": "modal", "title": {"type": "plain_text", "text": "Request an action"}}
            form["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": POLICY_BROKEN}}]
        try:
            client.views_open(trigger_id=str(body["trigger_id"]), view=form)
        except SlackApiError as exc:
            log.warning("request form failed user=%s error=%s", body["user"]["id"], exc.response.get("error"))

    def on_pick_action(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """An action was picked in the form: show the fields of its parameters."""
        view = body.get("view") or {}
        name = str((action.get("selected_option") or {}).get("value") or "")
        try:
            policy = self.policy().policy
            form = request_form(policy, policy.actions.get(name))
            client.views_update(view_id=str(view.get("id")), hash=view.get("hash"), view=form)
        except (PolicyError, SlackApiError) as exc:
            log.warning("request form not updated user=%s error=%s", body["user"]["id"], exc)

    def ack_request_form(self, ack: Ack, view: dict[str, Any]) -> None:
        """Check the form in the acknowledgement (the only place Slack takes field errors).

        The one read here is the policy, which is in memory unless its files changed.
        """
        errors = self._form_errors(view)
        if errors:
            ack(response_action="errors", errors=errors)
        else:
            ack()

    def _form_errors(self, view: dict[str, Any]) -> dict[str, str]:
        action, channel, raw = form_values(view)
        try:
            policy = self.policy().policy
        except PolicyError:
            return {
                BLOCK_PICK_ACTION: "The policy files cannot be loaded; an admin runs `steward policy check`."
            }
        spec = policy.actions.get(action or "")
        if spec is None:
            return {BLOCK_PICK_ACTION: "Pick an action."}
        errors = {} if channel else {BLOCK_CHANNEL: "Pick the channel to post the request in."}
        try:
            parse_params(spec, raw)
        except ParamError as exc:
            for problem in exc.problems:
                name, _, text = problem.partition(": ")
                if name in raw or any(param.name == name for param in spec.params):
                    errors.setdefault(BLOCK_PARAM_PREFIX + name, text)
                else:
                    errors.setdefault(BLOCK_PICK_ACTION, problem)
        return errors

    def on_request_form(self, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        """The checked form: post the request in the chosen channel and let the policy decide."""
        user = str(body["user"]["id"])
        action, channel, raw = form_values(view)
        try:
            policy = self.policy().policy
            request = build_request(policy, str(action), raw)
        except (PolicyError, ParamError) as exc:
            log.warning("request form could not be used user=%s error=%s", user, type(exc).__name__)
            self._say(client, user, f"I could not use the form: {escape(str(exc))}", "")
            return
        line = request_line(request.action, request.params, secret_params(policy.actions[request.action]))
        try:
            root = self.poster.say(client, str(channel), f"<@{user}> requests: {line}")
        except SlackApiError as exc:
            log.info("cannot post in channel=%s error=%s", channel, exc.response.get("error"))
            self._say(
                client, user, f"I cannot post in <#{channel}>, so nothing was requested. Invite me first.", ""
            )
            return
        self.submit(client, request, user, str(channel), root)

    # -- expiry --------------------------------------------------------------------------------

    def sweep(self, client: WebClient) -> list[str]:
        """Expire requests past their deadline and say so in their threads; returns their ids."""
        try:
            expired = self.service.expire_due()
        except Exception:
            log.exception("expiry sweep failed")
            return []
        for request_id in expired:
            log.info("request expired request=%s", request_id)
            try:
                view = self.service.get(request_id)
                if view is not None and view.channel and view.thread_ts:
                    self._say(client, view.channel, expired_text(self.shown(view)), view.thread_ts)
            except Exception:  # the next request's notice still goes out
                log.exception("expiry notice failed request=%s", request_id)
        return expired

    def _say(self, client: WebClient, channel: str, text: str, thread_ts: str) -> None:
        try:
            self.poster.say(client, channel, text, thread_ts=thread_ts or None)
        except SlackApiError as exc:
            log.error("could not post channel=%s error=%s", channel, exc.response.get("error"))


def _reason(view: Mapping[str, Any]) -> str:
    values = (view.get("state") or {}).get("values") or {}
    entered = ((values.get(BLOCK_REJECT_REASON) or {}).get(INPUT_REJECT_REASON) or {}).get("value")
    return " ".join(str(entered or "").split())[:1000]
