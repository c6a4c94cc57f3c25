"""The LangChain / LangGraph integration (bot/agents/langchain.py): a real LangGraph agent, driven by
LangChain's fake chat model emitting tool calls, whose tools go through a Steward backend and return the
outcome the approvers decided."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware.human_in_the_loop import _answer_message
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool

from bot.agents.client import StewardClient
from bot.agents.langchain import ASK_TOOL, guarded, steward_tools, wait_for_outcome
from bot.agents.models import (
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
    StewardBackend,
)
from bot.slack.payloads import ACTION_APPROVE, ACTION_REJECT, BLOCK_REJECT_REASON, INPUT_REJECT_REASON
from bot.wiring import Services
from tests.conftest import write_tree
from tests.fakes.webhook import WebhookReceiver
from tests.slackbot import CHANNEL, RunningBot, blocks_text, running_bot
from tests.support.clock import SettableClock

ROLLBACK = ActionInfo(
    name="rollback-model",
    description="Move a registered model's `production` alias back to an earlier version.",
    risk="high",
    idempotent=True,
    runbook="runbooks/model-rollback.md",
    input_schema={
        "type": "object",
        "properties": {
            "model": {"type": "string", "pattern": "[a-z][a-z0-9-]{1,62}"},
            "version": {"type": "integer", "minimum": 1},
            "env": {"type": "string", "enum": ["staging", "prod"]},
        },
        "required": ["model", "version", "env"],
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
        "properties": {
            "model": {"type": "string"},
            "reason": {"type": "string", "description": "Why now; goes to the audit log"},
        },
        "required": ["model"],
    },
)
ROLLBACK_ARGS = {"model": "fraud-scorer", "version": 11, "env": "prod", "reason": "error rate doubled"}
DONE = RunResult(ok=True, summary="rollback-model succeeded", output="production -> fraud-scorer v11")
WAIT = 30.0  # seconds a test (and a tool call in it) waits for a condition before failing


class ScriptedBackend:
    """A StewardBackend whose requests wait until the test decides them (the policy of `decide` at once)."""

    def __init__(
        self,
        catalog: Sequence[ActionInfo] = (ROLLBACK, RETRAIN),
        decide: Callable[[NewRequest], str] = lambda new: "require_approval",
    ) -> None:
        self.catalog = list(catalog)
        self.decide = decide
        self.received: list[NewRequest] = []
        self.requests: dict[str, RequestInfo] = {}
        self.questions: list[str] = []
        self.answer = AnswerInfo(answer="", abstained=True, confidence=0.0, citations=[])
        self.failures: list[ApiError] = []  # raised by the next calls of get(), first first
        self._changed = threading.Condition()

    def actions(self) -> list[ActionInfo]:
        return list(self.catalog)

    def request(self, new: NewRequest) -> RequestInfo:
        with self._changed:
            self.received.append(new)
            for info in self.requests.values():
                if new.idempotency_key is not None and info.id == f"key:{new.idempotency_key}":
                    return info.model_copy(update={"replayed": True})
            outcome = self.decide(new)
            status = {"deny": "denied", "allow": "succeeded"}.get(outcome, "pending")
            request_id = f"key:{new.idempotency_key}" if new.idempotency_key else f"R{len(self.received)}"
            info = RequestInfo(
                id=request_id,
                action=new.action,
                parameters=new.parameters,
                reason=new.reason,
                status=status,  # type: ignore[arg-type]
                final=status != "pending",
                decision=DecisionInfo(outcome=outcome, rule="a-rule", reason="the rule's reason"),  # type: ignore[arg-type]
                approvals=Approvals(required=2, groups=["ml-platform"], approvers=[]),
                result=DONE if status == "succeeded" else None,
                card_url="https://example.slack.com/archives/C1/p1" if status == "pending" else None,
                created_at=time.time(),
                agent="test-agent",
            )
            self.requests[info.id] = info
            self._changed.notify_all()
            return info

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        with self._changed:
            if self.failures:
                raise self.failures.pop(0)
            self._changed.wait_for(lambda: self.requests[request_id].final, timeout=wait)
            return self.requests[request_id]

    def cancel(self, request_id: str) -> RequestInfo:
        return self.finish(request_id, "cancelled")

    def ask(self, question: str) -> AnswerInfo:
        self.questions.append(question)
        return self.answer

    # the test's side: the approvers and the executor

    def next_request(self) -> RequestInfo:
        """The first request still pending, once there is one."""
        with self._changed:
            assert self._changed.wait_for(
                lambda: any(not info.final for info in self.requests.values()), timeout=WAIT
            ), "no request came"
            return next(info for info in self.requests.values() if not info.final)

    def finish(self, request_id: str, status: str, **changes: Any) -> RequestInfo:
        """Move a request to a final state."""
        with self._changed:
            info = self.requests[request_id].model_copy(update={"status": status, "final": True, **changes})
            self.requests[request_id] = info
            self._changed.notify_all()
            return info


class ToolCallingFake(FakeMessagesListChatModel):
    """LangChain's fake chat model, its scripted replies naming tools, with the tools bound as-is."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def _model(*calls: ToolCall) -> ToolCallingFake:
    """A model that makes these tool calls, one turn each, then says it is done."""
    turns: list[BaseMessage] = [AIMessage(content="", tool_calls=[call]) for call in calls]
    return ToolCallingFake(responses=[*turns, AIMessage(content="Done.")])


def _call(name: str, args: dict[str, Any], call_id: str = "call-1") -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """Where the agent runs while the test plays the approvers."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield executor


def _agent_run(
    pool: ThreadPoolExecutor, tools: list[BaseTool], *calls: ToolCall
) -> Future[list[ToolMessage]]:
    """A LangGraph agent (langchain.agents.create_agent) making these calls, started in the pool; its
    future gives the ToolMessages the model got."""
    agent = create_agent(_model(*calls), tools)

    def run() -> list[ToolMessage]:
        state = agent.invoke({"messages": [HumanMessage("Roll fraud-scorer back to v11 in prod")]})
        return [m for m in state["messages"] if isinstance(m, ToolMessage)]

    return pool.submit(run)


# ---- the tools


def test_one_tool_per_catalog_action_and_the_knowledge_base(backend: ScriptedBackend) -> None:
    """Each catalog action is a tool whose arguments are its parameters plus a required reason."""
    tools = {t.name: t for t in steward_tools(backend)}
    assert sorted(tools) == [ASK_TOOL, "retrain-model", "rollback-model"]
    schema = tools["rollback-model"].tool_call_schema
    assert isinstance(schema, dict)
    assert sorted(schema["required"]) == ["env", "model", "reason", "version"]
    assert schema["properties"]["env"]["enum"] == ["staging", "prod"]
    assert (
        "approve" in tools["rollback-model"].description
        and "risk: high" in tools["rollback-model"].description
    )


def test_only_the_named_actions_become_tools(backend: ScriptedBackend) -> None:
    """`actions=` picks tools; a name the agent may not request is refused, naming it."""
    assert [t.name for t in steward_tools(backend, actions=["retrain-model"], knowledge=False)] == [
        "retrain-model"
    ]
    with pytest.raises(ValueError, match=r"actions: drop-table not in the catalog .*rollback-model"):
        steward_tools(backend, actions=["drop-table"])


# ---- a real LangGraph agent, its outcomes


def test_an_approved_call_returns_the_runs_result_to_the_agent(
    backend: ScriptedBackend, pool: ThreadPoolExecutor
) -> None:
    """The agent's tool call waits while the request is pending; once approved and run, the model gets
    the run's summary and output, and the request as the artifact."""
    run = _agent_run(pool, steward_tools(backend, timeout=WAIT), _call("rollback-model", ROLLBACK_ARGS))
    pending = backend.next_request()
    assert pending.action == "rollback-model" and pending.reason == "error rate doubled"
    assert pending.parameters == {"model": "fraud-scorer", "version": 11, "env": "prod"}
    assert not run.done()
    backend.finish(pending.id, "succeeded", result=DONE)
    (message,) = run.result(timeout=WAIT)
    assert message.status == "success" and message.tool_call_id == "call-1"
    assert message.content == "rollback-model succeeded\n\nproduction -> fraud-scorer v11"
    assert message.artifact["id"] == pending.id and message.artifact["status"] == "succeeded"


def test_a_rejection_returns_the_reviewers_reason_as_human_in_the_loop_does(
    backend: ScriptedBackend, pool: ThreadPoolExecutor
) -> None:
    """A reviewer's reject reaches the model as HumanInTheLoopMiddleware's own reject message."""
    call = _call("rollback-model", ROLLBACK_ARGS)
    run = _agent_run(pool, steward_tools(backend, timeout=WAIT), call)
    backend.finish(backend.next_request().id, "rejected", rejection_reason="v11 had the leak; use v10")
    (message,) = run.result(timeout=WAIT)
    theirs = _answer_message(call, {"type": "reject", "message": "v11 had the leak; use v10"})
    assert (message.content, message.status, message.name) == (theirs.content, theirs.status, theirs.name)
    assert "v11 had the leak; use v10" in str(message.content)


def test_a_rejection_without_a_reason_reads_as_human_in_the_loops_too(
    backend: ScriptedBackend, pool: ThreadPoolExecutor
) -> None:
    """A reject with no reason is worded as HumanInTheLoopMiddleware's, with the request's id."""
    call = _call("rollback-model", ROLLBACK_ARGS)
    run = _agent_run(pool, steward_tools(backend, timeout=WAIT), call)
    pending = backend.next_request()
    backend.finish(pending.id, "rejected")
    (message,) = run.result(timeout=WAIT)
    theirs = _answer_message({**call, "id": pending.id}, {"type": "reject"})
    assert message.content == theirs.content and message.status == "error"


@pytest.mark.parametrize(
    ("status", "changes", "expected"),
    [
        ("expired", {}, "expired without approval"),
        ("cancelled", {}, "was cancelled before it ran"),
        ("failed", {"result": RunResult(ok=False, summary="MLflow said 404", output="")}, "ran and failed"),
        ("needs_attention", {}, "needs a person's attention"),
    ],
)
def test_every_other_outcome_says_what_happened(
    backend: ScriptedBackend, pool: ThreadPoolExecutor, status: str, changes: dict[str, Any], expected: str
) -> None:
    """Expired, cancelled, failed and interrupted requests each tell the model so, as an error."""
    run = _agent_run(pool, steward_tools(backend, timeout=WAIT), _call("rollback-model", ROLLBACK_ARGS))
    backend.finish(backend.next_request().id, status, **changes)
    (message,) = run.result(timeout=WAIT)
    assert expected in str(message.content) and message.status == "error"
    if status == "failed":
        assert "MLflow said 404" in str(message.content)


def test_a_denied_call_returns_the_policys_reason_at_once() -> None:
    """A request the policy denies answers the model at once with the reason and the rule."""
    backend = ScriptedBackend(decide=lambda new: "deny")
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False)
    message = rollback.invoke(_call("rollback-model", ROLLBACK_ARGS))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert "denied by policy: the rule's reason (rule `a-rule`)" in str(message.content)


def test_a_call_still_pending_at_the_timeout_says_so_with_the_card(backend: ScriptedBackend) -> None:
    """When the tool's timeout runs out first, the model learns it is pending and where the card is."""
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False, timeout=0.2)
    message = rollback.invoke(_call("rollback-model", ROLLBACK_ARGS))
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert "still pending" in str(message.content) and "0 of 2 approvals" in str(message.content)
    assert "runs if the approvers approve it later" in str(message.content)
    assert "https://example.slack.com/archives/C1/p1" in str(message.content)


def test_cancel_on_timeout_withdraws_a_request_still_waiting(backend: ScriptedBackend) -> None:
    """With cancel_on_timeout, a request nobody decided in time is cancelled, and the model told so."""
    (rollback,) = steward_tools(
        backend, actions=["rollback-model"], knowledge=False, timeout=0.2, cancel_on_timeout=True
    )
    message = rollback.invoke(_call("rollback-model", ROLLBACK_ARGS))
    assert isinstance(message, ToolMessage) and "was cancelled before it ran" in str(message.content)
    (request,) = backend.requests.values()
    assert request.status == "cancelled"


def test_a_call_without_a_reason_asks_for_one_and_requests_nothing(backend: ScriptedBackend) -> None:
    """The reason is required: a call with a blank one is answered with what is missing."""
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False)
    message = rollback.invoke(_call("rollback-model", {**ROLLBACK_ARGS, "reason": "  "}))
    assert isinstance(message, ToolMessage) and "needs a `reason`" in str(message.content)
    assert backend.received == []


def test_a_refusal_by_steward_names_the_field(backend: ScriptedBackend) -> None:
    """An ApiError from the backend (bad parameter, limit) reaches the model with its field, no traceback."""

    def refuse(new: NewRequest) -> str:
        raise ApiError(422, "invalid_parameter", "must be at least 1", field="parameters.version")

    backend.decide = refuse
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False)
    text = rollback.invoke({**ROLLBACK_ARGS, "version": 0})
    assert text == (
        "Steward refused the tool call for `rollback-model`: must be at least 1 (field `parameters.version`)."
    )


def test_a_replayed_tool_call_finds_the_same_request(backend: ScriptedBackend) -> None:
    """The model's tool call id is the idempotency key: the same call made twice asks only once."""
    backend.decide = lambda new: "allow"
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False)
    first = rollback.invoke(_call("rollback-model", ROLLBACK_ARGS, "call-7"))
    second = rollback.invoke(_call("rollback-model", ROLLBACK_ARGS, "call-7"))
    assert [new.idempotency_key for new in backend.received] == ["langchain:call-7", "langchain:call-7"]
    assert len(backend.requests) == 1 and first.content == second.content
    assert second.artifact["replayed"] is True


def test_an_action_with_its_own_reason_parameter_shares_it(backend: ScriptedBackend) -> None:
    """retrain-model has a `reason` parameter: the model gives one reason, sent as both."""
    backend.decide = lambda new: "allow"
    (retrain,) = steward_tools(backend, actions=["retrain-model"], knowledge=False)
    schema = retrain.tool_call_schema
    assert isinstance(schema, dict) and "reason" in schema["required"]
    assert "goes to the audit log" in schema["properties"]["reason"]["description"]
    retrain.invoke({"model": "fraud-scorer", "reason": "labels landed"})
    (new,) = backend.received
    assert new.reason == "labels landed" and new.parameters == {
        "model": "fraud-scorer",
        "reason": "labels landed",
    }


def test_the_async_tool_waits_without_blocking_the_event_loop(backend: ScriptedBackend) -> None:
    """`ainvoke` runs the backend in a thread: the loop stays free while the approvers decide."""
    (rollback,) = steward_tools(backend, actions=["rollback-model"], knowledge=False)

    async def scenario() -> Any:
        call = asyncio.ensure_future(rollback.ainvoke(_call("rollback-model", ROLLBACK_ARGS)))
        pending = await asyncio.to_thread(backend.next_request)
        assert not call.done()
        backend.finish(pending.id, "succeeded", result=DONE)
        return await asyncio.wait_for(call, timeout=WAIT)

    message = asyncio.run(scenario())
    assert isinstance(message, ToolMessage) and message.status == "success"


def test_waiting_rides_out_a_restarting_replica(backend: ScriptedBackend) -> None:
    """A 503 while long-polling is waited out (as Retry-After says); a 404 is not."""
    backend.decide = lambda new: "allow"
    info = backend.request(NewRequest(action="rollback-model", reason="r", parameters={}))
    pending = backend.finish(info.id, "succeeded").model_copy(update={"status": "pending", "final": False})
    backend.failures = [ApiError(503, "unavailable", "restarting", retry_after=0.01)]
    assert wait_for_outcome(backend, pending, timeout=WAIT).status == "succeeded"
    backend.failures = [ApiError(404, "not_found", "no such request")]
    with pytest.raises(ApiError, match="no such request"):
        wait_for_outcome(backend, pending, timeout=WAIT)


# ---- the knowledge base


def test_ask_knowledge_base_returns_the_answer_with_numbered_sources(backend: ScriptedBackend) -> None:
    """The answer, its confidence and its sources, as the model reads them."""
    backend.answer = AnswerInfo(
        answer="Move the production alias back [1].",
        abstained=False,
        confidence=0.82,
        citations=[Citation(title="Model rollback", path="runbooks/model-rollback.md", section="How")],
    )
    ask = next(t for t in steward_tools(backend) if t.name == ASK_TOOL)
    text = ask.invoke({"question": "how do I roll back?"})
    assert text == (
        "Move the production alias back [1].\n\n(confidence 0.82)\n\n"
        "Sources:\n[1] Model rollback (runbooks/model-rollback.md § How)"
    )
    assert backend.questions == ["how do I roll back?"]


def test_ask_knowledge_base_says_when_there_is_no_answer(backend: ScriptedBackend) -> None:
    """An abstention says there is no confident answer and who might know."""
    backend.answer = AnswerInfo(answer="", abstained=True, confidence=0.1, citations=[], owners=["@dana"])
    ask = next(t for t in steward_tools(backend) if t.name == ASK_TOOL)
    text = ask.invoke({"question": "what is our GPU budget?"})
    assert "no confident answer" in text and "People who might know: @dana" in text


# ---- guarded(): an existing tool behind Steward

CALLED: list[dict[str, Any]] = []


@tool
def rollback_model(model: str, version: int, env: str = "prod") -> str:
    """Roll a model back (the team's own tool, before Steward)."""
    CALLED.append({"model": model, "version": version, "env": env})
    return "rolled back"


def test_a_guarded_tool_becomes_a_request_and_its_function_never_runs(
    backend: ScriptedBackend, pool: ThreadPoolExecutor
) -> None:
    """The wrapped tool keeps its name and arguments; the call is a request for the catalog action, the
    agent gets Steward's result, and the local function is not called."""
    CALLED.clear()
    gated = guarded(rollback_model, backend, action="rollback-model")
    assert gated.name == "rollback_model"
    run = _agent_run(
        pool, [gated], _call("rollback_model", {"model": "fraud-scorer", "version": 11, "reason": "r"})
    )
    pending = backend.next_request()
    assert (pending.action, pending.parameters) == (
        "rollback-model",
        {"model": "fraud-scorer", "version": 11},
    )
    backend.finish(pending.id, "succeeded", result=DONE)
    (message,) = run.result(timeout=WAIT)
    assert message.content == "rollback-model succeeded\n\nproduction -> fraud-scorer v11"
    assert CALLED == []


def test_a_guarded_tool_checks_its_own_arguments_first(backend: ScriptedBackend) -> None:
    """Arguments the tool's schema refuses are answered, naming the field, before anything is asked."""
    gated = guarded(rollback_model, backend, action="rollback-model")
    text = gated.invoke({"model": "fraud-scorer", "version": "eleven", "reason": "r"})
    assert "invalid arguments: version:" in text
    assert backend.received == []


def test_a_guarded_tool_can_take_its_reason_from_the_arguments(backend: ScriptedBackend) -> None:
    """With reason_from, the model is not asked for a reason; it is computed from the call."""
    backend.decide = lambda new: "allow"
    gated = guarded(
        rollback_model,
        backend,
        action="rollback-model",
        reason_from=lambda a: f"agent rolls back {a['model']}",
    )
    schema = gated.tool_call_schema
    assert isinstance(schema, dict) and "reason" not in schema["properties"]
    gated.invoke({"model": "fraud-scorer", "version": 11})
    assert backend.received[0].reason == "agent rolls back fraud-scorer"


def test_guarding_a_tool_with_no_catalog_action_is_refused(backend: ScriptedBackend) -> None:
    """The action defaults to the tool's name, and must be in the catalog the agent may request."""
    with pytest.raises(ValueError, match=r"action: 'rollback_model' is not in the catalog"):
        guarded(rollback_model, backend)


# ---- the example (docs/examples/langgraph_agent.py)


def _example() -> Any:
    """The example script as a module."""
    path = Path(__file__).resolve().parents[1] / "docs" / "examples" / "langgraph_agent.py"
    spec = importlib.util.spec_from_file_location("langgraph_agent_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the scripted model's annotations through it
    spec.loader.exec_module(module)
    return module


def test_the_example_agent_asks_then_requests_and_reports_the_outcome(
    backend: ScriptedBackend, pool: ThreadPoolExecutor, capsys: pytest.CaptureFixture[str]
) -> None:
    """The example's scripted model checks the runbook, requests the rollback and reports the result."""
    example = _example()
    backend.answer = AnswerInfo(answer="Move the alias back.", abstained=False, confidence=0.9, citations=[])
    run = pool.submit(example.run, example.build_agent(backend, timeout=WAIT), example.QUESTION)
    backend.finish(backend.next_request().id, "succeeded", result=DONE)
    messages = run.result(timeout=WAIT)
    assert backend.questions == ["How do we roll back a production model?"]
    assert (
        messages[-1].content == "Steward answered: rollback-model succeeded\n\nproduction -> fraud-scorer v11"
    )
    assert "rollback-model [success]" in capsys.readouterr().out


# ---- end to end: the real agent API of a served Steward, the approvals in the fake Slack

APPROVER_1, APPROVER_2, OWNER = "U0000MLP01", "U0000MLP02", "U0000OWNER"
POLICY = {
    "00-groups.yaml": """
        groups:
          ml-platform: [U0000MLP01, U0000MLP02, U0000MLP03]
        """,
    "10-actions.yaml": f"""
        actions:
          rollback-model:
            description: Move a registered model's production alias back to an earlier version.
            risk: high
            idempotent: true
            channel: {CHANNEL}
            executor: {{kind: webhook, url: "${{ROLLBACK_WEBHOOK_URL}}", secret_env: ACTIONS_WEBHOOK_SECRET}}
            params:
              model: {{pattern: "[a-z][a-z0-9-]{{1,62}}"}}
              version: {{type: integer, minimum: 1}}
              env: {{enum: [staging, prod]}}
        rules:
          - name: rollback-two-approvers
            actions: rollback-model
            outcome: require_approval
            approval: {{count: 2, groups: [ml-platform], within_minutes: 30}}
            reason: Rollbacks need two approvers from ml-platform.
        """,
}


@dataclass
class Served:
    """Steward serving its Slack app and agent API on loopback, an agent's client, the clock it reads."""

    bot: RunningBot
    steward: StewardClient
    token: str
    clock: SettableClock
    hook: WebhookReceiver

    def card(self) -> dict[str, Any]:
        """The approval card the agent's request posted in the channel, once it is there."""

        def cards() -> list[dict[str, Any]]:
            return [m for m in self.bot.bot_posts(CHANNEL) if "Approval needed" in blocks_text(m)]

        deadline = time.monotonic() + WAIT
        while not cards():
            assert time.monotonic() < deadline, "no approval card was posted"
            time.sleep(0.02)
        (card,) = cards()
        return card

    def reject(self, reason: str) -> None:
        """An approver clicks Reject on the card and gives the reason in Slack's modal."""
        self.bot.click(self.card(), ACTION_REJECT, user=APPROVER_1)
        self.bot.settle()
        view = self.bot.slack.calls("views.open")[-1].args["view"]
        value = {"type": "plain_text_input", "value": reason}
        values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: value}}
        assert self.bot.submit_view(view, values, user=APPROVER_1).status == 200
        self.bot.settle()


TUESDAY_10_UTC = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()


def _rollback_services(
    make_services: Callable[..., Services],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
    clock: SettableClock,
) -> tuple[Services, Agent, str]:
    """Services on the two-approver rollback policy (its webhook is the receiver), an agent and its token."""
    monkeypatch.setenv("ROLLBACK_WEBHOOK_URL", receiver.url)
    services = make_services(policies_dir=write_tree(tmp_path / "policies", POLICY), clock=clock)
    agent, token = services.agent_registry.add("rollback-bot", OWNER)
    return services, agent, token


@pytest.fixture
def served(
    make_services: Callable[..., Services],
    small_kb: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
) -> Iterator[Served]:
    """`steward serve` with the agent API (as tests/slackbot.py serves it), the fake Slack, the small
    knowledge base, a two-approver rollback and an agent's token."""
    clock = SettableClock(TUESDAY_10_UTC)
    services, _, token = _rollback_services(make_services, tmp_path, monkeypatch, receiver, clock)
    services.ingestor.run([small_kb])
    with running_bot(services, agents=True) as bot, StewardClient(bot.base, token) as steward:
        yield Served(bot, steward, token, clock, receiver)


E2E_CALL = _call("rollback-model", {**ROLLBACK_ARGS, "env": "prod"}, "call-e2e")


def test_two_approvals_in_slack_give_the_agent_the_result(served: Served, pool: ThreadPoolExecutor) -> None:
    """The agent's call posts a card naming the agent; two approvers click; the action runs once and
    the agent gets its result."""
    run = _agent_run(pool, steward_tools(served.steward, timeout=WAIT), E2E_CALL)
    card = served.card()
    assert "rollback-bot" in blocks_text(card) and "error rate doubled" in blocks_text(card)
    served.bot.click(card, ACTION_APPROVE, user=APPROVER_1)
    served.bot.settle()
    assert not run.done() and served.hook.requests == []
    served.bot.click(served.bot.message(CHANNEL, card["ts"]), ACTION_APPROVE, user=APPROVER_2)
    served.bot.settle()
    (message,) = run.result(timeout=WAIT)
    result = message.artifact["result"]
    assert message.status == "success" and result["ok"] and "HTTP 200" in result["summary"]
    assert message.content == f"{result['summary']}\n\n{result['output']}"
    assert len(served.hook.requests) == 1
    assert message.artifact["approvals"]["approvers"] == [APPROVER_1, APPROVER_2]


def test_a_reject_in_slack_gives_the_agent_the_reviewers_reason(
    served: Served, pool: ThreadPoolExecutor
) -> None:
    """The reviewer's reason, typed in Slack's modal, is what the agent's tool returns."""
    run = _agent_run(pool, steward_tools(served.steward, timeout=WAIT), E2E_CALL)
    served.reject("v11 leaks PII")
    (message,) = run.result(timeout=WAIT)
    assert message.content == "User rejected the tool call for `rollback-model` with reason: v11 leaks PII"
    assert message.status == "error" and served.hook.requests == []


def test_a_request_nobody_approves_in_time_tells_the_agent_it_expired(
    served: Served, pool: ThreadPoolExecutor
) -> None:
    """Past the approval window, housekeeping expires the request and the waiting agent is told."""
    run = _agent_run(pool, steward_tools(served.steward, timeout=WAIT), E2E_CALL)
    served.card()
    served.clock.now += 31 * 60
    assert served.bot.app.actions is not None
    assert len(served.bot.app.actions.sweep(served.bot.app.bolt.client)) == 1
    (message,) = run.result(timeout=WAIT)
    assert "expired without approval" in str(message.content) and message.status == "error"
    assert served.hook.requests == []


def test_the_example_runs_against_a_served_steward(
    served: Served,
    pool: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`docs/examples/langgraph_agent.py --fake` with STEWARD_URL and STEWARD_AGENT_TOKEN: it asks the
    knowledge base through the API, requests the rollback, and prints the reviewer's reason."""
    monkeypatch.setenv("STEWARD_URL", served.bot.base)
    monkeypatch.setenv("STEWARD_AGENT_TOKEN", served.token)
    run = pool.submit(_example().main, ["--fake", "--timeout", str(WAIT)])
    served.reject("not during the incident review")
    assert run.result(timeout=WAIT) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{ASK_TOOL} [success]: ") for line in lines), lines
    assert any(line.startswith("[1] Model rollback (runbooks/model-rollback.md") for line in lines), lines
    rejected = "User rejected the tool call for `rollback-model` with reason: not during the incident review"
    assert f"rollback-model [error]: {rejected}" in lines
    assert lines[-1] == f"agent: Steward answered: {rejected}"


class Recording:
    """A backend that passes every call on and keeps the requests it created, for the test to decide."""

    def __init__(self, backend: StewardBackend) -> None:
        self.backend = backend
        self.created: queue.Queue[RequestInfo] = queue.Queue()

    def actions(self) -> list[ActionInfo]:
        return self.backend.actions()

    def request(self, new: NewRequest) -> RequestInfo:
        info = self.backend.request(new)
        self.created.put(info)
        return info

    def get(self, request_id: str, wait: float = 0.0) -> RequestInfo:
        return self.backend.get(request_id, wait)

    def cancel(self, request_id: str) -> RequestInfo:
        return self.backend.cancel(request_id)

    def ask(self, question: str) -> AnswerInfo:
        return self.backend.ask(question)


def test_the_tools_work_over_the_in_process_gateway_too(
    make_services: Callable[..., Services],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver: WebhookReceiver,
    pool: ThreadPoolExecutor,
) -> None:
    """The same tools over `Services.agent_gateway` instead of HTTP: two approvals, one run, the result."""
    clock = SettableClock(TUESDAY_10_UTC)
    services, agent, _ = _rollback_services(make_services, tmp_path, monkeypatch, receiver, clock)
    backend = Recording(services.agent_gateway.for_agent(agent))
    run = _agent_run(pool, steward_tools(backend, timeout=WAIT), E2E_CALL)
    pending = backend.created.get(timeout=WAIT)
    assert pending.status == "pending" and pending.approvals.required == 2
    for approver in (APPROVER_1, APPROVER_2):
        services.guarded_actions.approve(pending.id, approver, CHANNEL)
    (message,) = run.result(timeout=WAIT)
    assert message.status == "success" and message.artifact["id"] == pending.id
    assert len(receiver.requests) == 1


def test_the_example_with_a_wrong_token_says_so_without_a_traceback(
    served: Served, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused token is one line on stderr and exit status 1."""
    monkeypatch.setenv("STEWARD_URL", served.bot.base)
    monkeypatch.setenv("STEWARD_AGENT_TOKEN", served.token + "x")
    assert _example().main(["--fake"]) == 1
    assert capsys.readouterr().err == "Steward refused: the token is not valid (Authorization)\n"
