"""Exactly once for AI agents' requests across replicas, through MCP (issue 17).

Two `steward serve` replicas share PostgreSQL behind the fake Slack. An agent's official MCP client
(streamable HTTP, `ClientSession`) connects to /mcp of either replica and asks for `pause-pipeline`, an
`mcp` action whose executor calls a downstream MCP server (tests/support/mcp_downstream.py) that records
every tool call as one line: exact side-effect counts. The policy wants two approvals from ml-platform,
not counting the agent's owner. Click storms (2-10 signed Approve clicks per request, to either replica)
approve most requests; some are rejected through the modal, some cancelled by the agent, some expire
(a one-minute window, so the test waits for it); replica 0 is SIGKILLed while it runs a slow tool call
(`drain-pipeline`: the downstream's `wait`) and restarted. Then the record holds exactly one call per
request that succeeded and none for the others, `get_request` tells the agent what the database says,
and the audit chain verifies. `steward mcp` over stdio, against a replica, is tested end to end too; and
replicas starting together on a new database create the knowledge catalog's tables once.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import anyio
import anyio.to_thread
import httpx2
import pytest
import sqlalchemy as sa
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, TextContent

from bot.agents.models import MCP_PATH, RequestInfo
from bot.agents.registry import AgentRegistry
from bot.slack.payloads import ACTION_REJECT, BLOCK_REJECT_REASON, INPUT_REJECT_REASON, RejectMetadata
from bot.store.action_requests import (
    FINISHED,
    ActionRequestStore,
    RequestView,
    action_requests,
    actions_transaction,
    audit_log,
)
from bot.store.agents import AgentStore
from bot.store.audit_verify import verify_log
from bot.store.catalog import Catalog, CatalogError
from tests.audit_support import shared_key
from tests.support.clock import starter_policies
from tests.support.mcp_downstream import recorded_calls, stdio_command
from tests.support.replicas import Replica, approve_click, replica_env, send, start_replicas
from tests.support.slack import FakeSlack, form_body

T = TypeVar("T")
FORM = "application/x-www-form-urlencoded"
CHANNEL = "C0PIPELINES"  # STEWARD_AGENT_CHANNEL: where the agent's cards go
AGENT = "pipeline-bot"
OWNER = "U0000MLP03"  # in ml-platform, but barred from approving its agent's requests
ELIGIBLE = ["U0000MLP01", "U0000MLP02"]  # the only people whose approvals count
REFUSED = [OWNER, "U0000SRE01"]  # the owner, and someone outside ml-platform
STEWARD = str(Path(sys.executable).with_name("steward"))
PLAN = {"approve": 24, "reject": 6, "cancel": 5, "expire": 4}  # requests per fate (plus the killed run)
POLICY = """\
actions:
  pause-pipeline:
    description: Pause a data pipeline through the platform team's MCP server
    risk: medium
    idempotent: false
    params:
      pipeline: {{pattern: "[a-z][a-z0-9-]{{1,40}}"}}
    executor: {{kind: mcp, program: {program}, args: {args}, tool: pause_pipeline}}
  drain-pipeline:
    description: Drain the pipelines (slow; the downstream waits before it answers)
    risk: medium
    idempotent: false
    params:
      seconds: {{type: number, minimum: 1, maximum: 60}}
    executor: {{kind: mcp, program: {program}, args: {args}, tool: wait, timeout_seconds: 120}}
rules:
  - name: agent-pause-short-window
    actions: pause-pipeline
    when: {{params: {{pipeline: {{matches: "expire-.*"}}}}, requester_in: agents}}
    outcome: require_approval
    approval: {{count: 2, groups: [ml-platform], within_minutes: 1, owner_may_approve: false}}
    reason: A trial pause is approved within the minute or not at all.
  - name: agent-pipelines-two-people
    actions: [pause-pipeline, drain-pipeline]
    when: {{requester_in: agent:{agent}}}
    outcome: require_approval
    approval: {{count: 2, groups: [ml-platform], owner_may_approve: false}}
    reason: An agent's pipeline change needs two people from ml-platform, not its owner.
"""


@dataclass
class Cluster:
    """Two replicas over one PostgreSQL database, the fake Slack in front, the downstream's record file."""

    replicas: list[Replica]
    slack: FakeSlack
    engine: sa.Engine
    record: Path
    token: str


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str) -> Iterator[Cluster]:
    """The starter policies (without the weekend freeze: replicas read the machine's clock) plus the
    pipeline actions; two replicas; the agent `pipeline-bot`, owned by an ml-platform member."""
    record = tmp_path / "downstream.jsonl"
    program, args = stdio_command(record)
    policies = starter_policies(tmp_path / "policies", freeze=False)
    (policies / "50-agent-pipelines.yaml").write_text(
        POLICY.format(program=json.dumps(program), args=json.dumps(list(args)), agent=AGENT)
    )
    (tmp_path / "digests.yaml").write_text("digests: {}\n")
    with FakeSlack() as slack:
        env = replica_env(
            slack.api_url,
            postgres_database,
            None,  # the embedded Chroma in tmp_path/data: no question is asked here
            tmp_path,
            STEWARD_POLICIES_DIR=str(policies),
            STEWARD_DIGESTS_FILE=str(tmp_path / "digests.yaml"),
            STEWARD_AGENT_CHANNEL=CHANNEL,
            STEWARD_HOUSEKEEPING_SECONDS="1",  # expiry and a dead replica's runs are noticed quickly
            # Every card goes to one channel; paced as for Slack (1 a second), 40 would take 20 s each
            # way. The fake Slack has no rate limit.
            STEWARD_CHANNEL_POSTS_PER_SECOND="50",
        )
        replicas = start_replicas(env, tmp_path, 2)
        engine = shared_key(sa.create_engine(postgres_database))  # the replicas' audit key
        try:
            assert all(replica.alive for replica in replicas), [r.log.read_text()[-2000:] for r in replicas]
            _, token = AgentRegistry(AgentStore(engine)).add(
                AGENT, OWNER, actions=["pause-pipeline", "drain-pipeline"], max_pending=100, per_minute=600
            )
            yield Cluster(replicas, slack, engine, record, token)
        finally:
            for replica in replicas:
                replica.stop()
            engine.dispose()


# ---- the agent's side: the official MCP client


def _mcp_url(replica: Replica) -> str:
    return f"http://127.0.0.1:{replica.port}{MCP_PATH}"


async def _calls(url: str, token: str, calls: list[tuple[str, dict[str, Any]]]) -> list[CallToolResult]:
    """One MCP session with /mcp at `url` (streamable HTTP, the agent's bearer token): the tool calls."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return [await session.call_tool(name, arguments) for name, arguments in calls]


def _call(cluster: Cluster, rng: random.Random, name: str, arguments: dict[str, Any]) -> CallToolResult:
    """One tool call through a live replica chosen at random (another one when it does not answer)."""
    failures = []
    for replica in rng.sample(cluster.replicas, len(cluster.replicas)):
        if not replica.alive:
            continue
        try:
            return anyio.run(_calls, _mcp_url(replica), cluster.token, [(name, arguments)])[0]
        except Exception as exc:  # a replica dying or starting: the agent tries the other one
            failures.append(repr(exc))
    raise AssertionError(f"no replica answered the MCP call {name}: {failures}")


def _on_both(cluster: Cluster, calls: list[tuple[str, dict[str, Any]]]) -> list[CallToolResult]:
    """The calls, alternately through replica 0 and replica 1: one MCP session each, both at once."""
    halves: list[list[CallToolResult]] = [[], []]

    async def through(number: int) -> None:
        replica = cluster.replicas[number]
        halves[number] = await _calls(_mcp_url(replica), cluster.token, calls[number::2])

    async def both() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(through, 0)
            group.start_soon(through, 1)

    anyio.run(both)
    return [halves[number % 2][number // 2] for number in range(len(calls))]


def _info(result: CallToolResult) -> RequestInfo:
    return RequestInfo.model_validate(result.structured_content)


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


# ---- the people's side: signed Slack requests to either replica


def _deliver(replicas: list[Replica], body: bytes, rng: random.Random) -> int:
    """As Slack does: to one replica; when it does not answer, to another (a retry)."""
    for attempt, replica in enumerate(rng.sample(replicas, len(replicas))):
        if not replica.alive:
            continue
        headers = {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": "http_error"} if attempt else {}
        try:
            return send(replica.port, body, FORM, headers)
        except OSError:
            continue
    raise AssertionError("no replica answered")


def _reject_click(request_id: str, user: str, channel: str, card_ts: str, trigger: str) -> bytes:
    """The interactivity payload of a Reject click (it opens the reason modal with `trigger`)."""
    click = approve_click(request_id, user, channel, card_ts)
    payload = json.loads(parse_qs(click.decode())["payload"][0])
    payload["actions"][0]["action_id"] = ACTION_REJECT
    payload["trigger_id"] = trigger
    return form_body(payload)


def _reject_submission(view: dict[str, Any], user: str, reason: str) -> bytes:
    """The modal's submission with the reason typed in, as Slack sends it."""
    values = {BLOCK_REJECT_REASON: {INPUT_REJECT_REASON: {"type": "plain_text_input", "value": reason}}}
    return form_body(
        {
            "type": "view_submission",
            "user": {"id": user, "username": user.lower()},
            "team": {"id": "T0FAKE"},
            "api_app_id": "A0FAKE",
            "trigger_id": "submit",
            "view": {**view, "state": {"values": values}},
        }
    )


def _opened_modal(slack: FakeSlack, trigger: str, timeout: float) -> tuple[dict[str, Any], float] | None:
    """The modal a replica opened with the click's `trigger` and when (monotonic), if within `timeout`."""
    try:
        call = slack.wait_for(
            "views.open", timeout=timeout, where=lambda c: c.args.get("trigger_id") == trigger
        )
    except AssertionError:
        return None
    view = call[0].args["view"]
    return dict(json.loads(view) if isinstance(view, str) else view), call[0].at


def _wait_for(condition: Callable[[], T | None], deadline: float, what: str) -> T:
    """The condition's first value that is not None, polled until the monotonic `deadline`."""
    while (value := condition()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def _card(store: ActionRequestStore, request_id: str) -> tuple[str, str]:
    """The channel and ts of the request's approval card (where the agent's request was posted)."""
    view = store.read(request_id)
    assert view is not None and view.channel == CHANNEL and view.thread_ts, view
    return view.channel, view.thread_ts


def _within(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether the condition holds within `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def _views(store: ActionRequestStore, ids: list[str]) -> dict[str, RequestView]:
    views = {}
    for request_id in ids:
        view = store.read(request_id)
        assert view is not None, request_id
        views[request_id] = view
    return views


def _lines(record: Path) -> Counter[str]:
    """Recorded downstream calls by what they were about: the pipeline paused, or `wait` for a drain."""
    return Counter(
        str(call["arguments"]["pipeline"]) if call["tool"] == "pause_pipeline" else str(call["tool"])
        for call in recorded_calls(record)
    )


@pytest.mark.slow
def test_agent_requests_through_mcp_run_exactly_once_across_replicas(cluster: Cluster) -> None:
    """Click storms, rejections, cancels, expiry and a replica killed mid-run: exactly one downstream
    call per succeeded request, none for the others; MCP and the database agree; the audit verifies."""
    rng = random.Random(17)
    replicas, slack, store = cluster.replicas, cluster.slack, ActionRequestStore(cluster.engine)
    started = time.monotonic()

    # 1. The agent asks, through /mcp of both replicas at once: the short-window requests first (their
    # minute runs meanwhile) and the slow drain, which replica 0 alone approves and starts running; then
    # the rest. Each call returns at once: pending approval, with the request's id.
    others = [fate for fate, count in PLAN.items() if fate != "expire" for _ in range(count)]
    rng.shuffle(others)
    fates = ["expire"] * PLAN["expire"] + ["drain", *others]
    fate_of: dict[str, str] = {}
    pipeline_of: dict[str, str] = {}
    calls: list[tuple[str, dict[str, Any]]] = []
    for number, fate in enumerate(fates):
        pipeline = f"expire-{number:02d}" if fate == "expire" else f"line-{number:02d}"
        reason = f"lag on {pipeline} <!channel>"
        if fate == "drain":
            calls.append(("drain-pipeline", {"seconds": 60, "reason": reason}))
        else:
            calls.append(("pause-pipeline", {"pipeline": pipeline, "reason": reason}))
        pipeline_of[str(number)] = "wait" if fate == "drain" else pipeline
    first = PLAN["expire"] + 1
    results = _on_both(cluster, calls[:first])
    (drain,) = [_info(result).id for result in results if _info(result).action == "drain-pipeline"]
    drain_card = _card(store, drain)
    for user in ELIGIBLE:  # replica 0 takes both approvals and runs the drain: the downstream waits
        assert send(replicas[0].port, approve_click(drain, user, *drain_card), FORM) == 200
    results += _on_both(cluster, calls[first:])
    created = time.monotonic() - started
    for number, ((tool, _arguments), result) in enumerate(zip(calls, results, strict=True)):
        info = _info(result)
        assert not result.is_error and info.status == "pending", _text(result)
        assert f"Request {info.id} ({tool}): pending approval (0 of 2 approvals" in _text(result)
        assert info.card_url and info.agent == AGENT and info.reason.endswith("<!channel>")
        fate_of[info.id] = fates[number]
        pipeline_of[info.id] = pipeline_of.pop(str(number))
    cards = {request_id: _card(store, request_id) for request_id in fate_of}
    assert "<!channel>" not in json.dumps(slack.messages(CHANNEL)), "the agent's reason is escaped"

    # 2. The storm's operations, shuffled: every approved request gets both eligible approvals plus up to
    # eight more clicks from anyone; the others at most one approval that counts, so they cannot run.
    operations: list[tuple[str, str, str]] = []
    for request_id, fate in fate_of.items():
        if fate == "approve":
            clicks = ELIGIBLE + [rng.choice(ELIGIBLE + REFUSED) for _ in range(rng.randint(0, 8))]
        elif fate == "drain":
            continue  # approved on replica 0 alone, below
        else:
            clicks = [rng.choice(ELIGIBLE)] + [rng.choice(REFUSED) for _ in range(rng.randint(0, 3))]
        operations += [("approve", request_id, user) for user in clicks]
        if fate == "reject":
            operations.append(("reject", request_id, rng.choice([*ELIGIBLE, OWNER])))  # an owner may reject
        if fate == "cancel":
            operations.append(("cancel", request_id, ""))
    rng.shuffle(operations)
    rejected_by: dict[str, str] = {}
    modal_seconds: list[float] = []  # from a Reject click to its modal (Slack's trigger lasts 3 s)
    refused_cancels: list[str] = []
    lock = threading.Lock()

    def operate(kind: str, request_id: str, user: str) -> None:
        if kind == "approve":
            assert _deliver(replicas, approve_click(request_id, user, *cards[request_id]), rng) == 200
        elif kind == "reject":
            _reject(request_id, user)
        else:
            _cancel(request_id)

    def _cancel(request_id: str) -> None:
        """The agent cancels; when the answer was lost (a replica died) and the retry is refused as too
        late, get_request says whether the first one did it."""
        result = _call(cluster, rng, "cancel_request", {"request_id": request_id})
        if result.is_error or _info(result).status != "cancelled":
            now = _info(_call(cluster, rng, "get_request", {"request_id": request_id}))
            if now.status != "cancelled":
                with lock:
                    refused_cancels.append(_text(result))

    def _reject(request_id: str, user: str) -> None:
        """Reject, then the reason in the modal; the person clicks again when no modal opened (the
        replica that took the click died before it opened it)."""
        for attempt in range(2):
            trigger = f"reject-{request_id}-{user}-{attempt}-{time.monotonic()}"
            clicked = time.monotonic()
            click = _reject_click(request_id, user, *cards[request_id], trigger)
            assert _deliver(replicas, click, rng) == 200
            opened = _opened_modal(slack, trigger, timeout=30)
            if opened is not None:
                break
        else:
            raise AssertionError(f"no rejection modal opened for {request_id}")
        view, at = opened
        assert RejectMetadata.model_validate_json(view["private_metadata"]).request_id == request_id
        reason = f"not during the backfill of {pipeline_of[request_id]}"
        assert _deliver(replicas, _reject_submission(view, user, reason), rng) == 200
        with lock:
            rejected_by[request_id] = reason
            modal_seconds.append(at - clicked)

    third = len(operations) // 3
    restart = threading.Thread(target=replicas[0].start)
    with ThreadPoolExecutor(max_workers=8) as pool:
        storm = [pool.submit(operate, *operation) for operation in operations[:third]]
        # Replica 0 is killed in the storm, while it waits for the downstream's answer to the drain.
        _wait_for(
            lambda: True if _lines(cluster.record)["wait"] else None,
            time.monotonic() + 30,
            "replica 0 to call the downstream for the drain",
        )
        replicas[0].kill()
        killed, killed_at = time.monotonic(), time.time()
        storm += [pool.submit(operate, *operation) for operation in operations[third : 2 * third]]
        restart.start()  # it loads the model while the storm goes on against replica 1
        for future in storm:
            future.result()
        restart.join()
        assert replicas[0].alive, replicas[0].log.read_text()[-2000:]
        for future in [pool.submit(operate, *operation) for operation in operations[2 * third :]]:
            future.result()
    assert refused_cancels == []

    # 3. A click or modal Slack delivered to replica 0 just before it died was acknowledged and never
    # handled: people see the card unchanged and act again, until no request is left waiting for them.
    def waiting() -> dict[str, RequestView]:
        ids = [rid for rid, fate in fate_of.items() if fate in ("approve", "reject")]
        return {rid: view for rid, view in _views(store, ids).items() if view.status == "pending"}

    deadline = time.monotonic() + 60
    while not _within(lambda: not waiting(), seconds=5):  # the clicks in flight first
        assert time.monotonic() < deadline, f"still waiting for people: {sorted(waiting())}"
        for request_id, view in waiting().items():
            if fate_of[request_id] == "reject":
                _reject(request_id, OWNER)
                continue
            for user in sorted(set(ELIGIBLE) - set(view.approvers)):
                assert _deliver(replicas, approve_click(request_id, user, *cards[request_id]), rng) == 200

    # 4. `steward mcp` over stdio, against replica 1, by the official stdio client: one request, two
    # approvals, one downstream call.
    stdio_line = _steward_mcp_end_to_end(cluster, rng)

    # 5. Every request final: the drain's run is found interrupted once its lease lapses (a minute
    # after the kill), the short-window requests expire after their minute.
    def all_final() -> dict[str, RequestView] | None:
        views = _views(store, list(fate_of))
        return views if all(view.status in FINISHED for view in views.values()) else None

    final = _wait_for(all_final, time.monotonic() + 120, "every request to be final")
    lines = _lines(cluster.record)
    states = {request_id: view.status for request_id, view in final.items()}
    report = {
        "requests": len(fate_of),
        "created_seconds": round(created, 1),
        "clicks": sum(1 for kind, _rid, _user in operations if kind == "approve"),
        "states": dict(Counter(states.values())),
        "by_fate": {f: dict(Counter(states[r] for r in fate_of if fate_of[r] == f)) for f in set(fates)},
        "downstream_calls": sum(lines.values()),
        "reject_modal_seconds_max": round(max(modal_seconds), 1),
        "final_seconds_after_the_kill": round(time.monotonic() - killed, 1),
        "seconds": round(time.monotonic() - started, 1),
    }
    print("AGENT-REPLICAS " + json.dumps(report))

    # Exactly one downstream call per succeeded request, none for rejected, cancelled or expired ones, at
    # most one for a run that needs attention; no request has two; nothing else was called.
    for request_id, state in states.items():
        made = lines[pipeline_of[request_id]]
        if state == "succeeded":
            assert made == 1, (request_id, state, made, report)
        elif state == "needs_attention":
            assert made <= 1, (request_id, state, made, report)
        else:
            assert made == 0, (request_id, state, made, report)
    assert set(lines) <= {*pipeline_of.values(), stdio_line} and max(lines.values()) == 1, lines
    # The drain is the run the kill interrupted (its call went out: one line). Runs of other requests
    # that replica 0 had begun when it died need attention too: begun before the kill, each found
    # interrupted (audited), none run again; every other approved request succeeded.
    assert states[drain] == "needs_attention" and lines["wait"] == 1, report
    by_fate = {fate: [states[r] for r in fate_of if fate_of[r] == fate] for fate in PLAN}
    assert set(by_fate["approve"]) <= {"succeeded", "needs_attention"}, report
    attention = [request_id for request_id, state in states.items() if state == "needs_attention"]
    with cluster.engine.connect() as connection:
        claimed = dict(
            connection.execute(
                sa.select(action_requests.c.request_id, action_requests.c.claimed_at).where(
                    action_requests.c.request_id.in_(attention)
                )
            ).all()
        )
        interrupted = list(
            connection.execute(
                sa.select(audit_log.c.request_id).where(audit_log.c.kind == "interrupted")
            ).scalars()
        )
        trails = connection.execute(
            sa.select(audit_log.c.request_id, audit_log.c.kind, audit_log.c.actor, audit_log.c.data)
            .where(audit_log.c.request_id.in_(set(attention) ^ set(interrupted)))
            .order_by(audit_log.c.seq)
        ).all()
    assert sorted(interrupted) == sorted(attention), [tuple(row) for row in trails]
    assert all(claimed[request_id] < killed_at for request_id in attention), (claimed, killed_at)
    assert set(by_fate["reject"]) == {"rejected"} and set(by_fate["cancel"]) == {"cancelled"}, report
    assert set(by_fate["expire"]) == {"expired"}, report
    # The owner's and the outsider's clicks never counted: only the two eligible people approved.
    assert all(set(view.approvers) <= set(ELIGIBLE) for view in final.values()), report

    # `get_request` through MCP (either replica) reports what the database says, the reviewer's reason too.
    async def through_mcp() -> list[RequestInfo]:
        ids = list(fate_of)
        got = []
        for replica, half in zip(replicas, (ids[::2], ids[1::2]), strict=True):
            results = await _calls(
                _mcp_url(replica), cluster.token, [("get_request", {"request_id": rid}) for rid in half]
            )
            got += [_info(result) for result in results]
        return got

    seen = {info.id: info for info in anyio.run(through_mcp)}
    assert {rid: info.status for rid, info in seen.items()} == states
    assert all(seen[rid].final for rid in states)
    assert {rid: seen[rid].rejection_reason for rid in rejected_by} == rejected_by
    for info in seen.values():
        if info.status == "succeeded":
            assert info.result is not None and info.result.ok, info

    # The audit chain of everything the two replicas (and the killed one) wrote verifies, as `steward
    # audit verify` reads it (one snapshot), and every run agrees with its approvals in the log.
    with actions_transaction(cluster.engine, snapshot=True) as connection:
        audit = verify_log(connection)
    assert audit.problems == [] and audit.unkeyed == 0, [str(problem) for problem in audit.problems]
    ran = sum(1 for state in states.values() if state in ("succeeded", "needs_attention"))
    assert audit.requests == ran + 1, (audit.requests, report)  # and the request over stdio


def _steward_mcp_end_to_end(cluster: Cluster, rng: random.Random) -> str:
    """`steward mcp` (STEWARD_URL: replica 1, STEWARD_AGENT_TOKEN) driven over stdio by the official client:
    a request pending at once, two approvals in Slack, get_request waits for the run; one downstream call.
    Returns the pipeline it paused."""
    replica = cluster.replicas[1]
    pipeline = "stdio-line"
    parameters = StdioServerParameters(
        command=STEWARD,
        args=["mcp"],
        env={"STEWARD_URL": f"http://127.0.0.1:{replica.port}", "STEWARD_AGENT_TOKEN": cluster.token},
    )
    store = ActionRequestStore(cluster.engine)

    def approve(request_id: str) -> None:
        card = _card(store, request_id)
        for user in ELIGIBLE:
            assert _deliver(cluster.replicas, approve_click(request_id, user, *card), rng) == 200

    async def run() -> RequestInfo:
        async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = [tool.name for tool in (await session.list_tools()).tools]
            assert {"pause-pipeline", "drain-pipeline", "get_request", "cancel_request"} <= set(names)
            created = await session.call_tool(
                "pause-pipeline", {"pipeline": pipeline, "reason": "stdio agent: lag on stdio-line"}
            )
            pending = _info(created)
            assert pending.status == "pending" and "pending approval" in _text(created), _text(created)
            await anyio.to_thread.run_sync(approve, pending.id)
            done = await session.call_tool("get_request", {"request_id": pending.id, "wait_seconds": 30})
            return _info(done)

    done = anyio.run(run)
    assert done.status == "succeeded" and done.result is not None and done.result.ok, done
    assert done.result.summary.startswith(f"paused pipeline {pipeline}"), done.result
    assert _lines(cluster.record)[pipeline] == 1
    return pipeline


def test_replicas_starting_together_create_the_catalog_once(postgres_database: str) -> None:
    """Two replicas open the knowledge catalog of a new PostgreSQL database at the same moment (as the
    replicas above do): one creates its tables, the other waits and finds them; neither fails."""
    catalogs = [Catalog(postgres_database) for _ in range(2)]
    for catalog in catalogs:
        with catalog.engine.connect():  # connected first, so that the barrier lines up the CREATE TABLEs
            pass
    together = threading.Barrier(len(catalogs))
    failures: list[str] = []

    def start(catalog: Catalog) -> None:
        together.wait()
        try:
            catalog.ensure_schema()
        except CatalogError as exc:
            failures.append(str(exc))

    threads = [threading.Thread(target=start, args=(catalog,)) for catalog in catalogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for catalog in catalogs:
        catalog.engine.dispose()
    assert failures == []
    assert {"kb_meta", "kb_documents"} <= set(sa.inspect(catalogs[0].engine).get_table_names())
