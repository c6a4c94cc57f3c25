"""A running Steward Slack app on loopback (waitress, real HTTP), its Web API pointed at the fake Slack."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from bot.logs import ContextExecutor
from bot.runtime.http import HttpServer
from bot.runtime.serve import agent_endpoints
from bot.slack.app import SlackApp, build_app
from bot.wiring import Services
from tests.support.slack import FakeSlack, command_body, event_body, form_body, sign
from tests.support.slack.assistant import block_problems

SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"
USER = "UASKER"
EXPERT = "UEXPERT"
CHANNEL = "CGENERAL"


@dataclass
class Reply:
    """Status, body and how long the app took to acknowledge."""

    status: int
    body: str
    seconds: float


@dataclass
class RunningBot:
    """Steward's HTTP endpoint and the fake Slack it talks to."""

    slack: FakeSlack
    services: Services
    app: SlackApp
    url: str
    _event_numbers: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    @property
    def base(self) -> str:
        """The server's base URL (`http://127.0.0.1:PORT`): the agent API is under /api/v1."""
        return self.url.removesuffix("/slack/events")

    def send(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> Reply:
        """POST a body to /slack/events, signed with the app's secret unless headers say otherwise."""
        all_headers = {"Content-Type": content_type, **sign(SECRET, body)}
        all_headers.update(headers or {})
        request = urllib.request.Request(self.url, data=body, headers=all_headers, method="POST")
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, response.read().decode(), time.perf_counter() - started)
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read().decode(), time.perf_counter() - started)

    def event(
        self, event: dict[str, Any], event_id: str | None = None, headers: dict[str, str] | None = None
    ) -> str:
        """Deliver an Events API event; returns its event id."""
        event_id = event_id or f"Ev{next(self._event_numbers):08d}"
        reply = self.send(event_body(event, event_id), "application/json", headers)
        assert reply.status == 200, reply
        return event_id

    def say(
        self,
        text: str,
        *,
        user: str = USER,
        channel: str = CHANNEL,
        thread_ts: str | None = None,
        mention: bool = True,
    ) -> str:
        """A person posts (seeded in the fake, so threads can be read back) and Slack tells Steward."""
        full = f"<@{self.slack.bot_user_id}> {text}" if mention else text
        ts = self.slack.add_message(channel, full, user, thread_ts=thread_ts)
        event: dict[str, Any] = {"type": "message", "channel": channel, "user": user, "text": full, "ts": ts}
        event["channel_type"] = "im" if channel.startswith("D") else "channel"
        if thread_ts:
            event["thread_ts"] = thread_ts
        if mention and not channel.startswith("D"):
            self.event({**event, "type": "app_mention"})
        self.event(event)  # Slack also sends the plain message event for the same message
        return ts

    def command(self, text: str, *, user: str = USER, channel: str = CHANNEL) -> Reply:
        """`/steward text`."""
        body = command_body(
            text=text, user_id=user, channel_id=channel, response_url=self.slack.response_url("cmd")
        )
        return self.send(body, "application/x-www-form-urlencoded")

    def slash_ask(self, question: str, *, user: str = USER) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """`/steward ask question` in the channel, answered: the one post it made at the channel's top level,
        and Steward's replies in that post's thread."""
        assert self.command(f"ask {question}", user=user).status == 200
        self.settle()
        roots = self.bot_posts(CHANNEL)
        assert len(roots) == 1, roots
        return roots[0], self.bot_posts(CHANNEL, roots[0]["ts"])

    def interact(self, payload: dict[str, Any]) -> Reply:
        """A button click, shortcut or modal submission."""
        return self.send(form_body(payload), "application/x-www-form-urlencoded")

    def click(self, message: dict[str, Any], action_id: str, user: str = USER) -> Reply:
        """Click the button `action_id` of a message Steward posted."""
        button = next(
            element
            for block in message.get("blocks") or []
            if block.get("type") == "actions"
            for element in block["elements"]
            if element.get("action_id") == action_id
        )
        payload = interaction(
            "block_actions",
            user,
            "trigger-1",
            channel={"id": message["channel"]},
            container={"type": "message", "message_ts": message["ts"], "channel_id": message["channel"]},
            message=message,
            response_url=self.slack.response_url("click"),
            actions=[
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": button["value"],
                    "action_ts": str(time.time()),
                }
            ],
        )
        return self.interact(payload)

    def submit_view(self, view: dict[str, Any], values: dict[str, dict[str, Any]], user: str = USER) -> Reply:
        """Submit a modal Steward opened, with `values` as its state (block_id -> action_id -> value)."""
        view = {**view, "id": view.get("id") or "V1", "state": {"values": values}}
        return self.interact(interaction("view_submission", user, "trigger-2", view=view))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        """A message as it is now in the fake (after any chat.update), wherever it is."""
        for top in self.slack.messages(channel):
            if top["ts"] == ts:
                return top
            for reply in self.slack.messages(channel, top["ts"]):
                if reply["ts"] == ts:
                    return reply
        raise AssertionError(f"no message {ts} in {channel}")

    def bot_posts(self, channel: str = CHANNEL, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """Messages Steward posted in a thread (not counting its root), or at the channel's top level."""
        return [
            m
            for m in self.slack.messages(channel, thread_ts)
            if m.get("user") == self.slack.bot_user_id and m["ts"] != thread_ts
        ]

    def open_pane(self, user: str = USER, viewing: str | None = CHANNEL) -> tuple[str, str]:
        """The person opens Steward's assistant pane (while viewing a channel), Slack tells Steward, and
        Steward has greeted them.

        Returns the pane's DM channel and thread; `say(..., channel=..., thread_ts=..., mention=False)`
        then asks in it.
        """
        event = self.slack.open_assistant_thread(user, viewing)
        self.event(event)
        self.settle()  # the greeting comes first in the thread
        thread = event["assistant_thread"]
        return str(thread["channel_id"]), str(thread["thread_ts"])

    def settle(self) -> None:
        """Wait until every lazy listener started so far has finished."""
        executor = self.app.executor
        assert isinstance(executor, TrackingExecutor)
        executor.settle()


class TrackingExecutor(ContextExecutor):
    """The listener executor, remembering its work so tests can wait for it (and see its errors)."""

    def __init__(self, workers: int = 4) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="test-worker")
        self.futures: list[Future[Any]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        self.futures.append(future)
        return future

    def settle(self, timeout: float = 30) -> None:
        """Wait for everything submitted so far; re-raise the first error."""
        while self.futures:
            pending, self.futures = self.futures, []
            for future in pending:
                future.result(timeout=timeout)


def interaction(kind: str, user: str, trigger_id: str, **fields: Any) -> dict[str, Any]:
    """An interaction payload of type `kind` (a click, shortcut or modal submission) by `user`, as Slack
    sends it from the fake workspace, with the fields of its kind."""
    return {
        "type": kind,
        "user": {"id": user, "username": user.lower()},
        "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE",
        "trigger_id": trigger_id,
        **fields,
    }


def assert_valid_blocks(blocks: Any) -> None:
    """The blocks are what slack_sdk's own Block Kit models accept, unchanged."""
    problems = block_problems(blocks)
    assert not problems, problems


def blocks_text(message: dict[str, Any]) -> str:
    """All the text of a message's blocks, for assertions."""
    return json.dumps(message.get("blocks") or [], ensure_ascii=False) + str(message.get("text") or "")


def build_test_app(services: Services, slack: FakeSlack, **settings_overrides: Any) -> SlackApp:
    """The Bolt app on these services, its Web API pointed at the fake, its work tracked."""
    services.settings = services.settings.model_copy(
        update={"slack_bot_token": SecretStr(BOT_TOKEN), "slack_api_url": slack.api_url, **settings_overrides}
    )
    return build_app(
        services.settings,
        lambda: services.answers,
        services.questions,
        services.gaps,
        services.knowledge,
        services.deliveries,
        executor=TrackingExecutor(),
        incidents=services.incident_service,
        actions=services.guarded_actions,
        policy=services.policy,
        proposer=services.proposer,
        client=services.slack_client,
    )


@contextmanager
def serving(app: SlackApp, **server_options: Any) -> Iterator[str]:
    """Steward's HTTP server for `app` on a free loopback port; yields its base URL, then stops it."""
    server = HttpServer(app, "127.0.0.1", 0, **server_options)
    thread = threading.Thread(target=server.server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.close()
        thread.join(timeout=5)
        if server.mcp is not None:  # HttpServer.run would close it; the thread ran the server itself
            server.mcp.close()
        app.executor.shutdown(wait=True)


@contextmanager
def running_bot(
    services: Services, *, agents: bool = False, **settings_overrides: Any
) -> Iterator[RunningBot]:
    """Serve Steward on a free loopback port, pointed at a fresh fake Slack; with `agents`, the agent API
    (/api/v1) and the MCP endpoint (/mcp) too, their cards posted through this app (`RunningBot.base`)."""
    with FakeSlack() as slack:
        app = build_test_app(services, slack, slack_signing_secret=SecretStr(SECRET), **settings_overrides)
        endpoints: dict[str, Any] = {}
        if agents:
            services.override("slack_app", app)
            endpoints = agent_endpoints(services)
        with serving(app, **endpoints) as base:
            yield RunningBot(slack, services, app, f"{base}/slack/events")
