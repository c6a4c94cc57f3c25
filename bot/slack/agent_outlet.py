"""Where an AI agent's request shows up in Slack: its approval card, or the note that it runs now, posted
in the request's channel as a new message whose thread then carries the result (bot/agents/gateway.py
decides; this module only posts, through the same cards and result messages as people's requests)."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.actions.approvals import RequestView
from bot.actions.guarded import RunOutcome, Submission
from bot.errors import Unavailable
from bot.slack.action_cards import allowed_text, approval_card
from bot.slack.action_flows import ActionFlows


class SlackAgentOutlet:
    """`AgentOutlet` over the Slack Web API client and the guarded actions' Slack flows."""

    def __init__(self, flows: ActionFlows, client: WebClient) -> None:
        self.flows = flows
        self.client = client

    def announce(self, submission: Submission) -> tuple[str, str | None] | None:
        """The approval card of a pending request, or the note that an allowed one runs now, as a new
        message in the request's channel: (its ts, its link)."""
        view = self.flows.shown(submission.request)
        channel = view.channel
        if channel is None or submission.decision.outcome == "deny":
            return None
        poster = self.flows.poster
        try:
            if submission.decision.outcome == "allow":
                ts = poster.say(self.client, channel, allowed_text(view, self.flows.source(view.rule)))
            else:
                ts = poster.post(self.client, channel, [approval_card(view, self.flows.facts(view))])[0]
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "refused")
            raise Unavailable(f"Slack answered {error}") from None
        return ts, poster.permalink(self.client, channel, ts)

    def ran(self, run: RunOutcome) -> None:
        """The run's result in the request's thread."""
        self.flows.post_run(self.client, run)

    def withdrawn(self, view: RequestView) -> None:
        """Redraw the card (the request's thread starts with it) of a request its agent cancelled."""
        if view.channel and view.thread_ts and view.required_count > 0:
            self.flows.update_card(self.client, view.channel, view.thread_ts, view)
