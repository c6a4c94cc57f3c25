"""Requests an LLM proposed from a mention: shown to the person who asked, requested only if they confirm.

The proposal carries no authority: confirming it submits the same request `/steward run` would, which
the policy then decides (deny, allow, or approval by others). Only the person whose message it was
can confirm it, once, within ten minutes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.models import ActionRequest
from bot.actions.phrases import stated_conflicts
from bot.actions.policy.engine import ParamError, Policy, PolicyError, build_request
from bot.actions.policy.gate import PolicyGate
from bot.actions.proposals import Proposer, param_text
from bot.slack.action_cards import conflict_text, misread_text, request_line, secret_params
from bot.slack.blocks import MAX_BUTTON_VALUE, Block, button
from bot.slack.mrkdwn import escape
from bot.slack.payloads import ACTION_CONFIRM_PROPOSAL, ACTION_DISMISS_PROPOSAL, ProposalValue
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

PROPOSAL_SECONDS = 600.0
Submit = Callable[[WebClient, ActionRequest, str, str, str], None]  # client, request, user, channel, thread
Say = Callable[[WebClient, str, str, str], None]  # client, channel, text, thread


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


@dataclass(frozen=True)
class Mention:
    """A person's mention of Steward that may be an action request: the words and where they were said."""

    text: str
    channel: str
    thread_ts: str
    user: str
    reference: str = ""  # the event id, for the logs
    channel_type: str | None = None  # the event's, when Slack sent one (a mention does not always)


class ProposalFlows:
    """Mentions the parser did not read as requests, offered to the LLM; its proposals, confirmed."""

    def __init__(
        self,
        proposer: Proposer,
        policy: Callable[[], PolicyGate],
        poster: Poster,
        submit: Submit,
        say: Say,
        claim_once: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.proposer = proposer
        self.policy = policy
        self.poster = poster
        self.submit = submit
        self._say = say
        self.claim_once = claim_once
        self.clock = clock

    def take(
        self,
        client: WebClient,
        mention: Mention,
        policy: Policy,
        not_here: Callable[[], str | None] = lambda: None,
    ) -> bool:
        """Ask the LLM whether the mention requests an action; False: it did not (answer the question).

        `not_here` says why no request may be made in this conversation (a group DM), or None.
        """
        text, channel, thread_ts, user = mention.text, mention.channel, mention.thread_ts, mention.user
        proposal = self.proposer.propose(text, policy)
        if proposal is None:
            return False
        refusal = not_here()
        if refusal is not None:
            self._say(client, channel, refusal, thread_ts)
            return True
        log.info("the LLM proposed a request action=%s user=%s", proposal.action, user)
        spec = policy.actions[proposal.action]
        conflicts = stated_conflicts(spec, text)
        if conflicts:  # the person's own words name two values: no proposal picks one for them
            self._say(client, channel, conflict_text(proposal.action, conflicts, spec), thread_ts)
            return True
        try:
            request = build_request(policy, proposal.action, proposal.raw)
        except ParamError as exc:
            self._say(
                client, channel, misread_text(proposal.action, exc.problems, spec, proposal.raw), thread_ts
            )
            return True
        line = request_line(request.action, request.params, secret_params(spec))
        params = {name: param_text(value) for name, value in request.params.items()}
        value = ProposalValue(
            action=request.action, params=params, user=user, thread_ts=thread_ts, at=self.clock()
        ).encode()
        if len(value) > MAX_BUTTON_VALUE:
            too_long = f"I read this as {line}. It is too long to confirm here: use `/steward run`."
            self._say(client, channel, too_long, thread_ts)
            return True
        blocks = [
            _section(
                f"<@{user}>, I read this as a request: {line}\n"
                "_Proposed by the LLM from your words. Nothing is requested until you confirm; "
                "then the policy decides._"
            ),
            {
                "type": "actions",
                "elements": [
                    {**button("Request it", ACTION_CONFIRM_PROPOSAL, value), "style": "primary"},
                    button("Dismiss", ACTION_DISMISS_PROPOSAL, value),
                ],
            },
        ]
        try:
            self.poster.pacer.wait(channel)
            client.chat_postMessage(
                channel=channel, thread_ts=thread_ts, text=f"Confirm the request: {line}", blocks=blocks
            )
        except SlackApiError as exc:
            log.error("could not post the proposal channel=%s error=%s", channel, exc.response.get("error"))
        return True

    def on_confirm(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Request it: the person who asked, once, in time; then the request goes to the policy."""
        found = self._clicked(body, action, client)
        if found is None:
            return
        proposal, channel, ts = found
        if self.clock() - proposal.at > PROPOSAL_SECONDS:
            self._replace(client, channel, ts, "This proposal expired; nothing was requested. Ask again.")
            return
        if not self.claim_once(f"proposal:{channel}:{ts}"):
            return  # a double click or a retry: the first one submitted it
        try:
            request = build_request(self.policy().policy, proposal.action, proposal.params)
        except (ParamError, PolicyError) as exc:  # the policy changed since the proposal
            self._replace(client, channel, ts, f"I cannot request this any more: {escape(str(exc))}")
            return
        self._replace(
            client,
            channel,
            ts,
            f"<@{proposal.user}> requested {request_line(request.action, request.params)}",
        )
        self.submit(client, request, proposal.user, channel, proposal.thread_ts)

    def on_dismiss(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Dismiss: the proposal is withdrawn; nothing was requested."""
        found = self._clicked(body, action, client)
        if found is not None:
            proposal, channel, ts = found
            self._replace(
                client, channel, ts, f"<@{proposal.user}> dismissed the proposal; nothing was requested."
            )

    def _clicked(
        self, body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> tuple[ProposalValue, str, str] | None:
        """The proposal, its channel and message; None (after telling the clicker) when they may not act."""
        user = str(body["user"]["id"])
        container = body.get("container") or {}
        channel, ts = str(container.get("channel_id") or ""), str(container.get("message_ts") or "")
        try:
            proposal = ProposalValue.model_validate_json(str(action.get("value") or ""))
        except ValidationError:
            log.warning("proposal button with an unreadable value dropped user=%s", user)
            return None
        if user != proposal.user:
            self.poster.whisper(
                client, channel, user, f"Only <@{proposal.user}> can confirm or dismiss this."
            )
            return None
        return proposal, channel, ts

    def _replace(self, client: WebClient, channel: str, ts: str, text: str) -> None:
        try:
            client.chat_update(channel=channel, ts=ts, text=text, blocks=[_section(text)])
        except SlackApiError as exc:
            log.warning("proposal not updated channel=%s error=%s", channel, exc.response.get("error"))
