"""Faults Steward must survive on its own: the Chroma server down during questions, Slack answering 429
and 500. Each time Steward says what is wrong, loses nothing, and recovers without a restart."""

from __future__ import annotations

import json
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from bot.runtime.health import Readiness
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver
from tests.servers import chroma_server, private_postgres
from tests.slackbot import CHANNEL, running_bot

QUESTION = "how do I roll back the fraud-scorer model in production?"
REQUESTER, APPROVER = "U0000SRE01", "U0000MLP02"


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


@pytest.mark.slow
def test_postgresql_restarted_during_an_approval_storm(
    make_services: Callable[..., Services],
    small_kb: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Approvals clicked before, while and after PostgreSQL is down: a click that fails is told so (no
    traceback), nothing recorded is lost, clicking again works without restarting Steward, and each
    request runs once."""
    with private_postgres() as (url, stop, start), WebhookReceiver() as hook:
        monkeypatch.setenv("RETRAIN_WEBHOOK_URL", hook.url)
        monkeypatch.setenv("ACTIONS_WEBHOOK_SECRET", "fault-hmac-key")
        policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
        services = make_services(database_url=url, policies_dir=policies)
        services.ingestor.run([small_kb])
        with running_bot(services) as bot:
            cards = []
            for number in range(12):
                assert (
                    bot.command(f"run retrain-model model=model-{number} env=prod", user=REQUESTER).status
                    == 200
                )
                bot.settle()
                thread = bot.bot_posts(CHANNEL)[-1]["ts"]
                cards += [m for m in bot.bot_posts(CHANNEL, thread) if "Approval needed" in json.dumps(m)]
            assert len(cards) == 12
            with ThreadPoolExecutor(max_workers=6) as pool:

                def storm(batch: list[dict[str, object]]) -> None:
                    list(pool.map(lambda card: bot.click(card, ACTION_APPROVE, user=APPROVER), batch))

                storm(cards[:4])  # recorded; their runs may still be finishing when PostgreSQL goes down
                bot.settle()
                stop()
                storm(cards[4:8])  # while it is down
                bot.settle()
                starting = threading.Thread(target=start)
                starting.start()
                storm(cards[8:])  # while it comes back
                starting.join()
            bot.settle()
            told = [str(call.args.get("text")) for call in bot.slack.calls("chat.postEphemeral")]
            assert "Traceback" not in " ".join(told)
            failed = [text for text in told if "could not reach the state database" in text]
            approved = [text for text in told if text.startswith("Approved")]
            assert len(approved) + len(failed) == len(told), told  # every failure says what is wrong
            assert len(approved) >= 4 and len(failed) >= 4, told  # the four before; the four while down
            # People click again on what did not go through (a finished request just says so).
            for card in cards:
                bot.click(card, ACTION_APPROVE, user=APPROVER)
            bot.settle()
            executed = Counter(r.headers.get("Idempotency-Key") for r in list(hook.requests))
            with services.records.connect() as connection:
                states = Counter(
                    row[0] for row in connection.execute(sa.text("SELECT status FROM action_requests"))
                )
    print(json.dumps({"requests": 12, "clicks_told_the_database_was_unreachable": len(failed)}))
    assert len(executed) == 12 and set(executed.values()) == {1}
    assert states == Counter({"succeeded": 12})
