"""An LLM proposing action requests through tool calling: it sees only the person's words, proposes, and
the person confirms; nothing is requested (let alone run) without that confirmation and the policy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from bot.actions.approvals import ApprovalService
from bot.actions.models import ActionSpec, ExecutorSpec, ParamSpec
from bot.actions.policy.engine import load_policy
from bot.actions.proposals import Proposal, Proposer, action_tool, read_tool_calls
from bot.slack.payloads import ACTION_CONFIRM_PROPOSAL, ACTION_DISMISS_PROPOSAL, ACTION_HELPFUL
from bot.store.action_requests import ActionRequestStore, action_requests
from bot.wiring import Services
from tests.conftest import ROOT
from tests.fakes.llm import ToolCallingFake, tool_call
from tests.slackbot import CHANNEL, USER, RunningBot, blocks_text

TUESDAY = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC).timestamp()
ROLLBACK = tool_call("rollback-model", model="fraud-scorer", version=12, env="prod")
FREE_WORDS = "could we get fraud-scorer back on v12 in prod please, the new one misbehaves"


@pytest.fixture
def model() -> ToolCallingFake:
    """The LLM: calls no tool unless a test says otherwise."""
    return ToolCallingFake(responses=[AIMessage(content="NONE")])


@pytest.fixture
def services(
    make_services: Callable[..., Services], small_kb: Path, tmp_path: Path, model: ToolCallingFake
) -> Services:
    """Services with the fake LLM configured, the starter policies and a Tuesday-morning clock."""
    policies = shutil.copytree(ROOT / "policies", tmp_path / "policies")
    built = make_services(chat_model=model, policies_dir=policies)
    built.ingestor.run([small_kb])
    built.override(
        "approvals",
        ApprovalService(ActionRequestStore(built.records), lambda: built.policy(), clock=lambda: TUESDAY),
    )
    return built


def _requests(services: Services) -> int:
    """How many action requests exist (proposals are not requests)."""
    with services.records.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(action_requests)).scalar_one())


def _proposal(bot: RunningBot, thread_ts: str) -> dict[str, object]:
    (message,) = [
        m for m in bot.bot_posts(CHANNEL, thread_ts) if "I read this as a request" in blocks_text(m)
    ]
    return message


# ---- the tools and the reading of tool calls


def test_each_action_is_a_tool_with_typed_parameters() -> None:
    """Types, enums, ranges and required parameters come from the catalog."""
    policy = load_policy(ROOT / "policies")
    tool = action_tool(policy.actions["rollback-model"])["function"]
    assert tool["name"] == "rollback-model"
    properties = tool["parameters"]["properties"]
    assert properties["version"]["type"] == "integer" and properties["version"]["minimum"] == 1
    assert properties["env"]["enum"] == ["staging", "prod"]
    assert set(tool["parameters"]["required"]) == {"model", "version", "env"}


def test_secret_parameters_are_never_shown_to_the_llm() -> None:
    """A secret parameter is not in the tool, and a value the model makes up for it is dropped."""
    spec = ActionSpec(
        name="set-key",
        description="Set an API key",
        params=(ParamSpec(name="service"), ParamSpec(name="key", secret=True)),
        executor=ExecutorSpec(kind="webhook", url="http://127.0.0.1:9/"),
    )
    assert set(action_tool(spec)["function"]["parameters"]["properties"]) == {"service"}
    policy = dataclasses.replace(load_policy(ROOT / "policies"), actions={"set-key": spec})
    reply = tool_call("set-key", service="gateway", key="sk-live-123")
    assert read_tool_calls(reply, policy) == Proposal("set-key", {"service": "gateway"})


def test_only_calls_of_catalog_actions_with_their_own_parameters_are_read() -> None:
    """An invented tool is ignored; unknown arguments are dropped; values become text as typed."""
    policy = load_policy(ROOT / "policies")
    invented = AIMessage(
        content="",
        tool_calls=[
            {"name": "delete-everything", "args": {}, "id": "1"},
            {"name": "scale-service", "args": {"service": "api", "replicas": 3.0, "shell": "rm"}, "id": "2"},
        ],
    )
    assert read_tool_calls(invented, policy) == Proposal("scale-service", {"service": "api", "replicas": "3"})
    assert read_tool_calls(AIMessage(content="NONE"), policy) is None


def test_the_model_sees_the_catalog_and_the_persons_words_only() -> None:
    """No retrieved documents, no thread: the system prompt, the tools and the message."""
    model = ToolCallingFake(responses=[ROLLBACK])
    policy = load_policy(ROOT / "policies")
    proposal = Proposer(model, timeout_seconds=5).propose(FREE_WORDS, policy)
    assert proposal == Proposal("rollback-model", {"model": "fraud-scorer", "version": "12", "env": "prod"})
    ((system, human),) = model.prompts
    assert isinstance(system, SystemMessage) and "runs nothing" in str(system.content)
    assert isinstance(human, HumanMessage) and human.content == FREE_WORDS
    assert {tool["function"]["name"] for tool in model.tools[0]} == set(policy.actions)


def test_a_failing_slow_or_toolless_model_proposes_nothing() -> None:
    """Errors and timeouts mean "not a request"; a model without tool calling is not asked."""
    policy = load_policy(ROOT / "policies")
    slow = ToolCallingFake(responses=[ROLLBACK], sleep=2)
    assert Proposer(slow, timeout_seconds=0.2).propose(FREE_WORDS, policy) is None
    broken = ToolCallingFake(responses=[])  # indexing an empty list fails inside the model
    assert Proposer(broken, timeout_seconds=5).propose(FREE_WORDS, policy) is None
    assert Proposer(FakeListChatModel(responses=["x"]), timeout_seconds=5).propose(FREE_WORDS, policy) is None


# ---- in Slack


def test_free_words_become_a_proposal_and_nothing_is_requested_yet(
    bot: RunningBot, model: ToolCallingFake
) -> None:
    """The proposal names the request and asks the person to confirm; no card, no request."""
    model.responses = [ROLLBACK]
    ts = bot.say(FREE_WORDS)
    bot.settle()
    text = blocks_text(_proposal(bot, ts))
    assert "`rollback-model model=fraud-scorer version=12 env=prod`" in text
    assert "Proposed by the LLM" in text and ACTION_CONFIRM_PROPOSAL in text
    assert not any("Approval needed" in blocks_text(m) for m in bot.bot_posts(CHANNEL, ts))
    assert _requests(bot.services) == 0


def test_confirming_submits_the_request_to_the_policy(bot: RunningBot, model: ToolCallingFake) -> None:
    """Request it: the same approval card as `/steward run` (a prod rollback needs two approvers)."""
    model.responses = [ROLLBACK]
    ts = bot.say(FREE_WORDS)
    bot.settle()
    proposal = _proposal(bot, ts)
    assert bot.click(proposal, ACTION_CONFIRM_PROPOSAL).status == 200
    bot.settle()
    assert bot.click(proposal, ACTION_CONFIRM_PROPOSAL).status == 200  # a double click
    bot.settle()
    cards = [m for m in bot.bot_posts(CHANNEL, ts) if "Approval needed" in blocks_text(m)]
    assert len(cards) == 1 and _requests(bot.services) == 1
    assert "0 of 2" in blocks_text(cards[0])
    updated = bot.message(CHANNEL, str(proposal["ts"]))
    assert f"<@{USER}> requested" in blocks_text(updated) and ACTION_CONFIRM_PROPOSAL not in blocks_text(
        updated
    )


def test_only_the_person_who_asked_can_confirm(bot: RunningBot, model: ToolCallingFake) -> None:
    """Someone else's click is refused privately; nothing is requested."""
    model.responses = [ROLLBACK]
    ts = bot.say(FREE_WORDS)
    bot.settle()
    bot.click(_proposal(bot, ts), ACTION_CONFIRM_PROPOSAL, user="USOMEONE")
    bot.settle()
    whispers = [c.args for c in bot.slack.calls("chat.postEphemeral") if c.args["user"] == "USOMEONE"]
    assert whispers and f"Only <@{USER}>" in str(whispers[-1]["text"])
    assert _requests(bot.services) == 0


def test_a_dismissed_or_expired_proposal_requests_nothing(bot: RunningBot, model: ToolCallingFake) -> None:
    """Dismiss withdraws it; a confirmation after ten minutes is refused."""
    model.responses = [ROLLBACK]
    first = bot.say(FREE_WORDS)
    bot.settle()
    bot.click(_proposal(bot, first), ACTION_DISMISS_PROPOSAL)
    bot.settle()
    assert "dismissed the proposal" in blocks_text(bot.bot_posts(CHANNEL, first)[0])
    second = bot.say(FREE_WORDS)
    bot.settle()
    proposals = bot.app.actions.proposals if bot.app.actions is not None else None
    assert proposals is not None
    proposals.clock = lambda: 9e12  # far in the future
    bot.click(_proposal(bot, second), ACTION_CONFIRM_PROPOSAL)
    bot.settle()
    assert "expired" in blocks_text(bot.bot_posts(CHANNEL, second)[0])
    assert _requests(bot.services) == 0


def test_an_incomplete_proposal_says_what_is_missing(bot: RunningBot, model: ToolCallingFake) -> None:
    """The model left the version out: the thread gets the problem and the exact command, no buttons."""
    model.responses = [tool_call("rollback-model", model="fraud-scorer", env="prod")]
    ts = bot.say("get fraud-scorer back to the old one in prod")
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert "version: missing" in reply["text"] and ACTION_CONFIRM_PROPOSAL not in blocks_text(reply)


def test_a_question_is_answered_when_the_llm_calls_no_tool(bot: RunningBot, model: ToolCallingFake) -> None:
    """The model replies NONE: the mention is answered from the knowledge base as before."""
    ts = bot.say("How do I roll back the fraud-scorer model in production?")
    bot.settle()
    (answer,) = bot.bot_posts(CHANNEL, ts)
    assert ACTION_HELPFUL in blocks_text(answer) and "I read this as a request" not in blocks_text(answer)


def test_words_naming_two_environments_get_the_reading_not_a_proposal(
    bot: RunningBot, model: ToolCallingFake
) -> None:
    """The model picks one environment; the person named two: no proposal, the reading instead."""
    model.responses = [ROLLBACK]
    ts = bot.say("could we get fraud-scorer back on v12 in staging, or was it prod")
    bot.settle()
    (reply,) = bot.bot_posts(CHANNEL, ts)
    assert "I read env as both `staging` and `prod`; say which one" in reply["text"]
    assert ACTION_CONFIRM_PROPOSAL not in blocks_text(reply) and _requests(bot.services) == 0


def test_a_proposal_in_a_group_dm_is_not_offered(bot: RunningBot, model: ToolCallingFake) -> None:
    """In a group DM the approvers cannot see the request: Steward says where to ask, and offers nothing."""
    model.responses = [ROLLBACK]
    text = f"<@{bot.slack.bot_user_id}> {FREE_WORDS}"
    ts = bot.slack.add_message("G0GROUPDM", text, USER)
    bot.event(
        {
            "type": "app_mention",
            "channel": "G0GROUPDM",
            "channel_type": "mpim",
            "user": USER,
            "text": text,
            "ts": ts,
        }
    )
    bot.settle()
    (reply,) = bot.bot_posts("G0GROUPDM", ts)
    assert "Requests are made in a channel" in reply["text"]
    assert ACTION_CONFIRM_PROPOSAL not in blocks_text(reply) and _requests(bot.services) == 0
