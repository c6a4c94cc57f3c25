"""AI agents' requests end to end: a token, the HTTP API of a served Steward, the approval card in the
fake Slack, reviewers' clicks, the run, the long-poll, the callback and the audit log."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from bot.actions.approvals import ApprovalService
from bot.agents.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from bot.agents.models import Agent
from bot.slack.payloads import ACTION_APPROVE, ACTION_REJECT, BLOCK_REJECT_REASON, INPUT_REJECT_REASON
from bot.store.action_requests import ActionRequestStore, audit_log
from bot.store.audit_verify import verify_log
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, running_bot
from tests.support.clock import SettableClock

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()  # no freeze
MLP1, MLP2 = "U0000MLP01", "U0000MLP02"
OWNER = "U0000OWNER"
PROD_RETRAIN = {"action": "retrain-model", "parameters": {"model": "fraud-scorer", "env": "prod"}}


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(TUESDAY)


@pytest.fixture
def services(make_services: Callable[..., Services], tmp_path: Path, clock: SettableClock) -> Services:
    """Services over a copy of the starter policies, with agents' cards going to CHANNEL."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    built = make_services(policies_dir=policies, agent_channel=CHANNEL, agent_callback_hosts="127.0.0.1")
    built.override(
        "approvals", ApprovalService(ActionRequestStore(built.records), lambda: built.policy(), clock=clock)
    )
    return built


@pytest.fixture
def bot(services: Services, receiver: WebhookReceiver) -> Iterator[RunningBot]:
    with running_bot(services, agents=True) as running:
        yield running


def _agent(services: Services, name: str = "release-bot", **options: Any) -> tuple[Agent, str]:
    return services.agent_registry.add(name, OWNER, **options)


def _api(bot: RunningBot, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=bot.base + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def _card(bot: RunningBot) -> dict[str, Any]:
    cards = [m for m in bot.bot_posts(CHANNEL) if "Approval needed" in blocks_text(m)]
    assert len(cards) == 1, [blocks_text(m) for m in bot.bot_posts(CHANNEL)]
    return cards[0]


def _request(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = api.post("/requests", json={**PROD_RETRAIN, "reason": "drift on fraud-scorer", **extra})
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_agent_request_waits_for_approval_in_slack_then_runs_once(
    bot: RunningBot, services: Services, receiver: WebhookReceiver
) -> None:
    """The card names the agent, its owner and its reason; the approval runs the action once; the
    agent's long-poll returns the result; the audit names the agent and its token id."""
    agent, token = _agent(services)
    with _api(bot, token) as api:
        created = _request(api)
        assert created["status"] == "pending" and created["agent"] == "release-bot", created["decision"]
        assert created["decision"]["outcome"] == "require_approval"
        assert created["approvals"]["required"] == 1
        card = _card(bot)
        text = blocks_text(card)
        assert "release-bot" in text and OWNER in text and "drift on fraud-scorer" in text
        assert created["card_url"], "the card's link is returned"

        waiting: dict[str, Any] = {}

        def long_poll() -> None:
            waiting.update(api.get(f"/requests/{created['id']}", params={"wait": 20}).json())

        poller = threading.Thread(target=long_poll)
        poller.start()
        assert bot.click(card, ACTION_APPROVE, user=MLP1).status == 200
        bot.settle()
        poller.join(timeout=30)
    assert waiting["status"] == "succeeded" and waiting["final"] is True
    assert waiting["result"]["ok"] is True
    assert len(receiver.requests) == 1
    with services.records.connect() as connection:
        entries = connection.execute(
            sa.select(audit_log.c.kind, audit_log.c.actor, audit_log.c.data).where(
                audit_log.c.request_id == created["id"]
            )
        ).all()
    kinds = {kind: (actor, json.loads(data)) for kind, actor, data in entries}
    assert kinds["requested"][0] == "agent:release-bot"
    assert kinds["requested"][1]["token_id"] == agent.token_id
    assert kinds["requested"][1]["owner"] == OWNER
    assert kinds["decided"][1]["agent"] == "release-bot"
    assert kinds["execution_finished"][1]["token_id"] == agent.token_id


def test_a_rejection_reaches_the_agent_with_the_reviewers_reason(bot: RunningBot, services: Services) -> None:
    _, token = _agent(services)
    with _api(bot, token) as api:
        created = _request(api)
        card = _card(bot)
        bot.click(card, ACTION_REJECT, user=MLP1)
        bot.settle()
        view = bot.slack.calls("views.open")[-1].args["view"]
        values = {
            BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": "not now"}}
        }
        assert bot.submit_view(view, values, user=MLP1).status == 200
        bot.settle()
        final = api.get(f"/requests/{created['id']}", params={"wait": 5}).json()
    assert final["status"] == "rejected" and final["rejection_reason"] == "not now"


def test_the_same_idempotency_key_is_the_same_request(bot: RunningBot, services: Services) -> None:
    """A retried create returns the first request (one card); the key on another request is a conflict."""
    _, token = _agent(services)
    with _api(bot, token) as api:
        first = api.post("/requests", json={**PROD_RETRAIN, "reason": "drift", "idempotency_key": "k-1"})
        again = api.post("/requests", json={**PROD_RETRAIN, "reason": "drift", "idempotency_key": "k-1"})
        other = api.post("/requests", json={**PROD_RETRAIN, "reason": "other", "idempotency_key": "k-1"})
        staging = {"action": "retrain-model", "parameters": {"model": "fraud-scorer", "env": "staging"}}
        changed = api.post("/requests", json={**staging, "reason": "drift", "idempotency_key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["replayed"] is True
    assert other.status_code == 409 and other.json()["error"]["field"] == "idempotency_key"
    assert changed.status_code == 409
    _card(bot)  # exactly one card


def test_limits_answer_429_with_retry_after(bot: RunningBot, services: Services) -> None:
    _, token = _agent(services, per_minute=2)
    with _api(bot, token) as api:
        _request(api)
        _request(api)
        third = api.post("/requests", json={**PROD_RETRAIN, "reason": "again"})
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1
    assert third.json()["error"]["code"] == "rate_limited"

    _, token = _agent(services, "busy-bot", max_pending=1)
    with _api(bot, token) as api:
        _request(api)
        refused = api.post("/requests", json={**PROD_RETRAIN, "reason": "again"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_pending"


def test_tokens_scopes_and_ownership_are_enforced(bot: RunningBot, services: Services) -> None:
    """Wrong and revoked tokens are 401; a missing scope or action 403; another agent's request 404."""
    _, token = _agent(services)
    _, other_token = _agent(services, "other-bot")
    _, asker_token = _agent(services, "asker-bot", scopes=["ask"])
    _, narrow_token = _agent(services, "narrow-bot", actions=["rollback-model"])
    with _api(bot, token) as api:
        created = _request(api)
    with _api(bot, other_token) as other:
        assert other.get(f"/requests/{created['id']}").status_code == 404
        assert other.post(f"/requests/{created['id']}/cancel").status_code == 404
    with _api(bot, asker_token) as asker:
        refused = asker.post("/requests", json={**PROD_RETRAIN, "reason": "x"})
        assert refused.status_code == 403
    with _api(bot, narrow_token) as narrow:
        refused = narrow.post("/requests", json={**PROD_RETRAIN, "reason": "x"})
        assert refused.status_code == 403 and refused.json()["error"]["field"] == "action"
        assert [a["name"] for a in narrow.get("/actions").json()["actions"]] == ["rollback-model"]
    with _api(bot, token[:-2] + "xx") as wrong:
        assert wrong.get("/actions").status_code == 401
    services.agent_registry.revoke("release-bot")
    with _api(bot, token) as api:
        revoked = api.get(f"/requests/{created['id']}")
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "revoked"


def test_bad_parameters_name_the_field(bot: RunningBot, services: Services) -> None:
    _, token = _agent(services)
    with _api(bot, token) as api:
        response = api.post(
            "/requests",
            json={
                "action": "retrain-model",
                "parameters": {"model": "fraud-scorer", "env": "moon"},
                "reason": "x",
            },
        )
        unknown = api.post("/requests", json={"action": "rollback-modle", "parameters": {}, "reason": "x"})
    assert response.status_code == 422 and response.json()["error"]["field"] == "parameters.env"
    assert "staging, prod" in response.json()["error"]["message"]
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_action"
    assert bot.bot_posts(CHANNEL) == []


def test_an_agent_cancels_its_pending_request(bot: RunningBot, services: Services) -> None:
    _, token = _agent(services)
    with _api(bot, token) as api:
        created = _request(api)
        cancelled = api.post(f"/requests/{created['id']}/cancel")
        again = api.post(f"/requests/{created['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert again.status_code == 409
    assert "cancelled" in blocks_text(bot.message(CHANNEL, _card_ts(bot))).lower()


def _card_ts(bot: RunningBot) -> str:
    (root,) = bot.bot_posts(CHANNEL)
    return str(root["ts"])


def test_an_allowed_request_runs_at_once_and_says_so_in_the_channel(
    bot: RunningBot, services: Services, receiver: WebhookReceiver
) -> None:
    _, token = _agent(services)
    with _api(bot, token) as api:
        response = api.post(
            "/requests",
            json={
                "action": "retrain-model",
                "parameters": {"model": "fraud-scorer", "env": "staging"},
                "reason": "x",
            },
        )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    assert len(receiver.requests) == 1
    (note,) = bot.bot_posts(CHANNEL)
    assert "Allowed by rule" in note["text"]
    thread = bot.bot_posts(CHANNEL, note["ts"])
    assert any("succeeded" in blocks_text(message) for message in thread)


def test_a_callback_is_signed_and_sent_once_when_the_request_is_final(
    bot: RunningBot, services: Services
) -> None:
    _, token = _agent(services)
    with WebhookReceiver() as hook, _api(bot, token) as api:
        created = _request(api, callback_url=hook.url)
        services.callbacks()
        assert hook.requests == []  # not final yet
        bot.click(_card(bot), ACTION_APPROVE, user=MLP1)
        bot.settle()
        deadline = time.monotonic() + 10
        while not hook.requests and time.monotonic() < deadline:
            services.callbacks()
            time.sleep(0.05)
        services.callbacks()
    (sent,) = hook.requests
    body = json.loads(sent.body)
    assert body["id"] == created["id"] and body["final"] is True
    stamp, signed = sent.headers[TIMESTAMP_HEADER.title()], sent.headers[SIGNATURE_HEADER.title()]
    now = services.clock()
    assert verify(token, stamp, sent.body, signed, now=now)
    assert not verify(token, stamp, sent.body + b" ", signed, now=now)
    assert not verify(token[:-1] + "x", stamp, sent.body, signed, now=now)
    assert not verify(token, stamp, sent.body, signed, now=now + 3600)  # a replay an hour later
    with services.records.connect() as connection:
        assert verify_log(connection).problems == []  # the callback's entry is one the audit check knows
        kinds = connection.execute(
            sa.select(audit_log.c.kind).where(audit_log.c.request_id == created["id"])
        ).scalars()
        assert "callback_delivered" in list(kinds)


def test_a_callback_to_a_host_not_allowed_is_refused(bot: RunningBot, services: Services) -> None:
    _, token = _agent(services)
    with _api(bot, token) as api:
        response = api.post(
            "/requests", json={**PROD_RETRAIN, "reason": "x", "callback_url": "http://10.0.0.5/hook"}
        )
    assert response.status_code == 422 and response.json()["error"]["field"] == "callback_url"


def test_a_card_slack_refuses_withdraws_the_request_and_says_why(bot: RunningBot, services: Services) -> None:
    """A pending request no approver can see is not left waiting: withdrawn (audited) and refused, naming
    the channel and Slack's answer."""
    _, token = _agent(services)
    bot.slack.fail("chat.postMessage", status=200, error="not_in_channel")
    with _api(bot, token) as api:
        refused = api.post("/requests", json={**PROD_RETRAIN, "reason": "drift", "idempotency_key": "k-9"})
        body = refused.json()["error"]
        assert refused.status_code == 502 and body["code"] == "card_not_posted" and body["field"] == "channel"
        assert "not_in_channel" in body["message"] and CHANNEL in body["message"]
        replay = api.post("/requests", json={**PROD_RETRAIN, "reason": "drift", "idempotency_key": "k-9"})
    assert replay.json()["status"] == "cancelled"  # the key names the withdrawn request
    assert bot.bot_posts(CHANNEL) == []


def test_one_agent_cannot_hold_every_server_thread_with_long_polls(
    bot: RunningBot, services: Services
) -> None:
    """Past STEWARD_AGENT_LONG_POLLS waiting long-polls, the agent gets 429 at once; the others wait on."""
    agent, token = _agent(services)
    gateway = services.agent_gateway
    limit = services.settings.agent_long_polls
    with _api(bot, token) as api:
        created = _request(api)
        answers: list[int] = []
        pollers = [
            threading.Thread(
                target=lambda: answers.append(
                    api.get(f"/requests/{created['id']}", params={"wait": 3}).status_code
                )
            )
            for _ in range(limit)
        ]
        for poller in pollers:
            poller.start()
        deadline = time.monotonic() + 10
        while gateway.waits(agent.name) < limit and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gateway.waits(agent.name) == limit
        refused = api.get(f"/requests/{created['id']}", params={"wait": 3})
        at_once = api.get(f"/requests/{created['id']}")  # no wait: always answered
        for poller in pollers:
            poller.join(timeout=10)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_waits"
    assert refused.headers["Retry-After"] == "1"
    assert at_once.status_code == 200 and answers == [200] * limit
    assert gateway.waits(agent.name) == 0


def test_asking_an_empty_knowledge_base_says_so(bot: RunningBot, services: Services) -> None:
    """Nothing ingested yet: 503 naming the cause, not an internal error with a reference."""
    _, token = _agent(services)
    with _api(bot, token) as api:
        response = api.post("/ask", json={"question": "How do I roll back a model?"})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "knowledge_base_empty"
    assert "sqlite" not in response.text  # no internal paths for an agent
