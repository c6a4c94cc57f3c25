"""Steward in Slack, end to end over real HTTP: signed requests in, Web API calls to the local fake out."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import pytest

from bot.slack.home import HELP
from bot.slack.payloads import ACTION_HELPFUL
from bot.slack.posting import FAILED, WORKING
from bot.wiring import Services
from tests.slackbot import CHANNEL, SECRET, USER, RunningBot, blocks_text, running_bot
from tests.support.slack import event_body, sign

ROLLBACK = "How do I roll back the fraud-scorer model in production?"


def test_a_mention_is_answered_in_a_thread_under_the_question(bot: RunningBot) -> None:
    """An app_mention gets a cited answer in the question's thread, with feedback buttons."""
    ts = bot.say(ROLLBACK)
    bot.settle()
    posts = bot.bot_posts(CHANNEL, ts)
    assert len(posts) == 1
    text = blocks_text(posts[0])
    assert "Model rollback" in text and "production" in text
    assert ACTION_HELPFUL in text
    assert bot.bot_posts(CHANNEL) == []  # nothing at the channel's top level


def test_the_working_reaction_is_added_then_removed(bot: RunningBot) -> None:
    """The question gets an :eyes: reaction while Steward works, removed when the answer is posted."""
    ts = bot.say(ROLLBACK)
    bot.settle()
    added = bot.slack.calls("reactions.add")
    removed = bot.slack.calls("reactions.remove")
    assert [(c.args["name"], c.args["timestamp"]) for c in added] == [(WORKING, ts)]
    assert [(c.args["name"], c.args["timestamp"]) for c in removed] == [(WORKING, ts)]
    post = bot.slack.calls("chat.postMessage")[0]
    assert added[0].at < post.at < removed[0].at


def test_a_direct_message_is_answered(bot: RunningBot) -> None:
    """A DM needs no mention; the answer goes in the DM, threaded under the question."""
    ts = bot.say(ROLLBACK, channel="DASKER", mention=False)
    bot.settle()
    posts = bot.bot_posts("DASKER", ts)
    assert len(posts) == 1 and "Model rollback" in blocks_text(posts[0])


def test_a_follow_up_in_the_thread_is_answered_with_the_earlier_turn_as_context(
    bot: RunningBot, services: Services
) -> None:
    """ "what about the thresholds?" without a mention is read together with the thread's first question."""
    follow_up = "what about the thresholds?"
    # This test is about the context, not the confidence (tests/test_answers.py): on a five-document
    # knowledge base the fitted threshold may refuse a terse follow-up either way.
    services.answers.abstain_below = 0.0
    alone = services.answers.ask(follow_up)  # alone, it is about drift thresholds
    assert alone.retrieved[0].path.startswith("decisions/")
    ts = bot.say(ROLLBACK)
    bot.settle()
    bot.say(follow_up, thread_ts=ts, mention=False)
    bot.settle()
    posts = bot.bot_posts(CHANNEL, ts)
    assert len(posts) == 2
    assert "shadow error rate doubles" in blocks_text(posts[1])  # the rollback runbook's thresholds


def test_sticky_threads_can_be_turned_off_for_a_channel(bot: RunningBot) -> None:
    """After `/steward sticky off`, follow-ups without a mention are left to the humans."""
    assert bot.command("sticky off").status == 200
    bot.settle()
    ts = bot.say(ROLLBACK)
    bot.settle()
    bot.say("and who approves it?", thread_ts=ts, mention=False)
    bot.settle()
    assert len(bot.bot_posts(CHANNEL, ts)) == 1
    confirmations = [c.args.get("text", "") for c in bot.slack.calls("response_url")]
    assert any("only answer when mentioned" in text for text in confirmations)


def test_human_chatter_outside_steward_threads_is_ignored(bot: RunningBot) -> None:
    """Top-level messages without a mention, and threads Steward never answered, get no reply."""
    root = bot.say("lunch anyone?", mention=False)
    bot.say("how do I roll back a model?", thread_ts=root, mention=False)
    bot.settle()
    assert bot.slack.calls("chat.postMessage") == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"subtype": "message_changed"}, id="edit"),
        pytest.param({"subtype": "message_deleted"}, id="deletion"),
        pytest.param({"subtype": "bot_message", "bot_id": "BOTHER"}, id="bot-message"),
        pytest.param({"bot_id": "BOTHER"}, id="other-bot"),
        pytest.param({"user": "UBOT", "bot_id": "BBOT"}, id="itself"),
    ],
)
def test_steward_does_not_answer_edits_deletions_bots_or_itself(
    bot: RunningBot, change: dict[str, str]
) -> None:
    """Only people (and configured bots) are answered."""
    event = {"type": "message", "channel": "DASKER", "channel_type": "im", "user": USER, "text": ROLLBACK}
    event.update(ts=bot.slack.add_message("DASKER", ROLLBACK, USER), **change)
    bot.event(event)
    bot.settle()
    assert bot.slack.calls("chat.postMessage") == []


def test_a_configured_bot_is_answered(services: Services) -> None:
    """STEWARD_ANSWER_BOTS lets another bot's messages through."""
    with running_bot(services, answer_bots=("BHELPER",)) as bot:
        ts = bot.slack.add_message("DASKER", ROLLBACK, "UHELPER", bot_id="BHELPER")
        event = {"type": "message", "channel": "DASKER", "channel_type": "im", "text": ROLLBACK, "ts": ts}
        bot.event({**event, "bot_id": "BHELPER", "user": "UHELPER"})
        bot.settle()
        assert len(bot.bot_posts("DASKER", ts)) == 1


def test_slack_retries_are_answered_once(bot: RunningBot) -> None:
    """The same event id delivered again (X-Slack-Retry-Num) produces no second answer."""
    ts = bot.slack.add_message(CHANNEL, f"<@UBOT> {ROLLBACK}", USER)
    event = {"type": "app_mention", "channel": CHANNEL, "user": USER, "text": f"<@UBOT> {ROLLBACK}", "ts": ts}
    bot.event(event, event_id="EvRETRY")
    bot.event(
        event, event_id="EvRETRY", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    bot.event(
        event, event_id="EvRETRY", headers={"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
    )
    bot.settle()
    assert len(bot.bot_posts(CHANNEL, ts)) == 1


def test_two_replicas_sharing_a_database_answer_a_duplicate_once(services: Services) -> None:
    """An event delivered to two replicas (one state database) is answered by exactly one."""
    with running_bot(services) as first, running_bot(services) as second:
        ts = first.slack.add_message(CHANNEL, f"<@UBOT> {ROLLBACK}", USER)
        event = {
            "type": "app_mention",
            "channel": CHANNEL,
            "user": USER,
            "text": f"<@UBOT> {ROLLBACK}",
            "ts": ts,
        }
        first.event(event, event_id="EvTWICE")
        second.event(event, event_id="EvTWICE")
        first.settle()
        second.settle()
        answers = len(first.slack.calls("chat.postMessage")) + len(second.slack.calls("chat.postMessage"))
        assert answers == 1


@pytest.mark.parametrize(
    ("secret", "age"),
    [pytest.param("wrong-secret", 0, id="bad-signature"), pytest.param(SECRET, 600, id="stale-timestamp")],
)
def test_unsigned_or_stale_requests_are_rejected(bot: RunningBot, secret: str, age: int) -> None:
    """A wrong signature or a timestamp older than 5 minutes gets 401 and no answer."""
    body = event_body(
        {"type": "app_mention", "channel": CHANNEL, "user": USER, "text": ROLLBACK, "ts": "1.1"}, "EvBAD"
    )
    headers = sign(secret, body, timestamp=int(time.time()) - age)
    reply = bot.send(body, "application/json", headers)
    bot.settle()
    assert reply.status == 401
    assert bot.slack.calls("chat.postMessage") == []


def test_a_rate_limited_post_is_retried_after_retry_after(bot: RunningBot) -> None:
    """Slack answers 429 with Retry-After: Steward waits and posts once it may."""
    bot.slack.fail("chat.postMessage", status=429, times=1, retry_after=1)
    ts = bot.say(ROLLBACK)
    bot.settle()
    attempts = bot.slack.calls("chat.postMessage")
    assert [call.status for call in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 0.9
    assert len(bot.bot_posts(CHANNEL, ts)) == 1


def test_the_acknowledgement_does_not_wait_for_the_answer(bot: RunningBot, services: Services) -> None:
    """Slack gets its 200 while the answer is still being worked on."""
    real_ask = services.answers.ask

    def slow_ask(*args: object, **kwargs: object) -> object:
        time.sleep(1.5)
        return real_ask(*args, **kwargs)  # type: ignore[arg-type]

    services.answers.ask = slow_ask  # type: ignore[method-assign]
    ts = bot.slack.add_message(CHANNEL, f"<@UBOT> {ROLLBACK}", USER)
    event = {"type": "app_mention", "channel": CHANNEL, "user": USER, "text": f"<@UBOT> {ROLLBACK}", "ts": ts}
    reply = bot.send(event_body(event, "EvSLOW"), "application/json")
    assert reply.status == 200
    assert bot.bot_posts(CHANNEL, ts) == []  # acknowledged before any answer exists
    bot.settle()
    assert len(bot.bot_posts(CHANNEL, ts)) == 1


def test_a_failure_ends_in_a_clear_message_and_a_warning_reaction(
    bot: RunningBot, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error is logged and told in the thread; the working reaction becomes a warning."""

    def broken(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("index exploded")

    services.answers.ask = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO):
        ts = bot.say(ROLLBACK)
        bot.settle()
    posts = bot.bot_posts(CHANNEL, ts)
    assert len(posts) == 1 and "Something went wrong" in posts[0]["text"]
    assert [c.args["name"] for c in bot.slack.calls("reactions.add")] == [WORKING, FAILED]
    assert any("answer failed" in record.getMessage() for record in caplog.records)


def test_an_empty_knowledge_base_says_so(make_services: Callable[..., Services]) -> None:
    """Before any ingest, a question gets "my knowledge base is empty", not silence."""
    with running_bot(make_services()) as bot:
        ts = bot.say(ROLLBACK)
        bot.settle()
        posts = bot.bot_posts(CHANNEL, ts)
        assert len(posts) == 1 and "knowledge base is empty" in posts[0]["text"]


def test_logs_carry_ids_and_sizes_but_no_message_text_or_token(
    bot: RunningBot, caplog: pytest.LogCaptureFixture
) -> None:
    """The question's words and the bot token never reach the log at the default level."""
    with caplog.at_level(logging.INFO):
        bot.say(ROLLBACK)
        bot.settle()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "answered" in logged and "question_chars=" in logged
    assert "fraud-scorer" not in logged and "xoxb-" not in logged


def test_slash_help_is_answered_in_the_acknowledgement(bot: RunningBot) -> None:
    """`/steward help` returns the help text with the 200 itself."""
    reply = bot.command("help")
    assert reply.status == 200
    assert reply.body == HELP


def test_slash_ask_posts_the_question_and_answers_in_its_thread(bot: RunningBot) -> None:
    """`/steward ask` posts "X asked: …" in the channel and the answer in that thread."""
    assert bot.command(f"ask {ROLLBACK}").status == 200
    bot.settle()
    roots = bot.bot_posts(CHANNEL)
    assert len(roots) == 1 and roots[0]["text"] == f"<@{USER}> asked: {ROLLBACK}"
    answers = bot.bot_posts(CHANNEL, roots[0]["ts"])
    assert len(answers) == 1 and "Model rollback" in blocks_text(answers[0])


def test_slash_ask_where_steward_cannot_post_answers_privately(bot: RunningBot) -> None:
    """Not a member of the channel: the answer comes back as an ephemeral response instead."""
    bot.slack.fail("chat.postMessage", status=200, times=1, error="not_in_channel")
    bot.command(f"ask {ROLLBACK}")
    bot.settle()
    responses = bot.slack.calls("response_url")
    assert len(responses) == 1
    assert responses[0].args["response_type"] == "ephemeral"
    assert "Model rollback" in json.dumps(responses[0].args["blocks"])


def test_the_app_home_shows_how_to_use_steward_and_the_knowledge_base(bot: RunningBot) -> None:
    """Opening the App Home publishes help, the document count, last ingest and stale documents."""
    bot.event({"type": "app_home_opened", "user": USER, "channel": "DHOME", "tab": "home"})
    bot.settle()
    published = bot.slack.calls("views.publish")
    assert len(published) == 1 and published[0].args["user_id"] == USER
    view = json.dumps(published[0].args["view"])
    assert "/steward ask" in view
    assert "*Documents:* 5" in view
    assert "Draining a GPU node" in view  # review_by 2025-01-15: past due
    assert "Last ingest:* never" not in view
