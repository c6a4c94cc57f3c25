"""An AI agent's request in the fake Slack, end to end through `steward serve`'s agent API: the card names
the agent and its owner and shows the agent's hostile reason as text (every payload checked as Slack
would), the owner barred by `owner_may_approve: false` is refused at the click, another approver runs it."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.agents.client import StewardClient
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, running_bot

OWNER, APPROVER = "U0000MLP02", "U0000MLP01"  # both in the starter policies' ml-platform group
RETRAIN = {"model": "fraud-scorer", "env": "prod"}
HOSTILE = "Drift! <@U0000SRE01> <!channel> *bold* <https://evil.example|click here> & ```"
# Before 30-models.yaml: an agent's production retraining needs an ml-platform approver who does not own it.
AGENT_RULE = """
rules:
  - name: agents-retrain-prod
    actions: retrain-model
    when: {params: {env: prod}, requester_in: agents}
    outcome: require_approval
    approval: {count: 1, groups: [ml-platform], owner_may_approve: false}
    reason: An agent's production retraining needs an ml-platform approver who does not own the agent.
"""


@pytest.fixture
def served(
    make_services: Callable[..., Services], tmp_path: Path, receiver: WebhookReceiver
) -> Iterator[RunningBot]:
    """Steward served with the agent API, the starter policies plus the agent rule, cards in CHANNEL."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    (policies / "25-agents.yaml").write_text(AGENT_RULE, encoding="utf-8")
    services = make_services(policies_dir=policies, agent_channel=CHANNEL)
    with running_bot(services, agents=True) as running:
        yield running


def _whispers(bot: RunningBot, user: str) -> list[str]:
    """The ephemeral messages `user` got."""
    return [str(c.args.get("text")) for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == user]


def _card(bot: RunningBot) -> dict[str, Any]:
    """The one approval card Steward posted in CHANNEL."""
    (card,) = [message for message in bot.bot_posts(CHANNEL) if "Approval needed" in blocks_text(message)]
    return card


def test_the_owner_is_refused_in_slack_and_another_approver_runs_the_agents_request(
    served: RunningBot, receiver: WebhookReceiver
) -> None:
    """The card names the agent and owner with the reason as text; the owner's Approve is refused; the
    other approver's runs the action once, and the result in the thread names the agent."""
    token = served.services.agent_registry.add("release-bot", OWNER)[1]
    with StewardClient(served.base, token) as steward:
        info = steward.request("retrain-model", RETRAIN, HOSTILE)
    assert info.status == "pending"
    served.settle()
    card = _card(served)
    text = blocks_text(card)
    assert f"agent `release-bot` (owner <@{OWNER}>)" in text
    assert f"an agent never approves, nor does its owner <@{OWNER}>." in text
    for raw in ("<@U0000SRE01>", "<!channel>", "<https://evil.example|click here>"):
        assert raw not in text
    assert "&lt;@U0000SRE01&gt; &lt;!channel&gt; *bold* &lt;https://evil.example|click here&gt; &amp;" in text

    assert served.click(card, ACTION_APPROVE, user=OWNER).status == 200
    served.settle()
    assert "you own the agent that asked; someone else in ml-platform must approve" in _whispers(
        served, OWNER
    )
    assert receiver.requests == []

    assert served.click(card, ACTION_APPROVE, user=APPROVER).status == 200
    served.settle()
    assert len(receiver.requests) == 1
    results = [
        m for m in served.bot_posts(CHANNEL, card["ts"]) if "retrain-model succeeded" in blocks_text(m)
    ]
    assert len(results) == 1 and f"(requested by agent `release-bot` (owner <@{OWNER}>))" in blocks_text(
        results[0]
    )
