"""Feedback, "Ask an expert" and "Save as guidance": the knowledge base grows from real questions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.slack.payloads import (
    ACTION_ASK_EXPERT,
    ACTION_HELPFUL,
    ACTION_NOT_HELPFUL,
    ACTION_SAVE_GUIDANCE,
    BLOCK_REASON,
    INPUT_REASON,
    SHORTCUT_SAVE_GUIDANCE,
    VIEW_FEEDBACK_REASON,
)
from bot.store.conversations import GAP_CLOSED, GAP_DRAFTED, GAP_OPEN, GAP_ROUTED
from bot.wiring import Services
from tests.slackbot import CHANNEL, EXPERT, USER, RunningBot, blocks_text, running_bot

ROLLBACK = "How do I roll back the fraud-scorer model in production?"
UNKNOWN = "How often do we rotate the feature store encryption key?"
EXPERT_REPLY = (
    "We rotate the *feature store encryption key* every 90 days with "
    "`vault write -f transit/keys/feature-store/rotate`; the security on-call approves the rotation."
)
EXPERTS = "CEXPERTS"


@pytest.fixture
def kb(small_kb: Path) -> Path:
    """The small knowledge base, as a folder the guidance inbox lives in."""
    return small_kb


@pytest.fixture
def services(make_services: Callable[..., Services], kb: Path) -> Services:
    """Services over the small knowledge base with an inbox inside it."""
    built = make_services(guidance_inbox=kb / "inbox", experts_channel=EXPERTS)
    built.ingestor.run([kb])
    return built


def _answer(bot: RunningBot, question: str) -> tuple[str, dict[str, Any]]:
    ts = bot.say(question)
    bot.settle()
    posts = bot.bot_posts(CHANNEL, ts)
    assert posts, "no answer posted"
    return ts, posts[-1]


def _ask_an_expert(bot: RunningBot) -> str:
    """Ask UNKNOWN (Steward abstains) and click its Ask-an-expert button; the thread's ts."""
    ts, answer = _answer(bot, UNKNOWN)
    assert ACTION_ASK_EXPERT in blocks_text(answer)
    bot.click(answer, ACTION_ASK_EXPERT)
    bot.settle()
    return ts


def _submit_reason(bot: RunningBot, view: dict[str, Any], reason: str) -> None:
    payload = {
        "type": "view_submission",
        "user": {"id": USER},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "view": {
            **view,
            "id": "V1",
            "state": {
                "values": {BLOCK_REASON: {INPUT_REASON: {"type": "plain_text_input", "value": reason}}}
            },
        },
    }
    assert bot.interact(payload).status == 200
    bot.settle()


def test_helpful_feedback_is_stored_with_question_documents_and_channel(
    bot: RunningBot, services: Services
) -> None:
    """A click on Helpful stores one vote with what was asked, what was cited and where."""
    _ts, answer = _answer(bot, ROLLBACK)
    bot.click(answer, ACTION_HELPFUL)
    bot.click(answer, ACTION_HELPFUL)  # a double click is still one vote
    bot.settle()
    rows = services.conversations.feedback_rows()
    assert len(rows) == 1
    assert rows[0]["helpful"] is True and rows[0]["question"] == ROLLBACK and rows[0]["channel"] == CHANNEL
    assert "runbooks/model-rollback.md" in rows[0]["cited"]
    assert any("recorded as helpful" in c.args["text"] for c in bot.slack.calls("chat.postEphemeral"))


def test_not_helpful_asks_for_an_optional_reason(bot: RunningBot, services: Services) -> None:
    """Not helpful opens a modal; the reason given there is stored with the vote."""
    _ts, answer = _answer(bot, ROLLBACK)
    bot.click(answer, ACTION_NOT_HELPFUL)
    bot.settle()
    opened = bot.slack.calls("views.open")
    assert len(opened) == 1 and opened[0].args["view"]["callback_id"] == VIEW_FEEDBACK_REASON
    _submit_reason(bot, opened[0].args["view"], "It missed the staging procedure")
    [row] = services.conversations.feedback_rows()
    assert row["helpful"] is False and row["reason"] == "It missed the staging procedure"


def test_an_abstention_says_so_names_owners_offers_an_expert_and_records_a_gap(
    bot: RunningBot, services: Services
) -> None:
    """ "I don't know" is plain, names who might, has the Ask-an-expert button and no feedback buttons."""
    _ts, answer = _answer(bot, UNKNOWN)
    text = blocks_text(answer)
    assert ACTION_ASK_EXPERT in text and ACTION_HELPFUL not in text
    assert "@" in text  # the owners of the nearest documents
    [gap] = services.conversations.gaps()
    assert gap.question == UNKNOWN and gap.status == GAP_OPEN and gap.asker == USER


def test_ask_an_expert_posts_the_question_with_a_link_once(bot: RunningBot, services: Services) -> None:
    """The experts channel gets the question and a link to the thread; a second click changes nothing."""
    ts, answer = _answer(bot, UNKNOWN)
    bot.click(answer, ACTION_ASK_EXPERT)
    bot.click(answer, ACTION_ASK_EXPERT, user="USOMEONE")
    bot.settle()
    expert_posts = bot.bot_posts(EXPERTS)
    assert len(expert_posts) == 1
    assert (
        UNKNOWN in expert_posts[0]["text"]
        and f"archives/{CHANNEL}/p{ts.replace('.', '')}" in expert_posts[0]["text"]
    )
    thread = [p["text"] for p in bot.bot_posts(CHANNEL, ts)]
    assert any(f"<#{EXPERTS}>" in text for text in thread)
    [gap] = services.conversations.gaps()
    assert gap.status == GAP_ROUTED and gap.expert_channel == EXPERTS
    updated = bot.slack.calls("chat.update")
    assert len(updated) == 1 and ACTION_ASK_EXPERT not in json.dumps(updated[0].args["blocks"])
    assert any("already been asked" in c.args["text"] for c in bot.slack.calls("chat.postEphemeral"))


@pytest.fixture
def no_experts_channel(make_services: Callable[..., Services], kb: Path) -> Services:
    """Services without STEWARD_EXPERTS_CHANNEL: the owners are asked directly."""
    services = make_services(guidance_inbox=kb / "inbox")
    services.ingestor.run([kb])
    return services


def test_without_an_experts_channel_the_owners_get_a_direct_message(no_experts_channel: Services) -> None:
    """Owners named by handle are found in the workspace directory and messaged directly."""
    services = no_experts_channel
    with running_bot(services) as bot:
        for user_id, name in (("UDANA", "dana"), ("USAM", "sam"), ("ULEE", "lee")):
            bot.slack.add_user(user_id, name)
        _ts, answer = _answer(bot, UNKNOWN)
        [gap] = services.conversations.gaps()
        bot.click(answer, ACTION_ASK_EXPERT)
        bot.settle()
        direct = {
            c.args["channel"]
            for c in bot.slack.calls("chat.postMessage")
            if c.args["channel"].startswith("U")
        }
        owners = {f"U{owner.lstrip('@').upper()}" for owner in gap.owners}
        assert direct == owners and direct


def test_with_nobody_to_ask_the_thread_is_told_and_the_gap_stays_open(no_experts_channel: Services) -> None:
    """No experts channel and no owner in Slack: a clear message, and the button can be tried again later."""
    services = no_experts_channel
    with running_bot(services) as bot:
        ts = _ask_an_expert(bot)
        assert any("STEWARD_EXPERTS_CHANNEL" in p["text"] for p in bot.bot_posts(CHANNEL, ts))
        assert services.conversations.gaps()[0].status == GAP_OPEN


def _offer(bot: RunningBot, thread_ts: str, channel: str = CHANNEL) -> dict[str, Any]:
    """The expert replies in the thread; Steward offers them (only) the Save-as-guidance button."""
    reply_ts = bot.say(EXPERT_REPLY, user=EXPERT, channel=channel, thread_ts=thread_ts, mention=False)
    bot.settle()
    offers = [c for c in bot.slack.calls("chat.postEphemeral") if ACTION_SAVE_GUIDANCE in json.dumps(c.args)]
    assert offers and offers[-1].args["user"] == EXPERT
    return {"channel": channel, "ts": reply_ts, "blocks": offers[-1].args["blocks"]}


def test_an_expert_reply_can_be_saved_as_a_draft_guidance_document(
    bot: RunningBot, services: Services, kb: Path
) -> None:
    """Save as guidance writes Markdown with draft status, the expert as owner, question, answer and link."""
    ts = _ask_an_expert(bot)
    offer = _offer(bot, ts)
    assert bot.bot_posts(CHANNEL, ts)[-1]["text"].startswith("I asked")  # the reply was not "answered"
    bot.click(offer, ACTION_SAVE_GUIDANCE, user=EXPERT)
    bot.click(offer, ACTION_SAVE_GUIDANCE, user=EXPERT)  # double click: one draft
    bot.settle()
    [draft] = list((kb / "inbox").glob("*.md"))
    front = yaml.safe_load(draft.read_text(encoding="utf-8").split("---")[1])
    [gap] = services.conversations.gaps()
    assert front["status"] == "draft" and front["owner"] == f"<@{EXPERT}>" and front["gap"] == gap.gap_id
    assert front["question"] == UNKNOWN and front["thread"].startswith("https://fake.slack.com/archives/")
    assert "**feature store encryption key**" in draft.read_text(encoding="utf-8")
    assert gap.status == GAP_DRAFTED
    assert any("saved as draft guidance" in p["text"] for p in bot.bot_posts(CHANNEL, ts))
    assert any("already saved" in c.args["text"] for c in bot.slack.calls("chat.postEphemeral"))


def test_a_reply_in_the_experts_channel_thread_can_be_saved_with_the_message_shortcut(
    bot: RunningBot, services: Services, kb: Path
) -> None:
    """The message shortcut on an expert's reply under the experts-channel post saves it too."""
    _ask_an_expert(bot)
    [expert_post] = bot.bot_posts(EXPERTS)
    offer = _offer(bot, expert_post["ts"], channel=EXPERTS)
    payload = {
        "type": "message_action",
        "callback_id": SHORTCUT_SAVE_GUIDANCE,
        "trigger_id": "t",
        "user": {"id": EXPERT},
        "team": {"id": "T0FAKE"},
        "channel": {"id": EXPERTS},
        "message": {
            "type": "message",
            "user": EXPERT,
            "text": EXPERT_REPLY,
            "ts": offer["ts"],
            "thread_ts": expert_post["ts"],
        },
        "response_url": bot.slack.response_url("shortcut"),
    }
    assert bot.interact(payload).status == 200
    bot.settle()
    assert len(list((kb / "inbox").glob("*.md"))) == 1
    assert services.conversations.gaps()[0].status == GAP_DRAFTED


def test_the_loop_a_question_that_abstained_is_answered_after_guidance_is_accepted(
    bot: RunningBot, services: Services, kb: Path
) -> None:
    """Abstain, ask an expert, reply, save (draft not searchable), accept, ingest: answered, gap closed."""
    ts = _ask_an_expert(bot)
    bot.click(_offer(bot, ts), ACTION_SAVE_GUIDANCE, user=EXPERT)
    bot.settle()
    [draft] = list((kb / "inbox").glob("*.md"))

    report = services.ingestor.run([kb])
    assert any(skipped.path.endswith(draft.name) and "draft" in skipped.reason for skipped in report.skipped)
    assert services.answers.ask(UNKNOWN).abstained  # a draft is not searchable

    draft.write_text(
        draft.read_text(encoding="utf-8").replace("status: draft", "status: accepted"), encoding="utf-8"
    )
    report = services.ingestor.run([kb])
    [gap] = services.conversations.gaps()
    assert report.closed_gaps == [gap.gap_id] and gap.status == GAP_CLOSED

    _ts, again = _answer(bot, UNKNOWN)
    text = blocks_text(again)
    assert ACTION_ASK_EXPERT not in text and "90 days" in text and UNKNOWN.rstrip("?") in text
