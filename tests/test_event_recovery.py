"""A question a replica acknowledged and then died on is answered by a live replica, once; a slow replica
that is still alive keeps its questions."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from slack_sdk import WebClient

from bot.runtime.housekeeping import start_housekeeping
from bot.store.conversations import EventWork
from bot.store.events import EventLedger
from tests.slackbot import CHANNEL, RunningBot

DEAD = "dead-host:4242:0badc0de"


def _orphan(bot: RunningBot, event_id: str, owner: str, thread_ts: str | None = None) -> str:
    """A mention as a replica named `owner` claimed it just before it died (nothing was posted)."""
    text = f"<@{bot.slack.bot_user_id}> how do I roll back the fraud-scorer model in production?"
    ts = bot.slack.add_message(CHANNEL, text, "UASKER", thread_ts=thread_ts)
    work = EventWork(owner, CHANNEL, ts, thread_ts)
    assert bot.services.conversations.claim_event(event_id, 600, work)
    return ts


def _client(bot: RunningBot) -> WebClient:
    return bot.app.bolt.client


def test_a_dead_replicas_question_is_answered_once(bot: RunningBot) -> None:
    recovery = bot.app.recovery
    assert recovery is not None
    ts = _orphan(bot, "EvOrphan1", DEAD)
    assert recovery.recover(_client(bot), dead_after=0.0) == 1
    bot.settle()
    answers = bot.bot_posts(thread_ts=ts)
    assert len(answers) == 1 and "Model rollback" in str(answers[0].get("blocks"))
    assert recovery.recover(_client(bot), dead_after=0.0) == 0  # done: never answered twice
    assert len(bot.bot_posts(thread_ts=ts)) == 1


def test_a_question_the_dead_replica_answered_before_it_died_is_not_answered_again(bot: RunningBot) -> None:
    """The replica posted its answer and died before it finished the event: the take-over sees Steward's
    reply right after the question in its thread and drops the event instead of answering twice."""
    recovery = bot.app.recovery
    assert recovery is not None
    ts = _orphan(bot, "EvAnsweredThenDied", DEAD)
    bot.slack.add_message(CHANNEL, "Model rollback: …", bot.slack.bot_user_id, thread_ts=ts)
    assert recovery.recover(_client(bot), dead_after=0.0) == 1
    bot.settle()
    assert len(bot.bot_posts(thread_ts=ts)) == 1  # only the dead replica's answer
    assert recovery.recover(_client(bot), dead_after=0.0) == 0  # and the event is done


def test_a_later_question_in_an_answered_thread_is_still_answered(bot: RunningBot) -> None:
    """Steward's earlier reply in the thread is to an earlier question: the orphan after it is answered."""
    root = bot.slack.add_message(CHANNEL, "the fraud-scorer alerts again", "UASKER")
    bot.slack.add_message(CHANNEL, "An earlier answer", bot.slack.bot_user_id, thread_ts=root)
    ts = _orphan(bot, "EvLater", DEAD, thread_ts=root)
    assert bot.app.recovery is not None and bot.app.recovery.recover(_client(bot), dead_after=0.0) == 1
    bot.settle()
    replies = [m for m in bot.slack.messages(CHANNEL, root) if float(m["ts"]) > float(ts)]
    assert len(replies) == 1 and replies[0].get("user") == bot.slack.bot_user_id


def test_a_question_in_a_thread_is_answered_in_that_thread(bot: RunningBot) -> None:
    root = bot.slack.add_message(CHANNEL, "the fraud-scorer alerts again", "UASKER")
    ts = _orphan(bot, "EvOrphan2", DEAD, thread_ts=root)
    assert bot.app.recovery is not None and bot.app.recovery.recover(_client(bot), dead_after=0.0) == 1
    assert len(bot.bot_posts(thread_ts=root)) == 1
    assert ts in {m["ts"] for m in bot.slack.messages(CHANNEL, root)}


def test_a_slow_replica_that_is_alive_keeps_its_question(bot: RunningBot) -> None:
    alive = EventLedger(bot.services.records, "slow-host:7:feedface")
    alive.heartbeat()
    ts = _orphan(bot, "EvSlow", alive.name)
    assert bot.app.recovery is not None and bot.app.recovery.recover(_client(bot), dead_after=60.0) == 0
    assert bot.bot_posts(thread_ts=ts) == []


def test_two_live_replicas_take_over_an_orphan_once(bot: RunningBot) -> None:
    _orphan(bot, "EvRace", DEAD)
    first = EventLedger(bot.services.records, "live-a:1:aaaa")
    second = EventLedger(bot.services.records, "live-b:2:bbbb")
    (orphan,) = [o for o in first.orphans(dead_after=0.0, younger_than=600) if o.event_id == "EvRace"]
    assert [first.take_over(orphan), second.take_over(orphan)] == [True, False]


def test_an_answered_question_is_not_an_orphan(bot: RunningBot) -> None:
    """The normal path finishes its events: a live replica's answered mention is never taken over."""
    ts = bot.say("how do I roll back the fraud-scorer model in production?")
    bot.settle()
    assert len(bot.bot_posts(thread_ts=ts)) == 1
    assert bot.app.recovery is not None and bot.app.recovery.recover(_client(bot), dead_after=0.0) == 0
    assert len(bot.bot_posts(thread_ts=ts)) == 1


def test_housekeeping_expires_requests_even_when_taking_over_questions_fails() -> None:
    """The parts of a housekeeping round are independent: Slack failing during a take-over must not keep
    overdue requests from expiring (they fail closed)."""
    swept = threading.Event()

    def recover(client: object, dead_after: float) -> int:
        raise ConnectionError("Slack is unreachable")

    recovery = SimpleNamespace(heartbeat=lambda: None, recover=recover)
    actions = SimpleNamespace(
        sweep=lambda client: swept.set(),
        recover=lambda client, older: [],
        run_stranded=lambda client, older: [],
    )
    slack = SimpleNamespace(recovery=recovery, actions=actions, bolt=SimpleNamespace(client=None))
    settings = SimpleNamespace(housekeeping_seconds=0.05)
    services = SimpleNamespace(settings=settings, approvals=SimpleNamespace(note_policy=lambda: None))
    start_housekeeping(slack, services)  # type: ignore[arg-type]
    try:
        assert swept.wait(5), "requests were not swept after the question take-over failed"
    finally:
        slack.recovery = slack.actions = None  # the daemon thread idles from here on
