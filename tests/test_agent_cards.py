"""An AI agent's request in Slack: the card, the rejection modal, the decision and result texts name the
agent and its owner, and show the agent's reason as untrusted text that Slack takes and cannot act on."""

from __future__ import annotations

import re
from typing import Any

import pytest
from slack_sdk.models.blocks import Block, SectionBlock

from bot.actions.approvals import DENIED, PENDING, RequestView
from bot.actions.executors.dispatch import ExecutionResult
from bot.slack.action_cards import (
    REASON_CHARS,
    CardFacts,
    allowed_text,
    approval_card,
    denied_text,
    reject_modal,
    requester_text,
    result_message,
)
from bot.slack.payloads import RejectMetadata
from tests.request_views import request_view
from tests.slack_payloads import check_message, check_view

OWNER = "U0OWNER01"
HOSTILE = "Drift <@U123> <!channel> *bold* <https://evil.example|click> & `tick` ```fence``` _it_"
FACTS = CardFacts("high", "policies/30-models.yaml:48", None)


def agent_view(**changes: Any) -> RequestView:
    """A pending production retraining asked by the agent `retrain-bot`, owned by OWNER."""
    fields: dict[str, Any] = {
        "requester": "agent:retrain-bot",
        "agent": "retrain-bot",
        "agent_owner": OWNER,
        "justification": "PSI on amount_usd is 0.31 since Monday; retrain on last week's labels.",
    }
    return request_view(**{**fields, **changes})


def reason_block(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The card's section that quotes the agent's reason."""
    return next(block for block in blocks if "The agent's reason" in block.get("text", {}).get("text", ""))


def test_the_card_names_the_agent_and_mentions_its_owner() -> None:
    """Who asked is the agent's name as code and a mention of its owner, never a mention of the agent."""
    card = approval_card(agent_view(), FACTS)
    check_message(card.blocks, card.text)
    requested = card.blocks[1]["fields"][1]["text"]
    assert requested == f"*Requested by*\nagent `retrain-bot` (owner <@{OWNER}>)"
    assert (
        card.text
        == f"Approval needed: retrain-model requested by agent `retrain-bot` (owner <@{OWNER}>) (pending)"
    )
    assert "<@agent:" not in str(card.blocks) + card.text
    assert "an agent never approves" in str(card.blocks)


def test_the_agents_reason_is_a_verbatim_code_block_slack_sdk_parses() -> None:
    """The reason follows who asked, as a verbatim section that slack_sdk's SectionBlock takes unchanged."""
    card = approval_card(agent_view(), FACTS)
    block = reason_block(card.blocks)
    assert card.blocks.index(block) == 2
    parsed = Block.parse(block)
    assert isinstance(parsed, SectionBlock) and parsed.to_dict() == block
    assert block["text"]["verbatim"] is True
    assert block["text"]["text"].endswith(
        "```PSI on amount_usd is 0.31 since Monday; retrain on last week's labels.```"
    )


def test_a_hostile_reason_shows_as_text_never_a_mention_link_or_formatting() -> None:
    """Mentions, broadcasts, links and emphasis in the agent's reason reach Slack escaped, inside a code
    block (where Slack formats nothing), and cannot close that block early."""
    card = approval_card(agent_view(justification=HOSTILE), FACTS)
    check_message(card.blocks, card.text)
    text = reason_block(card.blocks)["text"]["text"]
    body = text.split("\n", 1)[1]
    assert body.startswith("```") and body.endswith("```")
    inner = body[3:-3]
    assert "```" not in inner  # the agent's own fence is broken up
    for raw in ("<@U123>", "<!channel>", "<https://evil.example|click>"):
        assert raw not in str(card.blocks) and raw not in card.text
    assert "&lt;@U123&gt; &lt;!channel&gt; *bold* &lt;https://evil.example|click&gt; &amp;" in inner
    assert HOSTILE not in card.text  # the reason is not in the notification text at all


def test_a_long_reason_is_cut_with_an_ellipsis_and_the_card_fits() -> None:
    """A 10,000-character reason full of characters that escaping lengthens is cut, says so, and fits."""
    card = approval_card(agent_view(justification="<&>" * 3400), FACTS)
    check_message(card.blocks, card.text)
    text = reason_block(card.blocks)["text"]["text"]
    assert text.endswith("…```") and len(text) <= 3000
    assert text.count("&lt;") + text.count("&amp;") + text.count("&gt;") == REASON_CHARS - 1


@pytest.mark.parametrize("justification", [None, "", "   "])
def test_an_agent_that_gave_no_reason_is_said_to_have_given_none(justification: str | None) -> None:
    """No reason is a line of its own, not an empty code block."""
    card = approval_card(agent_view(justification=justification), FACTS)
    check_message(card.blocks, card.text)
    assert "The agent gave no reason." in str(card.blocks)
    assert "The agent's reason" not in str(card.blocks)


def test_the_card_says_when_the_owner_cannot_approve() -> None:
    """When the rule bars the owner, the waiting card says so, naming them; otherwise it does not."""
    barred = approval_card(agent_view(), CardFacts("high", None, None, owner_barred=True))
    check_message(barred.blocks, barred.text)
    assert f"an agent never approves, nor does its owner <@{OWNER}>." in str(barred.blocks)
    assert "nor does its owner" not in str(approval_card(agent_view(), FACTS).blocks)


def test_a_persons_card_is_unchanged() -> None:
    """A person's request still shows a mention of the requester, and no agent section."""
    card = approval_card(request_view(), FACTS)
    assert card.blocks[1]["fields"][1]["text"] == "*Requested by*\n<@UASKER>"
    assert "agent" not in str(card.blocks).lower()
    assert "the requester cannot approve" in str(card.blocks)


def test_an_owner_that_is_not_a_slack_user_id_is_text() -> None:
    """Only a Slack user id becomes a mention; anything else in the owner column is escaped text."""
    assert requester_text(agent_view(agent_owner="<!here>")) == "agent `retrain-bot` (owner &lt;!here&gt;)"
    assert requester_text(agent_view(agent_owner=None)) == "agent `retrain-bot`"


def test_the_rejection_modal_names_the_agent_and_owner() -> None:
    """The modal asks whether to reject the agent's request, naming the agent and its owner."""
    modal = reject_modal(RejectMetadata(request_id="r1", channel="CGENERAL", ts="1.0"), agent_view())
    check_view(modal)
    assert f"requested by agent `retrain-bot` (owner <@{OWNER}>)?" in modal["blocks"][0]["text"]["text"]


def test_denied_allowed_and_result_texts_name_the_agent_and_owner() -> None:
    """The thread's denied, allowed and result messages say which agent asked and who owns it."""
    named = f"agent `retrain-bot` (owner <@{OWNER}>)"
    denied = denied_text(agent_view(status=DENIED, reason="Agents do not retrain in production."), None)
    assert f", requested by {named}, is *denied*: Agents do not retrain in production." in denied
    assert re.search(
        rf"running `retrain-model [^`]*`, requested by {re.escape(named)}…$", allowed_text(agent_view(), None)
    )
    result = result_message(agent_view(status="succeeded"), ExecutionResult(True, "done <@U9>", "", 0.2, 1))
    check_message(result.blocks, result.text)
    head = result.blocks[0]["text"]["text"]
    assert head.startswith(f":white_check_mark: *retrain-model succeeded* (requested by {named}) in 200 ms")
    assert "<@U9>" not in head and "&lt;@U9&gt;" in head


def test_a_persons_decision_texts_are_unchanged() -> None:
    """For a person's request the texts read as before: no requester phrase."""
    view = request_view(status=PENDING)
    assert "requested by" not in denied_text(view, None) + allowed_text(view, None)
