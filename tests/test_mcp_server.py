"""Steward as an MCP server, through the official MCP client: the tools an agent sees, a call that waits
for approval, the long-poll with progress, refusals and failures as tool errors (over an in-test backend,
in memory); /mcp over HTTP (tokens checked first, a clean stop) and `steward mcp` over stdio, against the
agent API on loopback, then in front of a served Steward (the card in the fake Slack, the reviewer's
click) and a `steward serve` process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.types import StartResponse

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult
from waitress.server import create_server

from bot.agents.mcp_server import build_server
from bot.agents.models import (
    MCP_PATH,
    ActionInfo,
    Agent,
    AnswerInfo,
    ApiError,
    Approvals,
    Citation,
    DecisionInfo,
    NewRequest,
    RequestInfo,
    RunResult,
)
from bot.errors import Unavailable
from bot.runtime.api import AgentApi
from bot.runtime.http import WSGIApp
from bot.runtime.mcp_http import MAX_BODY_BYTES, McpEndpoint
from bot.slack.payloads import ACTION_APPROVE
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, running_bot
from tests.support.clock import starter_policies
from tests.support.replicas import Replica, replica_env
from tests.support.slack import FakeSlack

MODEL = {"type": "string", "pattern": "[a-z][a-z0-9-]{1,62}"}
ROLLBACK = ActionInfo(
    name="rollback-model",
    description="Move a registered model's production alias back to an earlier version.",
    risk="high",
    idempotent=True,
    runbook="runbooks/model-rollback.md",
    input_schema={
        "type": "object",
        "properties": {"model": MODEL, "version": {"type": "integer", "minimum": 1}},
        "required": ["model", "version"],
        "additionalProperties": False,
    },
)
RETRAIN = ActionInfo(
    name="retrain-model",
    description="Start the retraining pipeline for a model.",
    risk="medium",
    idempotent=False,
    input_schema={
        "type": "object",
        "properties": {"model": MODEL, "reason": {"type": "string", "description": "Why now"}},
        "required": ["model"],
        "additionalProperties": False,
    },
)
PAUSE = ActionInfo(
    name="pause-agent",
    description="Kill switch for an LLM agent.",
    risk="medium",
    idempotent=True,
    input_schema={"type": "object", "properties": {"agent": {"type": "string"}}, "required": ["agent"]},
)
ROTATE = ActionInfo(
    name="rotate-secret",
    description="Rotate a secret.",
    risk="high",
    idempotent=False,
    input_schema={"type": "object", "properties": {"secret_name": {"type": "string"}}},
)
CARD = "https://example.slack.com/archives/C0APPROVE/p1700000000000100"


class Desk:
    """A small Steward behind the backend protocol, for the MCP layer alone: rollback-model waits for two
    approvals, pause-agent runs at once, rotate-secret is denied; it records the threads that call it."""

    def __init__(
        self,
        agent: str = "deploy-bot",
        actions: tuple[ActionInfo, ...] = (ROLLBACK, RETRAIN, PAUSE),
        may_request: bool = True,
    ):
        self.agent = agent
        self.may_request = may_request
        self.offered = list(actions)
        self.requests: dict[str, RequestInfo] = {}
        self.asked: list[NewRequest] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def _called(self) -> None:
        self.threads.add(threading.current_thread().name)

    def actions(self) -> list[ActionInfo]:
        self._called()
        if not self.may_request:
            raise ApiError(403, "missing_scope", "the token lacks the 'request' scope", "Authorization")
        return list(self.offered)

    def request(self, new: NewRequest) -> RequestInfo:
        self._called()
        self.asked.append(new)
        for info in self.requests.values():
            if new.idempotency_key is not None and info.parameters.get("_key") == new.idempotency_key:
                return info.model_copy(update={"replayed": True})
        outcome, status, reason = {
            "rollback-model": ("require_approval", "pending", "production rollbacks need two ML leads"),
            "pause-agent": ("allow", "succeeded", "pausing an agent is a pre-approved emergency action"),
        }.get(new.action, ("deny", "denied", "secrets are rotated by the security team only"))
        info = RequestInfo(
            id=f"req-{len(self.requests) + 1}",
            action=new.action,
            parameters={**new.parameters, **({"_key": new.idempotency_key} if new.idempotency_key else {})},
            reason=new.reason,
            status=status,  # type: ignore[arg-type]
            final=status != "pending",
            decision=DecisionInfo(outcome=outcome, rule="starter", reason=reason),  # type: ignore[arg-type]
            approvals=Approvals(required=2 if status == "pending" else 0, groups=["ml-leads"], approvers=[]),
            result=RunResult(ok=True, summary="agent paused", output="tools-off")
            if status == "succeeded"
            else None,
            card_url=CARD if status == "pending" else None,
            created_at=time.time(),
            agent=self.agent,
        )
        self.requests[info.id] = info
        return info

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        self._called()
        deadline = time.monotonic() + wait
        with self.changed:
            while True:
                info = self.requests.get(request_id)
                if info is None:
                    raise ApiError(404, "not_found", f"no request {request_id} of yours", "request_id")
                remaining = deadline - time.monotonic()
                if info.final or remaining <= 0:
                    return info
                self.changed.wait(remaining)

    def cancel(self, request_id: str) -> RequestInfo:
        return self.decide(request_id, "cancelled")

    def decide(self, request_id: str, status: str, approvers: tuple[str, ...] = ()) -> RequestInfo:
        """What the approvers (or the agent's cancel) do to a pending request."""
        self._called()
        with self.changed:
            info = self.requests[request_id]
            if info.final:
                raise ApiError(409, "final", f"{request_id} is already {info.status}")
            done = info.model_copy(
                update={
                    "status": status,
                    "final": True,
                    "approvals": info.approvals.model_copy(update={"approvers": list(approvers)}),
                    "result": RunResult(ok=True, summary="alias moved to version 3", output="")
                    if status == "succeeded"
                    else None,
                }
            )
            self.requests[request_id] = done
            self.changed.notify_all()
            return done

    def ask(self, question: str) -> AnswerInfo:
        self._called()
        return AnswerInfo(
            answer="Move the production alias back with the MLflow client [1].",
            abstained=False,
            confidence=0.82,
            citations=[Citation(title="Model rollback", path="runbooks/model-rollback.md", section="Steps")],
        )


def _with_client(desk: Desk, check: Callable[[Client], Awaitable[None]], progress_every: float = 5.0) -> None:
    """Run `check` with the official client connected in memory (JSON-RPC over memory streams)."""

    async def run() -> None:
        async with Client(build_server(lambda: desk, progress_every), mode="legacy") as client:
            await check(client)

    anyio.run(run)


def _text(result: CallToolResult) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def test_the_tools_are_the_agents_actions_with_a_required_reason() -> None:
    """tools/list: the fixed tools and one per action the backend offers, each with its schema plus reason."""
    desk = Desk(actions=(ROLLBACK, RETRAIN))

    async def check(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert sorted(tools) == [
            "ask_knowledge_base",
            "cancel_request",
            "get_request",
            "retrain-model",
            "rollback-model",
        ]
        rollback = tools["rollback-model"]
        schema = rollback.input_schema
        assert schema["required"] == ["model", "version", "reason"]
        assert schema["properties"]["model"] == MODEL
        assert schema["properties"]["reason"]["type"] == "string"
        assert "idempotency_key" in schema["properties"] and "idempotency_key" not in schema["required"]
        assert schema["additionalProperties"] is False
        assert "Risk: high" in (rollback.description or "") and "approval" in (rollback.description or "")
        assert "Runbook: runbooks/model-rollback.md" in (rollback.description or "")
        assert "Runbook" not in (tools["retrain-model"].description or "")
        assert rollback.annotations is not None and rollback.annotations.destructive_hint is True
        # retrain-model has a reason parameter of its own: the agent's reason fills it and becomes required
        assert tools["retrain-model"].input_schema["required"] == ["model", "reason"]

    _with_client(desk, check)


def test_a_token_for_questions_only_has_only_ask_knowledge_base() -> None:
    """An agent without the request scope (`--scope ask`) sees ask_knowledge_base alone, and it works."""
    desk = Desk(may_request=False)

    async def check(client: Client) -> None:
        assert [tool.name for tool in (await client.list_tools()).tools] == ["ask_knowledge_base"]
        result = await client.call_tool("ask_knowledge_base", {"question": "How do I roll back?"})
        assert result.is_error is False

    _with_client(desk, check)


def test_a_call_that_needs_approval_returns_at_once_pending_with_the_card() -> None:
    """The action's tool returns the request's id, 'pending approval', the card link and the policy's reason,
    as text and as structured content; the backend got the reason apart from the parameters."""
    desk = Desk()

    async def check(client: Client) -> None:
        result = await client.call_tool(
            "rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "AUC dropped after v4"}
        )
        assert result.is_error is False
        info = RequestInfo.model_validate(result.structured_content)
        assert (info.id, info.status, info.card_url) == ("req-1", "pending", CARD)
        text = _text(result)
        assert "req-1" in text and "pending approval (0 of 2 approvals from ml-leads)" in text
        assert CARD in text and "production rollbacks need two ML leads" in text
        assert "get_request" in text

    _with_client(desk, check)
    assert desk.asked == [
        NewRequest(
            action="rollback-model",
            parameters={"model": "fraud-scorer", "version": 3},
            reason="AUC dropped after v4",
        )
    ]


def test_an_action_with_its_own_reason_parameter_gets_the_agents_reason_in_both() -> None:
    """retrain-model declares `reason`: the one argument is the request's reason and the parameter."""
    desk = Desk()

    async def check(client: Client) -> None:
        await client.call_tool("retrain-model", {"model": "fraud-scorer", "reason": "new labels"})

    _with_client(desk, check)
    assert [(new.parameters, new.reason) for new in desk.asked] == [
        ({"model": "fraud-scorer", "reason": "new labels"}, "new labels")
    ]


def test_a_denied_request_is_a_tool_error_with_the_policys_reason() -> None:
    """isError true, the policy's reason in the text, the request (denied) as structured content."""
    desk = Desk(actions=(ROTATE,))

    async def check(client: Client) -> None:
        result = await client.call_tool("rotate-secret", {"secret_name": "db", "reason": "leaked in a log"})
        assert result.is_error is True
        assert "denied by policy" in _text(result)
        assert "secrets are rotated by the security team only" in _text(result)
        assert RequestInfo.model_validate(result.structured_content).status == "denied"

    _with_client(desk, check)


def test_an_allowed_action_returns_its_result() -> None:
    """An action the policy allows runs at once: the call returns the run's summary and output."""
    desk = Desk()

    async def check(client: Client) -> None:
        result = await client.call_tool(
            "pause-agent", {"agent": "support-bot", "reason": "it loops on refunds"}
        )
        assert result.is_error is False
        assert (
            "succeeded" in _text(result) and "agent paused" in _text(result) and "tools-off" in _text(result)
        )

    _with_client(desk, check)


def test_get_request_waits_for_the_outcome_and_reports_progress() -> None:
    """get_request with wait_seconds returns once the approvers decide, with progress notifications while
    it waits; the backend is called on worker threads, never on the event loop's."""
    desk = Desk()
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))
        if len(seen) == 2:  # the approvers decide while the agent waits
            threading.Thread(target=desk.decide, args=("req-1", "succeeded", ("U1", "U2"))).start()

    async def check(client: Client) -> None:
        loop_thread = threading.current_thread().name
        await client.call_tool("rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "drift"})
        started = time.monotonic()
        result = await client.call_tool(
            "get_request", {"request_id": "req-1", "wait_seconds": 30}, progress_callback=on_progress
        )
        assert time.monotonic() - started < 20, "returned when the request became final, not at the end"
        info = RequestInfo.model_validate(result.structured_content)
        assert (info.status, info.final, info.approvals.approvers) == ("succeeded", True, ["U1", "U2"])
        assert "alias moved to version 3" in _text(result)
        assert loop_thread not in desk.threads

    _with_client(desk, check, progress_every=0.2)
    assert len(seen) >= 2
    assert [total for _, total, _ in seen] == [30.0] * len(seen)
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    assert seen[0][2] == "req-1: pending approval (0 of 2 approvals from ml-leads)"


def test_get_request_without_wait_answers_at_once() -> None:
    """Without wait_seconds the request's current state comes back at once, still pending."""
    desk = Desk()

    async def check(client: Client) -> None:
        await client.call_tool("rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "drift"})
        result = await client.call_tool("get_request", {"request_id": "req-1"})
        assert RequestInfo.model_validate(result.structured_content).status == "pending"

    _with_client(desk, check)


@pytest.mark.parametrize(
    ("tool", "arguments", "says"),
    [
        (
            "get_request",
            {"request_id": "req-9"},
            "no request req-9 of yours (field: request_id) [404 not_found]",
        ),
        (
            "get_request",
            {"request_id": "req-9", "wait_seconds": 600},
            "`wait_seconds` must be a number from 0",
        ),
        ("rollback-model", {"model": "fraud-scorer", "version": 3}, "`reason` is required (field: reason)"),
        ("rollback-model", {"model": "m", "reason": "x" * 2001}, "reason: String should have at most 2000"),
        ("ask_knowledge_base", {}, "`question` is required"),
    ],
)
def test_refusals_and_bad_arguments_are_tool_errors_naming_the_field(
    tool: str, arguments: dict[str, Any], says: str
) -> None:
    """An ApiError (or an argument the request cannot take) is a tool result with isError and the message."""
    desk = Desk()

    async def check(client: Client) -> None:
        result = await client.call_tool(tool, arguments)
        assert result.is_error is True
        assert says in _text(result)
        assert "error" in result.structured_content

    _with_client(desk, check)


class Broken(Desk):
    """A backend whose knowledge base fails: unexpectedly, or because the index is unavailable."""

    def __init__(self, failure: Exception) -> None:
        super().__init__()
        self.failure = failure

    def ask(self, question: str) -> AnswerInfo:
        raise self.failure


def test_an_unexpected_failure_is_one_line_with_a_reference_and_the_traceback_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not a protocol error and not the exception's text (it may name internals): a reference to quote."""

    async def check(client: Client) -> None:
        result = await client.call_tool("ask_knowledge_base", {"question": "q"})
        assert result.is_error is True
        assert "Steward failed to answer this call; quote reference" in _text(result)
        assert "postgres://" not in _text(result)

    with caplog.at_level("ERROR", logger="steward.mcp"):
        _with_client(Broken(RuntimeError("could not connect to postgres://db")), check)
    failed = [
        record
        for record in caplog.records
        if "MCP tool call failed tool=ask_knowledge_base" in record.message
    ]
    assert len(failed) == 1 and failed[0].exc_info is not None


def test_steward_unavailable_is_told_as_such() -> None:
    """A known failure keeps its words: the model learns to try again later."""

    async def check(client: Client) -> None:
        result = await client.call_tool("ask_knowledge_base", {"question": "q"})
        assert result.is_error is True
        assert _text(result) == "Steward cannot answer now (the index is being rebuilt); try again later."

    _with_client(Broken(Unavailable("the index is being rebuilt")), check)


def test_a_failing_catalog_is_a_protocol_error_in_steward_words() -> None:
    """tools/list cannot be a tool result: its failure is an MCP error with the known failure's words."""

    class NoCatalog(Desk):
        def actions(self) -> list[ActionInfo]:
            raise Unavailable("the records database is down")

    async def check(client: Client) -> None:
        with pytest.raises(MCPError, match=r"Steward cannot answer now \(the records database is down\)"):
            await client.list_tools()

    _with_client(NoCatalog(), check)


def test_an_unknown_tool_is_a_protocol_error() -> None:
    """A tool that is not in the agent's list (here: an action the agent may not request) is an MCP error."""
    desk = Desk(actions=(PAUSE,))

    async def check(client: Client) -> None:
        with pytest.raises(MCPError, match="Unknown tool: rollback-model"):
            await client.call_tool("rollback-model", {"model": "m", "version": 1, "reason": "x"})

    _with_client(desk, check)
    assert desk.asked == []


def test_ask_knowledge_base_returns_the_answer_with_numbered_sources() -> None:
    """The answer's text, its confidence and [n] sources; the AnswerInfo as structured content."""
    desk = Desk()

    async def check(client: Client) -> None:
        result = await client.call_tool("ask_knowledge_base", {"question": "How do I roll back a model?"})
        assert result.is_error is False
        assert "[1] Model rollback, Steps: runbooks/model-rollback.md" in _text(result)
        assert "Confidence: 0.82" in _text(result)
        assert AnswerInfo.model_validate(result.structured_content).confidence == 0.82

    _with_client(desk, check)


def test_the_idempotency_key_returns_the_same_request() -> None:
    """The same idempotency key twice: the second call gets the first request back (replayed)."""
    desk = Desk()

    async def check(client: Client) -> None:
        arguments = {"model": "fraud-scorer", "version": 3, "reason": "drift", "idempotency_key": "k-1"}
        first = await client.call_tool("rollback-model", arguments)
        second = await client.call_tool("rollback-model", arguments)
        assert RequestInfo.model_validate(second.structured_content).id == "req-1"
        assert RequestInfo.model_validate(second.structured_content).replayed is True
        assert RequestInfo.model_validate(first.structured_content).replayed is False

    _with_client(desk, check)
    assert [new.idempotency_key for new in desk.asked] == ["k-1", "k-1"]


# /mcp over HTTP: the endpoint behind a real waitress server on loopback

TOKENS = {"Bearer stw_deploy": "deploy-bot", "Bearer stw_support": "support-bot"}


def _authenticate(authorization: str | None) -> Agent:
    name = TOKENS.get(authorization or "")
    if name is None:
        raise ApiError(401, "unauthorized", "missing or unknown token", "Authorization")
    return Agent(name=name, token_id=f"tok-{name}", owner="U0OWNER")


@contextmanager
def _on_loopback(app: WSGIApp) -> Iterator[str]:
    """`app` on a waitress server on a free loopback port; yields its base URL, then stops it."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.trigger.pull_trigger(server.close)  # closed by its own thread, as HttpServer.close does
        thread.join(5)


@contextmanager
def _endpoint_on_loopback(desks: dict[str, Desk]) -> Iterator[str]:
    """/mcp over the desks on loopback; yields its URL. The endpoint is closed after."""
    endpoint = McpEndpoint(_authenticate, lambda agent: desks[agent.name], progress_every=0.2)
    with _on_loopback(endpoint) as base:
        yield base + MCP_PATH
    endpoint.close()
    assert not endpoint._thread.is_alive(), "close() stops the endpoint's event loop"


def _over_http(
    url: str, token: str, check: Callable[[Client], Awaitable[None]], mode: str = "legacy"
) -> None:
    async def run() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": token}) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            await check(client)

    anyio.run(run)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_over_http_each_agent_sees_its_own_tools_and_requests(mode: str) -> None:
    """Two agents on one endpoint: each token reaches its own backend (handshake era and the 2026 era)."""
    deploy, support = Desk("deploy-bot"), Desk("support-bot", actions=(PAUSE,))
    with _endpoint_on_loopback({"deploy-bot": deploy, "support-bot": support}) as url:

        async def deploy_calls(client: Client) -> None:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert "rollback-model" in names
            result = await client.call_tool(
                "rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "drift"}
            )
            assert RequestInfo.model_validate(result.structured_content).status == "pending"
            assert CARD in _text(result)

        async def support_calls(client: Client) -> None:
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert "rollback-model" not in names and "pause-agent" in names
            result = await client.call_tool("get_request", {"request_id": "req-1"})
            assert result.is_error and "no request req-1 of yours" in _text(result)

        _over_http(url, "Bearer stw_deploy", deploy_calls, mode)
        _over_http(url, "Bearer stw_support", support_calls, mode)
    assert [new.action for new in deploy.asked] == ["rollback-model"] and support.asked == []


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_over_http_any_replica_answers_any_message(mode: str) -> None:
    """Two endpoints (two replicas over one Steward) answering in turn: a whole client session works,
    each of its messages answered by the other replica than the one before (no session to find)."""
    desk = Desk()
    replicas = [McpEndpoint(_authenticate, lambda agent: desk) for _ in range(2)]
    answered: list[int] = []

    def round_robin(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        answered.append(len(answered) % 2)
        return replicas[answered[-1]](environ, start_response)

    async def check(client: Client) -> None:
        assert "rollback-model" in [tool.name for tool in (await client.list_tools()).tools]
        await client.call_tool("rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "drift"})
        threading.Timer(0.3, desk.decide, args=("req-1", "succeeded", ("U1", "U2"))).start()
        result = await client.call_tool("get_request", {"request_id": "req-1", "wait_seconds": 30})
        assert RequestInfo.model_validate(result.structured_content).status == "succeeded"

    try:
        with _on_loopback(round_robin) as base:
            _over_http(base + MCP_PATH, "Bearer stw_deploy", check, mode)
    finally:
        for replica in replicas:
            replica.close()
    assert len(answered) >= 3 and set(answered) == {0, 1}


def test_over_http_get_request_waits_for_the_approval() -> None:
    """The long-poll over HTTP returns when the approvers decide (a JSON answer per POST)."""
    desk = Desk()
    with _endpoint_on_loopback({"deploy-bot": desk}) as url:

        async def check(client: Client) -> None:
            await client.call_tool(
                "rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "drift"}
            )
            threading.Timer(0.5, desk.decide, args=("req-1", "rejected", ("U1",))).start()
            result = await client.call_tool("get_request", {"request_id": "req-1", "wait_seconds": 30})
            assert RequestInfo.model_validate(result.structured_content).status == "rejected"
            assert "rejected by a reviewer" in _text(result)

        _over_http(url, "Bearer stw_deploy", check)


@pytest.mark.parametrize("authorization", [None, "Bearer stw_wrong", "stw_deploy"])
def test_over_http_a_wrong_token_is_refused_before_the_sdk(authorization: str | None) -> None:
    """Missing, wrong or malformed: 401 with a JSON error naming the header; the backend is never reached."""
    desk = Desk()
    with _endpoint_on_loopback({"deploy-bot": desk}) as url:
        headers = {"Authorization": authorization} if authorization else {}
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        answer = httpx.post(
            url, json=body, headers={**headers, "Accept": "application/json, text/event-stream"}
        )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json() == {
        "error": {"code": "unauthorized", "message": "missing or unknown token", "field": "Authorization"}
    }
    assert desk.threads == set()


def test_over_http_the_official_client_with_a_wrong_token_fails() -> None:
    """The official client gets the 401 as an error response, not a session."""
    with _endpoint_on_loopback({"deploy-bot": Desk()}) as url:

        async def never(client: Client) -> None:
            raise AssertionError("connected with a wrong token")

        with pytest.raises(BaseExceptionGroup) as failure:
            _over_http(url, "Bearer stw_wrong", never)
    assert failure.group_contains(MCPError, match="Server returned an error response", depth=2)


def test_over_http_get_and_delete_answer_405() -> None:
    """The endpoint is stateless: no SSE stream (GET) and no session to end (DELETE)."""
    with _endpoint_on_loopback({"deploy-bot": Desk()}) as url:
        for method in ("GET", "DELETE"):
            answer = httpx.request(method, url, headers={"Authorization": "Bearer stw_deploy"})
            assert (answer.status_code, answer.headers["Allow"]) == (405, "POST")
            assert answer.json()["error"]["code"] == -32600


def test_over_http_a_body_over_the_limit_is_refused_unread() -> None:
    """413 for a declared body over the endpoint's limit."""
    with _endpoint_on_loopback({"deploy-bot": Desk()}) as url:
        answer = httpx.post(
            url,
            content=b"{" + b" " * MAX_BODY_BYTES + b"}",
            headers={"Authorization": "Bearer stw_deploy"},
        )
    assert answer.status_code == 413


def test_closing_the_endpoint_answers_a_request_in_flight_at_once() -> None:
    """A long-poll in flight when the server stops gets 503 at once (not after its wait); later requests
    get 503 too, and the endpoint's event loop thread has ended."""
    desk = Desk()
    desk.request(NewRequest(action="rollback-model", parameters={"model": "m", "version": 1}, reason="x"))
    desk.threads.clear()
    endpoint = McpEndpoint(_authenticate, lambda agent: desk, progress_every=0.2)
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    call["params"] = {"name": "get_request", "arguments": {"request_id": "req-1", "wait_seconds": 60}}
    headers = {"Authorization": "Bearer stw_deploy", "Accept": "application/json, text/event-stream"}
    answers: list[httpx.Response] = []
    with _on_loopback(endpoint) as base:
        poll = threading.Thread(
            target=lambda: answers.append(httpx.post(base + MCP_PATH, json=call, headers=headers))
        )
        poll.start()
        deadline = time.monotonic() + 10
        while not desk.threads:  # the long-poll has reached the backend
            assert time.monotonic() < deadline, "the long-poll never reached the backend"
            time.sleep(0.01)
        stopping = time.monotonic()
        endpoint.close()
        poll.join(10)
        assert time.monotonic() - stopping < 5
        later = httpx.post(base + MCP_PATH, json=call, headers=headers)
    assert [answer.status_code for answer in answers] == [503]
    assert later.status_code == 503 and "stopping" in later.json()["error"]["message"]
    assert not endpoint._thread.is_alive()


# `steward mcp`: the console script over stdio, speaking to the agent API (bot/runtime/api.py) on loopback

STEWARD = str(Path(sys.executable).with_name("steward"))


@contextmanager
def _api_on_loopback(desks: dict[str, Desk]) -> Iterator[str]:
    """The agent API over the desks on loopback; yields its base URL."""
    with _on_loopback(AgentApi(_authenticate, lambda agent: desks[agent.name])) as base:
        yield base


def _steward_mcp(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`steward mcp` with only `env` (and PATH), its stdin closed at once."""
    return subprocess.run(
        [STEWARD, "mcp"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({}, "steward mcp needs STEWARD_URL and STEWARD_AGENT_TOKEN"),
        ({"STEWARD_AGENT_TOKEN": "stw_deploy"}, "steward mcp needs STEWARD_URL"),
    ],
)
def test_steward_mcp_without_its_variables_says_which_are_missing(env: dict[str, str], says: str) -> None:
    """Exit 1, one line on stderr naming the variables, nothing on stdout (where MCP would be)."""
    done = _steward_mcp(env)
    assert done.returncode == 1
    assert done.stderr.startswith(f"steward: error: {says}")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_steward_mcp_with_a_refused_token_says_so_before_it_serves() -> None:
    """The server refuses the token: a clear error, exit 1, no MCP on stdout; an unreachable server too."""
    with _api_on_loopback({"deploy-bot": Desk()}) as url:
        refused = _steward_mcp({"STEWARD_URL": url, "STEWARD_AGENT_TOKEN": "stw_wrong"})
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith(f"steward: error: Steward at {url} refused the agent's token")
    assert "STEWARD_AGENT_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    unreachable = _steward_mcp({"STEWARD_URL": url, "STEWARD_AGENT_TOKEN": "stw_deploy"})  # closed by now
    assert unreachable.returncode == 1 and unreachable.stdout == ""
    assert "could not be reached" in unreachable.stderr and "Traceback" not in unreachable.stderr


def test_steward_mcp_serves_the_agent_over_stdio_with_progress() -> None:
    """The official stdio client starts `steward mcp` (a subprocess): the agent's tools, a request pending
    approval at once, then get_request that waits, with progress notifications, until the approvers decide."""
    desk = Desk()
    seen: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message)
        if len(seen) == 1:  # the approvers decide once the agent is known to be waiting
            threading.Thread(target=desk.decide, args=("req-1", "succeeded", ("U1", "U2"))).start()

    with _api_on_loopback({"deploy-bot": desk}) as url:

        async def run() -> None:
            parameters = StdioServerParameters(
                command=STEWARD, args=["mcp"], env={"STEWARD_URL": url, "STEWARD_AGENT_TOKEN": "stw_deploy"}
            )
            async with Client(parameters) as client:
                names = [tool.name for tool in (await client.list_tools()).tools]
                assert names == [
                    "ask_knowledge_base",
                    "get_request",
                    "cancel_request",
                    "rollback-model",
                    "retrain-model",
                    "pause-agent",
                ]
                created = await client.call_tool(
                    "rollback-model", {"model": "fraud-scorer", "version": 3, "reason": "AUC dropped"}
                )
                assert RequestInfo.model_validate(created.structured_content).status == "pending"
                assert CARD in _text(created)
                result = await client.call_tool(
                    "get_request", {"request_id": "req-1", "wait_seconds": 60}, progress_callback=on_progress
                )
                assert RequestInfo.model_validate(result.structured_content).status == "succeeded"
                answer = await client.call_tool("ask_knowledge_base", {"question": "How do I roll back?"})
                assert "[1] Model rollback" in _text(answer)

        anyio.run(run)
    assert seen[0] == "req-1: pending approval (0 of 2 approvals from ml-leads)"
    assert [new.reason for new in desk.asked] == ["AUC dropped"]


# The real thing: /mcp and `steward mcp` in front of a served Steward (the gateway, the policy, the
# approval card in the fake Slack, the reviewer's click, the run)

OWNER = "U0000OWNER"
ML_PLATFORM = "U0000MLP01"  # in the starter policies' ml-platform group


@pytest.fixture
def served(make_services: Callable[..., Services], tmp_path: Path, small_kb: Path) -> Iterator[RunningBot]:
    """Steward served on loopback with the agent API and /mcp, the starter policies and a knowledge base;
    agents' cards go to CHANNEL."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    services = make_services(policies_dir=policies, agent_channel=CHANNEL)
    services.ingestor.run([small_kb])
    with running_bot(services, agents=True) as bot:
        yield bot


def _approval_card(bot: RunningBot) -> dict[str, Any]:
    cards = [message for message in bot.bot_posts(CHANNEL) if "Approval needed" in blocks_text(message)]
    assert len(cards) == 1, [blocks_text(message) for message in bot.bot_posts(CHANNEL)]
    return cards[0]


def test_mcp_on_steward_serve_waits_for_the_approval_in_slack(
    served: RunningBot, receiver: WebhookReceiver
) -> None:
    """Over /mcp: the token's actions only; a production retraining returns at once, pending, with the
    card's link; the card in Slack names the agent and its reason; get_request, waiting, returns the run
    once the reviewer approves, and the action ran once. A wrong token is refused with 401."""
    _, token = served.services.agent_registry.add("release-bot", OWNER, actions=["retrain-model"])
    url = served.base + MCP_PATH
    done: list[CallToolResult] = []

    async def check(client: Client) -> None:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert sorted(tools) == ["ask_knowledge_base", "cancel_request", "get_request", "retrain-model"]
        assert {"model", "env", "reason"} <= set(tools["retrain-model"].input_schema["properties"])
        created = await client.call_tool(
            "retrain-model", {"model": "fraud-scorer", "env": "prod", "reason": "drift on fraud-scorer"}
        )
        assert created.is_error is False, _text(created)
        info = RequestInfo.model_validate(created.structured_content)
        assert (info.status, info.agent, info.approvals.required) == ("pending", "release-bot", 1)
        assert info.card_url and info.card_url in _text(created) and "pending approval" in _text(created)
        card = _approval_card(served)
        assert "release-bot" in blocks_text(card) and "drift on fraud-scorer" in blocks_text(card)

        async def wait() -> None:
            done.append(await client.call_tool("get_request", {"request_id": info.id, "wait_seconds": 30}))

        async with anyio.create_task_group() as group:
            group.start_soon(wait)
            await anyio.to_thread.run_sync(lambda: served.click(card, ACTION_APPROVE, user=ML_PLATFORM))

    _over_http(url, f"Bearer {token}", check)
    outcome = RequestInfo.model_validate(done[0].structured_content)
    assert (outcome.status, outcome.final, outcome.approvals.approvers) == ("succeeded", True, [ML_PLATFORM])
    assert outcome.result is not None and outcome.result.ok
    assert len(receiver.requests) == 1
    refused = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"Authorization": "Bearer x"}
    )
    assert refused.status_code == 401 and refused.json()["error"]["field"] == "Authorization"


def test_steward_mcp_in_front_of_steward_serve(served: RunningBot, receiver: WebhookReceiver) -> None:
    """`steward mcp` (a subprocess) against the served Steward: a staging retraining the policy allows
    runs at once and returns its result; the knowledge base answers with its sources; a request that
    is not the agent's is a tool error."""
    _, token = served.services.agent_registry.add("notebook-bot", OWNER)

    async def run() -> None:
        parameters = StdioServerParameters(
            command=STEWARD, args=["mcp"], env={"STEWARD_URL": served.base, "STEWARD_AGENT_TOKEN": token}
        )
        async with Client(parameters) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            assert {"ask_knowledge_base", "get_request", "retrain-model", "rollback-model"} <= names
            ran = await client.call_tool(
                "retrain-model", {"model": "fraud-scorer", "env": "staging", "reason": "new labels landed"}
            )
            assert ran.is_error is False, _text(ran)
            info = RequestInfo.model_validate(ran.structured_content)
            assert (info.status, info.decision.outcome) == ("succeeded", "allow")
            answer = await client.call_tool("ask_knowledge_base", {"question": "How do I roll back a model?"})
            assert answer.is_error is False and "[1] " in _text(answer)
            unknown = await client.call_tool("get_request", {"request_id": "not-a-request"})
            assert unknown.is_error and "no_such_request" in _text(unknown)

    anyio.run(run)
    assert len(receiver.requests) == 1


def test_steward_serve_answers_mcp_and_stops_cleanly(tmp_path: Path) -> None:
    """A real `steward serve` process (a subprocess) with an agent added by `steward agents add`: the
    official clients reach it over /mcp and through `steward mcp`; a production rollback is pending
    with its card posted in the fake Slack; SIGTERM then stops the server, /mcp's event loop with it."""
    policies = starter_policies(tmp_path / "policies", freeze=False)  # the process reads the machine's clock
    with FakeSlack() as slack:
        env = replica_env(
            slack.api_url,
            f"sqlite:///{tmp_path / 'records.db'}",
            None,
            tmp_path,
            STEWARD_POLICIES_DIR=str(policies),
            STEWARD_AGENT_CHANNEL=CHANNEL,
        )
        added = subprocess.run(
            [STEWARD, "agents", "add", "ops-bot", "--owner", OWNER, "--actions", "rollback-model"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert added.returncode == 0, added.stderr
        token = added.stdout.strip().splitlines()[-1]
        replica = Replica(env, tmp_path, tmp_path / "serve.log")
        replica.start()
        try:
            base = f"http://127.0.0.1:{replica.port}"
            rollback = {"model": "fraud-scorer", "version": 3, "env": "prod", "reason": "AUC fell after v4"}

            async def over_http(client: Client) -> None:
                names = [tool.name for tool in (await client.list_tools()).tools]
                assert names == ["ask_knowledge_base", "get_request", "cancel_request", "rollback-model"]
                created = await client.call_tool("rollback-model", rollback)
                assert RequestInfo.model_validate(created.structured_content).status == "pending", _text(
                    created
                )

            _over_http(base + MCP_PATH, f"Bearer {token}", over_http)

            async def over_stdio() -> None:
                parameters = StdioServerParameters(
                    command=STEWARD, args=["mcp"], env={"STEWARD_URL": base, "STEWARD_AGENT_TOKEN": token}
                )
                async with Client(parameters) as client:
                    created = await client.call_tool("rollback-model", {**rollback, "idempotency_key": "k-7"})
                    info = RequestInfo.model_validate(created.structured_content)
                    assert (info.status, info.agent) == ("pending", "ops-bot")
                    again = await client.call_tool("get_request", {"request_id": info.id, "wait_seconds": 1})
                    assert RequestInfo.model_validate(again.structured_content).status == "pending"

            anyio.run(over_stdio)
            cards = [m for m in slack.messages(CHANNEL) if "ops-bot" in json.dumps(m.get("blocks", []))]
            assert len(cards) == 2, "one approval card per request, naming the agent"
        finally:
            code = replica.stop()
    assert code == 0, replica.log.read_text()[-3000:]
    assert "Traceback" not in replica.log.read_text()
