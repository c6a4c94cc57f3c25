"""Steward over Socket Mode, end to end: envelopes in over a loopback WebSocket, Web API calls to the fake."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.app import SlackApp
from bot.slack.home import HELP
from bot.wiring import Services
from tests.slackbot import BOT_TOKEN, CHANNEL, USER, TrackingExecutor, blocks_text, build_test_app
from tests.support.slack import FakeSlack, events_api_envelope, slash_commands_envelope

APP_TOKEN = "xapp-test"
ROLLBACK = "How do I roll back the fraud-scorer model in production?"


@dataclass
class SocketModeBot:
    """Steward connected over Socket Mode to the fake Slack."""

    slack: FakeSlack
    app: SlackApp
    handler: SocketModeHandler

    def mention(self, envelope_id: str, event_id: str, retry_attempt: int = 0, ts: str | None = None) -> str:
        """A person mentions Steward with the rollback question (seeded once); returns the message ts."""
        text = f"<@{self.slack.bot_user_id}> {ROLLBACK}"
        ts = ts or self.slack.add_message(CHANNEL, text, USER)
        event: dict[str, Any] = {
            "type": "app_mention",
            "channel": CHANNEL,
            "user": USER,
            "text": text,
            "ts": ts,
        }
        reason = "timeout" if retry_attempt else ""
        self.slack.socket_send(events_api_envelope(event, event_id, envelope_id, retry_attempt, reason))
        return ts

    def settle(self) -> None:
        """Wait until every lazy listener started so far has finished."""
        executor = self.app.executor
        assert isinstance(executor, TrackingExecutor)
        executor.settle()

    def bot_posts(self, thread_ts: str) -> list[dict[str, Any]]:
        """Messages Steward posted in a thread of the channel (not counting its root)."""
        return [
            m
            for m in self.slack.messages(CHANNEL, thread_ts)
            if m.get("user") == self.slack.bot_user_id and m["ts"] != thread_ts
        ]


@contextmanager
def socket_mode_bot(services: Services) -> Iterator[SocketModeBot]:
    """Build Steward with an app token (Socket Mode) and connect it to a fresh fake Slack."""
    with FakeSlack() as slack:
        app = build_test_app(services, slack, slack_app_token=SecretStr(APP_TOKEN), slack_signing_secret=None)
        handler = SocketModeHandler(app.bolt, APP_TOKEN)
        try:
            handler.connect()  # type: ignore[no-untyped-call]
            yield SocketModeBot(slack, app, handler)
        finally:
            close_promptly(handler, slack)
            app.executor.shutdown(wait=True)


def close_promptly(handler: SocketModeHandler, slack: FakeSlack) -> None:
    """handler.close(), without the seconds the builtin client spends in its blocking reads.

    Its reader holds a lock for up to 3 s per recv, so the fake closes the connection first (with the
    reconnect switched off); its message processor waits up to 1 s on its queue, so it gets a wake-up.
    """
    client = handler.client
    client.auto_reconnect_enabled = False
    slack.socket_mode.close_connections()
    client.closed = True
    client.message_queue.put(None)  # process_message() skips None
    handler.close()  # type: ignore[no-untyped-call]


@pytest.fixture
def socket_bot(services: Services) -> Iterator[SocketModeBot]:
    """Steward connected over Socket Mode to a fresh fake Slack."""
    with socket_mode_bot(services) as running:
        yield running


def test_steward_connects_over_socket_mode_with_the_app_token(socket_bot: SocketModeBot) -> None:
    """With SLACK_APP_TOKEN set, Steward opens a Socket Mode connection using that token."""
    assert socket_bot.app.socket_mode
    opened = socket_bot.slack.calls("apps.connections.open")
    assert [call.token for call in opened] == [APP_TOKEN]
    assert socket_bot.slack.socket_mode.wait_for_clients(1) == 1
    assert socket_bot.slack.socket_mode.paths() == ["/link/?ticket=fake-ticket-1"]


def test_a_mention_envelope_is_acknowledged_and_answered_in_the_thread(socket_bot: SocketModeBot) -> None:
    """An app_mention envelope is acked with its envelope_id and answered in the question's thread."""
    ts = socket_bot.mention("env-mention", "EvMENTION")
    assert socket_bot.slack.wait_for_socket_ack("env-mention") == {"envelope_id": "env-mention"}
    socket_bot.settle()
    posts = socket_bot.slack.calls("chat.postMessage")
    assert [call.args.get("thread_ts") for call in posts] == [ts]
    answers = socket_bot.bot_posts(ts)
    assert len(answers) == 1 and "Model rollback" in blocks_text(answers[0])


def test_slash_help_is_answered_in_the_acknowledgement(socket_bot: SocketModeBot) -> None:
    """`/steward help` as a slash_commands envelope gets the help text in the ack's payload."""
    socket_bot.slack.socket_send(
        slash_commands_envelope("env-help", text="help", response_url=socket_bot.slack.response_url("cmd"))
    )
    ack = socket_bot.slack.wait_for_socket_ack("env-help")
    assert ack == {"envelope_id": "env-help", "payload": {"text": HELP}}
    socket_bot.settle()
    assert socket_bot.slack.calls("chat.postMessage") == []


def test_a_command_from_another_workspace_is_refused_in_the_acknowledgement(
    socket_bot: SocketModeBot,
) -> None:
    """Over Socket Mode too, `/steward` with another team id gets the refusal as the ack's payload only."""
    socket_bot.slack.socket_send(
        slash_commands_envelope(
            "env-other",
            text="ask how do I roll back?",
            team_id="T0OTHER",
            response_url="http://127.0.0.1:9/x",
        )
    )
    ack = socket_bot.slack.wait_for_socket_ack("env-other")
    assert ack["payload"]["text"] == "This Steward serves another Slack workspace, so nothing was done here."
    socket_bot.settle()
    assert socket_bot.slack.calls("chat.postMessage") == []


def test_a_redelivered_envelope_is_answered_once(socket_bot: SocketModeBot) -> None:
    """The same event delivered again (retry_attempt 1) is acknowledged but not answered twice."""
    ts = socket_bot.mention("env-first", "EvRETRY")
    socket_bot.slack.wait_for_socket_ack("env-first")
    socket_bot.mention("env-retry", "EvRETRY", retry_attempt=1, ts=ts)
    socket_bot.slack.wait_for_socket_ack("env-retry")
    socket_bot.settle()
    assert len(socket_bot.slack.calls("chat.postMessage")) == 1
    assert len(socket_bot.bot_posts(ts)) == 1


def test_apps_connections_open_refuses_a_bot_token() -> None:
    """Like Slack, the fake hands out Socket Mode URLs only for app-level (xapp-) tokens."""
    with FakeSlack() as slack:
        client = WebClient(token=BOT_TOKEN, base_url=slack.api_url)
        with pytest.raises(SlackApiError) as refused:
            client.apps_connections_open(app_token=BOT_TOKEN)
        assert refused.value.response["error"] == "not_allowed_token_type"
        opened = client.apps_connections_open(app_token=APP_TOKEN)
        assert str(opened["url"]).startswith(f"{slack.socket_mode.url}?ticket=")
