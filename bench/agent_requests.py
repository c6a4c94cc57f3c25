"""Agent API benchmark: AI agents' requests through `/api/v1` on two `steward serve` processes on PostgreSQL.

    .venv/bin/python -m bench.agent_requests --requests 500 --agents 20 --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test

1. A private PostgreSQL schema holds the state and the knowledge base (`knowledge/` is ingested, so
   every card cites its runbook); `--agents` agents get tokens from the registry `steward agents add`
   uses (limits high enough for the run), plus one for the idle phase. Two `steward serve` processes
   (HTTP mode, the fake Slack, the starter policies, STEWARD_AGENT_CHANNEL set) share that database.
   Every request is a production retrain (one ml-platform approval); its executor posts to a loopback
   webhook receiver, which counts executions per idempotency key (the request id).
2. Idle: one client creates `--idle-requests` requests one after another, each to either server at
   random, spread over `--channels` channels (the API's own latency), then `--one-channel-requests`
   more into STEWARD_AGENT_CHANNEL alone (what one busy channel adds: Slack's pacing of the card posts).
3. Load: `--agents` client threads (StewardClient, one agent each) create `--requests` requests in all,
   each with an idempotency key, to either server at random, over `--channels` channels. As soon as a
   request's card is posted (its ts is in RequestInfo.card_url), its 2 to 10 signed Approve clicks are
   queued, `--concurrency` in flight, each to either server at random: at least one from an eligible
   approver, the others from anyone (the agent's owner and outsiders included). Each agent then
   long-polls its requests (GET ?wait=) until they are final. Measured: executions per request (exactly
   once / twice / never), create latency under this load, HTTP statuses by route.
4. Result latency: `--latency-requests` requests, each with its agent long-polling, approved one at a
   time by one eligible click: time from the click sent to the agent's long-poll returning the final
   request, split into click -> execution (the receiver) and execution -> agent.
The servers' warnings and errors are counted by message.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa

from bench.action_requests import (
    ELIGIBLE,
    OTHERS,
    REQUESTER,
    approvals_per_second,
    private_schema,
    retrain_env,
)
from bench.report import save
from bot.agents.client import StewardClient
from bot.agents.models import ApiError, RequestInfo
from bot.agents.registry import AgentRegistry
from bot.answers.evaluation import percentile
from bot.store.action_requests import iter_audit
from bot.store.agents import AgentStore
from tests.audit_support import shared_key
from tests.fakes.webhook import WebhookReceiver
from tests.support.records import migrated
from tests.support.replicas import Replica, approve_click, log_problems, send
from tests.support.slack import FakeSlack

ROOT = Path(__file__).resolve().parents[1]

AGENT_CHANNEL = "CAGENTS01"  # STEWARD_AGENT_CHANNEL: where a request that names no channel posts its card
RETRAIN = {"model": "fraud-scorer", "env": "prod"}
REASON = "drift alert on fraud-scorer: PSI 0.31 on merchant_category"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Tally:
    """HTTP statuses by route, from the clients' response hooks and the click senders (thread-safe)."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, route: str, status: int) -> None:
        with self.lock:
            self.statuses[(route, status)] += 1

    def hook(self, response: httpx.Response) -> None:
        """httpx's response hook: count the answer under its route template."""
        path = response.request.url.path
        template = "/requests/{id}" if path.count("/") > 3 else path.removeprefix("/api/v1")
        self.add(f"{response.request.method} {template}", response.status_code)

    def by_route(self) -> dict[str, dict[int, int]]:
        routes: dict[str, dict[int, int]] = {}
        for (route, status), count in sorted(self.statuses.items()):
            routes.setdefault(route, {})[status] = count
        return routes


@dataclass
class Site:
    """The running replicas and what every phase shares."""

    url: str  # the database
    ports: list[int]
    tokens: dict[str, str]  # agent name -> token
    receiver: WebhookReceiver
    tally: Tally
    channels: int
    wait: float

    def client(self, agent: str, port: int) -> StewardClient:
        """An agent's client of one replica, its answers counted in the tally."""
        client = StewardClient(f"http://127.0.0.1:{port}", self.tokens[agent], timeout=60)
        client.http.event_hooks["response"].append(self.tally.hook)
        return client

    def click(self, rng: random.Random, request_id: str, user: str, card: tuple[str, str]) -> None:
        """One signed Approve click on the request's card, to either replica."""
        status = send(rng.choice(self.ports), approve_click(request_id, user, *card), FORM)
        self.tally.add("POST /slack/events (Approve)", status)

    def executed(self, request_id: str) -> float | None:
        """When the receiver got the request's (first) execution."""
        return next(
            (r.at for r in list(self.receiver.requests) if r.headers.get("Idempotency-Key") == request_id),
            None,
        )


def card_of(info: RequestInfo) -> tuple[str, str]:
    """The channel and ts of the request's approval card, from its link (…/archives/C…/p<ts digits>)."""
    if info.card_url is None or info.channel is None:
        raise SystemExit(
            f"request {info.id} has no approval card (status {info.status}); see the server logs"
        )
    digits = urlsplit(info.card_url).path.rsplit("/p", 1)[1]
    return info.channel, f"{digits[:-6]}.{digits[-6:]}"


def timed_create(
    client: StewardClient, key: str, channel: str | None, tally: Tally
) -> tuple[RequestInfo | None, float]:
    """One create through the API: the request (None when refused) and the seconds it took."""
    started = time.monotonic()
    try:
        info = client.request("retrain-model", RETRAIN, REASON, channel=channel, idempotency_key=key)
    except ApiError as exc:
        tally.add(f"refused {exc.code}", exc.status)
        return None, time.monotonic() - started
    return info, time.monotonic() - started


def _ms(values: list[float], pct: float) -> float | None:
    return round(percentile(sorted(values), pct) * 1000, 1) if values else None


def _idle(site: Site, rng: random.Random, count: int, one_channel: int) -> dict[str, Any]:
    """One client, creates one after another: over the channels, then into STEWARD_AGENT_CHANNEL."""
    clients = [site.client("bench-idle", port) for port in site.ports]
    try:
        for number, client in enumerate(clients):  # each replica's first call (connections, lazy parts)
            timed_create(client, f"idle-warm-{number}", "CWARM0001", site.tally)
        spread = [
            timed_create(rng.choice(clients), f"idle-{n}", f"COPS{n % site.channels:03d}", site.tally)[1]
            for n in range(count)
        ]
        single = [
            timed_create(rng.choice(clients), f"idle-one-{n}", None, site.tally)[1]
            for n in range(one_channel)
        ]
    finally:
        for client in clients:
            client.close()
    return {
        "idle_creates": len(spread),
        "idle_create_p50_ms": _ms(spread, 50),
        "idle_create_p95_ms": _ms(spread, 95),
        "idle_create_max_ms": _ms(spread, 100),
        "idle_one_channel_creates": len(single),
        "idle_one_channel_create_p50_ms": _ms(single, 50),
        "idle_one_channel_create_p95_ms": _ms(single, 95),
    }


def _clicks(rng: random.Random) -> list[str]:
    """2 to 10 clickers, at least one of them eligible, in random order."""
    users = [rng.choice(ELIGIBLE)] + [rng.choice(ELIGIBLE + OTHERS) for _ in range(rng.randint(1, 9))]
    rng.shuffle(users)
    return users


def _load(site: Site, args: argparse.Namespace, agents: list[str]) -> dict[str, Any]:
    """Agents create requests concurrently while approvers click, then long-poll theirs until final."""
    created: dict[str, str] = {}  # request id -> agent
    latencies: list[float] = []
    finals: Counter[str] = Counter()
    clicks = Counter[str]()
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=args.concurrency)

    def agent_run(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        name = agents[index]
        clients = [site.client(name, port) for port in site.ports]
        mine: list[str] = []
        try:
            for number in range(index, args.requests, len(agents)):
                channel = f"COPS{number % site.channels:03d}"
                info, seconds = timed_create(rng.choice(clients), f"load-{number}", channel, site.tally)
                with lock:
                    latencies.append(seconds)
                if info is None:
                    continue
                mine.append(info.id)
                card = card_of(info)
                users = _clicks(rng)
                with lock:
                    created[info.id] = name
                    clicks["sent"] += len(users)
                for user in users:
                    pool.submit(site.click, random.Random(rng.random()), info.id, user, card)
            for request_id in mine:
                status: str
                try:
                    status = rng.choice(clients).wait(request_id, timeout=args.wait, poll=30).status
                except ApiError as exc:  # not final within --wait, or the long-poll refused
                    status = f"not seen final: {exc.code}"
                with lock:
                    finals[status] += 1
        finally:
            for client in clients:
                client.close()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(agents)) as agent_threads:
        for failed in [agent_threads.submit(agent_run, index) for index in range(len(agents))]:
            failed.result()  # an agent's unexpected failure stops the run with its traceback
    pool.shutdown(wait=True)
    elapsed = time.monotonic() - started
    # every request the agents saw final has run (or failed); a duplicate execution would arrive now
    time.sleep(3)
    executed = Counter(r.headers.get("Idempotency-Key", "") for r in list(site.receiver.requests))
    ids = list(created)
    missed = [key for key in ids if executed.get(key) != 1]
    return {
        "agents": len(agents),
        "requests": args.requests,
        "requests_created": len(ids),
        "clicks": clicks["sent"],
        "load_seconds_until_all_final": round(elapsed, 1),
        "load_create_p50_ms": _ms(latencies, 50),
        "load_create_p95_ms": _ms(latencies, 95),
        "load_create_max_ms": _ms(latencies, 100),
        "final_statuses_seen_by_agents": dict(finals),
        "requests_executed_once": sum(1 for key in ids if executed.get(key) == 1),
        "requests_executed_twice_or_more": sum(1 for key in ids if executed.get(key, 0) > 1),
        "requests_never_executed": sum(1 for key in ids if key not in executed),
        "audit_of_requests_not_executed_once": _audit_trails(site.url, missed[:10]),
    }


def _audit_trails(url: str, request_ids: list[str]) -> dict[str, list[str]]:
    """What the audit log says happened to these requests: their entries' kinds (with the why of a
    refused run and the new state of an interrupted one)."""
    if not request_ids:
        return {}
    trails: dict[str, list[str]] = {request_id: [] for request_id in request_ids}
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            for entry in iter_audit(connection):
                if entry["request_id"] in trails:
                    data = entry["data"]
                    detail = data.get("why") or data.get("now") or data.get("summary") or ""
                    trails[entry["request_id"]].append(f"{entry['kind']} {detail}".strip()[:200])
    finally:
        engine.dispose()
    return trails


def _result_latency(site: Site, args: argparse.Namespace, agents: list[str]) -> dict[str, Any]:
    """Requests approved one at a time while their agents long-poll: click sent -> agent has the result."""
    rng = random.Random(args.seed + 7)
    requests: list[tuple[RequestInfo, StewardClient]] = []
    clients = {name: site.client(name, rng.choice(site.ports)) for name in agents}
    for number in range(args.latency_requests):
        client = clients[agents[number % len(agents)]]
        info, _ = timed_create(client, f"latency-{number}", f"COPS{number % site.channels:03d}", site.tally)
        if info is None:
            raise SystemExit("a latency-phase request was refused; see the statuses")
        requests.append((info, client))
    polling = {info.id: threading.Event() for info, _ in requests}
    seen: dict[str, float] = {}

    def long_poll(info: RequestInfo, client: StewardClient) -> None:
        polling[info.id].set()  # the long-poll is sent now
        client.wait(info.id, timeout=args.wait, poll=30)
        seen[info.id] = time.monotonic()

    to_agent, to_execution, execution_to_agent = [], [], []
    with ThreadPoolExecutor(max_workers=len(requests)) as waiters:
        for info, client in requests:
            waiters.submit(long_poll, info, client)
        _until(lambda: all(event.is_set() for event in polling.values()), 30, "the long-polls to start")
        for info, _ in requests:
            sent = time.monotonic()
            site.click(rng, info.id, ELIGIBLE[0], card_of(info))
            _until(partial(seen.__contains__, info.id), 30, f"request {info.id} to reach its agent")
            executed = site.executed(info.id)
            to_agent.append(seen[info.id] - sent)
            if executed is not None:
                to_execution.append(executed - sent)
                execution_to_agent.append(seen[info.id] - executed)
    for client in clients.values():
        client.close()
    return {
        "latency_requests": len(requests),
        "click_to_agent_p50_ms": _ms(to_agent, 50),
        "click_to_agent_p95_ms": _ms(to_agent, 95),
        "click_to_agent_max_ms": _ms(to_agent, 100),
        "click_to_execution_p50_ms": _ms(to_execution, 50),
        "click_to_execution_p95_ms": _ms(to_execution, 95),
        "execution_to_agent_p50_ms": _ms(execution_to_agent, 50),
        "execution_to_agent_p95_ms": _ms(execution_to_agent, 95),
    }


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting {seconds:g} s for {what}")
        time.sleep(0.001)


def _tokens(url: str, names: list[str], requests: int) -> dict[str, str]:
    """Tokens from the registry `steward agents add` uses, on the replicas' database (migrated here)."""
    engine = migrated(shared_key(sa.create_engine(url)))
    try:
        registry = AgentRegistry(AgentStore(engine))
        limit = requests + 1000  # neither limit is what this measures
        return {name: registry.add(name, REQUESTER, max_pending=limit, per_minute=limit)[1] for name in names}
    finally:
        engine.dispose()


def _run(args: argparse.Namespace, url: str, work: Path) -> dict[str, Any]:
    agents = [f"bench-agent-{number:02d}" for number in range(args.agents)]
    threads = {"STEWARD_HTTP_THREADS": str(args.http_threads)} if args.http_threads else {}
    with FakeSlack() as slack, WebhookReceiver() as receiver:
        env = retrain_env(slack, receiver, url, work, STEWARD_AGENT_CHANNEL=AGENT_CHANNEL, **threads)
        tokens = _tokens(url, [*agents, "bench-idle"], args.requests + args.idle_requests)
        logs = [work / f"serve-{number}.log" for number in range(2)]
        servers = [Replica(env, work, log) for log in logs]
        try:
            for server in servers:
                server.start()
            site = Site(
                url, [server.port for server in servers], tokens, receiver, Tally(), args.channels, args.wait
            )
            rng = random.Random(args.seed)
            idle = _idle(site, rng, args.idle_requests, args.one_channel_requests)
            load = _load(site, args, agents)
            quiet = _result_latency(site, args, agents)
            approvals = approvals_per_second(url)
        finally:
            for server in servers:
                server.stop()
            if args.logs is not None:  # the work folder goes with the schema
                args.logs.mkdir(parents=True, exist_ok=True)
                for log in logs:
                    shutil.copy(log, args.logs / log.name)
    return {
        **load,
        **idle,
        **quiet,
        "channels": args.channels,
        "http_threads": args.http_threads or "default",
        "approvals_recorded": approvals["approvals_recorded"],
        "http_statuses": site.tally.by_route(),
        "server_warnings_and_errors": log_problems(logs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=500, help="requests the agents create under load")
    parser.add_argument("--agents", type=int, default=20, help="agent client threads, one agent each")
    parser.add_argument("--postgres", default=os.environ.get("STEWARD_TEST_POSTGRES_URL"))
    parser.add_argument("--channels", type=int, default=50, help="channels the requests name, in turn")
    parser.add_argument("--idle-requests", type=int, default=100, help="creates one at a time, idle")
    parser.add_argument(
        "--one-channel-requests", type=int, default=20, help="idle creates into STEWARD_AGENT_CHANNEL"
    )
    parser.add_argument(
        "--latency-requests", type=int, default=20, help="requests approved one at a time after the load"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="clicks in flight at once")
    parser.add_argument("--http-threads", type=int, default=0, help="STEWARD_HTTP_THREADS (0: the default)")
    parser.add_argument("--wait", type=float, default=300, help="seconds an agent waits for a request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agents.json")
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("give --postgres URL (or set STEWARD_TEST_POSTGRES_URL)")
    if args.agents < 1 or args.requests < 1 or args.latency_requests < 1:
        raise SystemExit("--agents, --requests and --latency-requests must be at least 1")
    with private_schema(args.postgres, "agents") as (url, work):
        figures = _run(args, url, work)
    return save(figures, args.out)


if __name__ == "__main__":
    sys.exit(main())
