"""The "Request an action" shortcut: pick an action, fill in a form generated from its parameters."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from slack_bolt import Ack
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.models import ActionRequest
from bot.actions.policy.engine import ParamError, PolicyError, build_request, parse_params
from bot.actions.policy.gate import PolicyGate
from bot.slack.action_cards import POLICY_BROKEN, form_values, request_form, request_line, secret_params
from bot.slack.mrkdwn import escape
from bot.slack.payloads import BLOCK_CHANNEL, BLOCK_PARAM_PREFIX, BLOCK_PICK_ACTION, DigestActionValue
from bot.slack.posting import Poster

log = logging.getLogger("steward.slack")

Submit = Callable[[WebClient, ActionRequest, str, str, str], None]  # client, request, user, channel, thread
Tell = Callable[[WebClient, str, str, str], None]  # client, channel, text, thread


class RequestForms:
    """The shortcut's modal: its fields follow the action picked; its errors are shown on the fields."""

    def __init__(self, policy: Callable[[], PolicyGate], poster: Poster, submit: Submit, tell: Tell) -> None:
        self.policy = policy
        self.poster = poster
        self.submit = submit
        self.tell = tell

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
            self.tell(client, user, f"I could not use the form: {escape(str(exc))}", "")
            return
        line = request_line(request.action, request.params, secret_params(policy.actions[request.action]))
        try:
            root = self.poster.say(client, str(channel), f"<@{user}> requests: {line}")
        except SlackApiError as exc:
            log.info("cannot post in channel=%s error=%s", channel, exc.response.get("error"))
            self.tell(
                client, user, f"I cannot post in <#{channel}>, so nothing was requested. Invite me first.", ""
            )
            return
        self.submit(client, request, user, str(channel), root)

    def on_digest_request(self, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """A digest's "Retrain…" / "Roll back…": the request form with the model filled in."""
        user = str(body["user"]["id"])
        try:
            value = DigestActionValue.model_validate_json(str(action.get("value") or ""))
            policy = self.policy().policy
        except (ValidationError, PolicyError) as exc:
            log.warning("digest action button not usable user=%s error=%s", user, type(exc).__name__)
            return
        spec = policy.actions.get(value.action)
        try:
            client.views_open(
                trigger_id=str(body["trigger_id"]), view=request_form(policy, spec, value.params)
            )
        except SlackApiError as exc:
            log.warning("request form failed user=%s error=%s", user, exc.response.get("error"))
