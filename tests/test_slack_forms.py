"""Slash commands whose words contain "payload" reach Steward (Bolt read them as empty interactions)."""

from __future__ import annotations

import pytest

from bot.slack.forms import FormRequest
from tests.slackbot import CHANNEL, USER, RunningBot, blocks_text
from tests.support.slack import command_body, form_body

QUESTION = "How do I roll back the fraud-scorer model in production, and is the payload kept?"


def test_a_slash_command_mentioning_payload_is_answered(bot: RunningBot) -> None:
    """`/steward ask … payload …` is posted and answered like any other question (it was dropped)."""
    root, answers = bot.slash_ask(QUESTION)
    assert root["text"] == f"<@{USER}> asked: {QUESTION}"
    assert len(answers) == 1 and "Model rollback" in blocks_text(answers[0])


@pytest.mark.parametrize("channel_name", ["payload-team", "general"])
def test_a_command_body_is_read_as_its_form_wherever_it_says_payload(channel_name: str) -> None:
    """The form's fields, whatever they say, and the same in the copy lazy listeners get."""
    body = command_body(
        text="ask why is the payload too large", user_id=USER, channel_id=CHANNEL, channel_name=channel_name
    ).decode()
    request = FormRequest(body=body, headers={"content-type": "application/x-www-form-urlencoded"})
    for read in (request, request.to_copyable()):
        assert read.body["command"] == "/steward" and read.body["text"] == "ask why is the payload too large"
        assert read.context.user_id == USER and read.context.channel_id == CHANNEL


def test_an_interaction_payload_is_still_read_as_json() -> None:
    """A real `payload=` field is an interaction, as Bolt reads it."""
    request = FormRequest(
        body=form_body({"type": "block_actions", "user": {"id": USER}, "actions": []}).decode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert request.body["type"] == "block_actions" and request.body["user"] == {"id": USER}
