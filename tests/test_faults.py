"""Faults Steward must survive on its own: the Chroma server down during questions, Slack answering 429
and 500. Each time Steward says what is wrong, loses nothing, and recovers without a restart."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.health import Readiness
from bot.wiring import Services
from tests.servers import chroma_server
from tests.slackbot import CHANNEL, running_bot

QUESTION = "how do I roll back the fraud-scorer model in production?"


@pytest.mark.slow
def test_the_chroma_server_down_during_questions(
    make_services: Callable[..., Services], small_kb: Path, tmp_path: Path
) -> None:
    """Up: answered. Down: the asker is told the knowledge base is unreachable, /readyz says so. Up again
    on the same address: answered, with no restart of Steward."""
    with chroma_server(tmp_path / "chroma") as url:
        services = make_services(chroma_url=url)
        services.ingestor.run([small_kb])
    port = urlsplit(url).port
    with running_bot(services) as bot:
        with chroma_server(tmp_path / "chroma", port=port):
            first = bot.say(QUESTION)
            bot.settle()
            assert "Model rollback" in json.dumps(bot.bot_posts(thread_ts=first))
        down = bot.say(QUESTION)  # the server is stopped now
        bot.settle()
        told = json.dumps(bot.bot_posts(thread_ts=down))
        assert "cannot reach my knowledge base" in told and "Traceback" not in told
        ready, checks = Readiness(services).check()
        assert not ready and checks["index"].startswith("failed: ")
        with chroma_server(tmp_path / "chroma", port=port):
            again = bot.say(QUESTION)
            bot.settle()
            assert "Model rollback" in json.dumps(bot.bot_posts(thread_ts=again))
            assert Readiness(services).check()[0]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_slack_refusing_a_post_for_a_while_loses_no_answer(services: Services, status: int) -> None:
    """The answer is posted after Slack's 429 (Retry-After) or 5xx; it is posted once."""
    with running_bot(services) as bot:
        bot.slack.fail("chat.postMessage", status=status, times=2, retry_after=1)
        ts = bot.say(QUESTION)
        bot.settle()
        answers = bot.bot_posts(CHANNEL, thread_ts=ts)
        assert len(answers) == 1 and "Model rollback" in json.dumps(answers)
